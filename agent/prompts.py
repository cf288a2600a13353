"""Prompt templates live as files in ``prompts/``; this module loads and fills them.

Templates use ``$name`` placeholders (``string.Template``), so braces in user text or JSON
examples are never interpreted. :func:`prompt_hashes` fingerprints every template for run records.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from string import Template

from agent.config import PROMPTS_DIR


@lru_cache(maxsize=None)
def load(name: str) -> str:
    path = PROMPTS_DIR / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {path} is missing")
    return path.read_text(encoding="utf-8").strip()


def render(name: str, **values: object) -> str:
    return Template(load(name)).safe_substitute({k: str(v) for k, v in values.items()})


def prompt_hashes() -> dict[str, str]:
    return {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in sorted(PROMPTS_DIR.glob("*.md"))}
