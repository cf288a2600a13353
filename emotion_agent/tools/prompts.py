"""Prompt templates live as files in the package's ``prompts/``; this module loads and fills them.

Templates use ``$name`` placeholders (``string.Template``), so braces in user text or JSON
examples are never interpreted. :func:`prompt_hashes` fingerprints every template for run records.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.resources import files
from string import Template


@lru_cache(maxsize=None)
def load(name: str) -> str:
    """The template ``prompts/<name>.md`` (read once), or FileNotFoundError naming it."""
    path = files("emotion_agent").joinpath("prompts", f"{name}.md")
    if not path.is_file():
        raise FileNotFoundError(f"prompt template prompts/{name}.md is missing from the emotion_agent package")
    return path.read_text(encoding="utf-8").strip()


def render(name: str, **values: object) -> str:
    """The template ``name`` with ``$placeholders`` filled (unknown ones left as they are)."""
    return Template(load(name)).safe_substitute({k: str(v) for k, v in values.items()})


def prompt_hashes() -> dict[str, str]:
    """A short sha256 of every shipped template, for run records."""
    folder = files("emotion_agent").joinpath("prompts")
    return {p.name.removesuffix(".md"): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            for p in sorted(folder.iterdir(), key=lambda p: p.name) if p.name.endswith(".md")}
