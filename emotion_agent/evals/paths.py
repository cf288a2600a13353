"""Where eval scripts read and write: results JSON, run folders, the source tree for provenance."""

from __future__ import annotations

import os
from pathlib import Path

#: The package's source folder (for ``git rev-parse`` provenance; not a checkout when installed).
SOURCE_DIR = Path(__file__).resolve().parent.parent


def checkout_root() -> Path | None:
    """The repository root when the package runs from a source checkout (it holds ``pyproject.toml``), else None."""
    root = SOURCE_DIR.parent
    return root if (root / "pyproject.toml").is_file() else None


def results_dir() -> Path:
    """Where measured figures go: ``$EMOTION_AGENT_RESULTS_DIR``, else the checkout's ``results/``, else ``./results``.

    Results live outside the package, so an installed wheel carries no run artifacts.
    """
    configured = os.environ.get("EMOTION_AGENT_RESULTS_DIR")
    if configured:
        return Path(configured)
    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "results"


#: Measured figures (JSON) written by benchmarks and training scripts (resolved once, at import).
RESULTS_DIR = results_dir()


def runs_dir() -> Path:
    """Default parent of eval run folders: ``$EMOTION_AGENT_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get("EMOTION_AGENT_RUNS_DIR") or Path.cwd() / "runs")
