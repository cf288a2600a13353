"""Files shipped inside the package (prompt templates, small trained weights), via importlib.resources."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_file(*parts: str) -> Path:
    """A file or folder inside the installed ``emotion_agent`` package, as a filesystem path."""
    return Path(str(files("emotion_agent").joinpath(*parts)))


def weights_dir() -> Path:
    """The shipped weights folder (``emotion_agent/tools/weights``)."""
    return package_file("tools", "weights")


def prompts_dir() -> Path:
    """The shipped prompt templates (``emotion_agent/prompts``)."""
    return package_file("prompts")


WEIGHTS_DIR = weights_dir()
