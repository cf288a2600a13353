"""Where eval scripts read and write: results JSON, run folders, the source tree for provenance."""

from __future__ import annotations

import os
from pathlib import Path

#: The package's source folder (for ``git rev-parse`` provenance; not a checkout when installed).
SOURCE_DIR = Path(__file__).resolve().parent.parent
#: Measured figures (JSON) written by benchmarks and training scripts.
RESULTS_DIR = Path(os.environ.get("EMOTION_AGENT_RESULTS_DIR") or Path(__file__).resolve().parent / "results")


def runs_dir() -> Path:
    """Default parent of eval run folders: ``$EMOTION_AGENT_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get("EMOTION_AGENT_RUNS_DIR") or Path.cwd() / "runs")
