"""What produced a run: git commit, package versions, settings (written into summary.json)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


from emotion_agent.evals.paths import SOURCE_DIR
from emotion_agent.tools.settings import Settings


PACKAGES = ("emotion-agent", "langgraph", "langchain-core", "numpy", "scikit-learn", "onnxruntime", "tokenizers",
            "llama_cpp_python", "chromadb", "pydantic", "matplotlib", "faster-whisper", "torch")

# ---- provenance ------------------------------------------------------------------------------
def git_commit() -> dict[str, Any]:
    """HEAD commit of the source tree and the count of modified tracked files (None on failure)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=SOURCE_DIR.parent, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=SOURCE_DIR.parent,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": head or None, "dirty_files": len(dirty.splitlines()) if dirty else 0}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty_files": None}


def package_versions() -> dict[str, str | None]:
    """Installed version of each package in :data:`PACKAGES` (None when missing)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def settings_dict(settings: Settings) -> dict[str, Any]:
    """The settings as a JSON-ready dict (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.model_dump().items()}
