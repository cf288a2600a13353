"""Shared terminal helpers for every command: the consoles, the user-error type, settings from options."""

from __future__ import annotations

from rich.console import Console

from emotion_agent.tools.settings import Settings

console = Console()
err = Console(stderr=True)


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


def settings_from(llm: str | None = None, **kw: object) -> Settings:
    """Settings from the environment with the command's options applied on top."""
    return Settings.from_env(llm=llm, **kw)
