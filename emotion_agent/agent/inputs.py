"""Turning what a user sent into a clean :class:`TurnInput`, or a one-line :class:`InputError`."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from emotion_agent.tools.media_checks import Limits, MediaCheckError, check_file, limit_hint
from emotion_agent.tools.base import PriorTurn, TurnInput
from emotion_agent.tools.settings import Settings

#: the one conversation-id rule (CLI, batch, API, web): letters, digits and ``._-``, 1-64 characters
CONVERSATION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CONVERSATION_ID_RULE = "1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
#: a tenant's conversations are stored as ``<tenant>~<id>`` (clients never see the prefix)
TENANT_SEP = "~"


class InputError(ValueError):
    """A user mistake (nothing to analyse, unreadable file path...). Exit code 2, one line."""


class MediaInputError(MediaCheckError, InputError):
    """No usable input: every media file was refused by the media checks (carries the HTTP status)."""


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def clean_text(raw: str | bytes | None, max_chars: int) -> tuple[str | None, list[str]]:
    """Decode, strip control characters, truncate. Returns (text or None, warnings)."""
    warnings: list[str] = []
    if raw is None:
        return None, warnings
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raw = raw.decode("utf-8", errors="replace")
            warnings.append("text was not valid UTF-8; undecodable bytes were replaced")
    raw = _ANSI.sub("", raw)  # terminal escape sequences are markup, not words
    text = "".join(c for c in raw if c in "\n\t" or unicodedata.category(c)[0] != "C")
    text = " ".join(text.split())
    if not text:
        return None, warnings
    if len(text) > max_chars:
        warnings.append(f"text truncated from {len(text)} to {max_chars} characters {limit_hint('max_text_chars')}")
        text = text[:max_chars]
    return text, warnings


def make_turn(*, text: str | bytes | None = None, audio: str | Path | None = None,
              image: str | Path | None = None, video: str | Path | None = None,
              conversation_id: str | None = None, speaker: str | None = None,
              context: list[PriorTurn] | None = None, turn_index: int | None = None,
              max_chars: int | None = None, check_media: bool = True,
              settings: Settings | None = None, tenant: str | None = None,
              future: list[PriorTurn] | None = None) -> TurnInput:
    """A validated turn: text cleaned and stripped of instructions, each media file sniffed and decoded.

    A file that is missing, empty, corrupt, truncated, renamed or too large is dropped with a warning when
    something else in the turn is usable; when nothing usable is left, the first file's
    :class:`MediaInputError` (an :class:`InputError` with its HTTP status) says why. ``check_media=False``
    only checks that the files exist (the HTTP service runs the same checks on its worker lane).

    This is the one turn builder (CLI, batch, HTTP API, web pages): the text limit and the media limits
    (``EMOTION_AGENT_MAX_AUDIO_S``...) come from ``settings`` (from the environment when not given);
    ``max_chars`` overrides the text limit. ``future``: the dialogue's later turns (offline text mode only).
    """
    settings = settings or Settings.from_env()
    clean, warnings = clean_text(text, settings.max_text_chars if max_chars is None else max_chars)
    limits = Limits.from_settings(settings)
    clean_given = clean is not None
    spans: list[str] = []
    if clean is not None:
        from emotion_agent.agent.injection import strip_injection_spans

        clean, spans = strip_injection_spans(clean)
        removed = len(spans)
        if removed:
            warnings.append(f"{removed} instruction-like span(s) in the text were not analysed "
                            "(user text cannot instruct the system)")
            if clean is None and not any(v for v in (audio, image, video)):
                raise InputError("the text only contained instructions to the system; nothing to analyse")
    paths: dict[str, Path | None] = {}
    refused: list[MediaCheckError] = []
    for name, value in (("audio", audio), ("image", image), ("video", video)):
        if value is None or str(value) == "":
            paths[name] = None
            continue
        p = Path(value).expanduser()
        try:
            if check_media:
                check_file(p, name, limits)
            elif not p.is_file():
                raise MediaCheckError(404, f"{name} file not found: {value}", "not_found")
        except MediaCheckError as exc:
            refused.append(exc)
            paths[name] = None
            continue
        paths[name] = p
    if refused:
        if clean is None and not any(paths.values()):
            # nothing usable: a user error (exit 2 / its HTTP status), never a neutral answer
            first = refused[0]
            raise MediaInputError(first.status, "; ".join(r.message for r in refused), first.code)
        warnings.extend(f"input not analysed: {r.message}" for r in refused)
    if clean is not None and not any(ch.isalpha() for ch in clean) and not any(paths.values()):
        raise InputError("the text has no words (only digits, punctuation, symbols or emoji): nothing to analyse")
    if clean is None and not any(paths.values()):
        if text is not None:
            raise InputError("the text is empty (only whitespace or control characters) and no media was given")
        raise InputError("nothing to analyse: give --text, --audio, --image or --video")
    if conversation_id is not None:
        conversation_id = conversation_id.strip()
        if not CONVERSATION_ID_RE.fullmatch(conversation_id):
            raise InputError(f"conversation id must be {CONVERSATION_ID_RULE}")
        if tenant:
            conversation_id = f"{tenant}{TENANT_SEP}{conversation_id}"
    return TurnInput(text=clean, audio_path=paths["audio"], image_path=paths["image"], video_path=paths["video"],
                     conversation_id=conversation_id, speaker=(speaker or None), context=context or [],
                     future=future or [], turn_index=turn_index, warnings=warnings,
                     removed_instructions=spans if clean_given else [])
