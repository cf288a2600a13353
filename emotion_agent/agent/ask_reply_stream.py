"""Reads a chat model's reply while it is generated, for the ask agent's server-sent events.

The reply is ``{"tool_calls": [{"name": ...}]}`` or ``{"answer": "..."}`` (JSON, maybe in a code fence). As the
pieces come, :class:`ReplyStream` tells ``tool_call_start`` (a tool's name, as soon as it is written) and
``token`` (the answer's new characters, JSON escapes decoded). ``None`` means the model dropped what it wrote (it
is sampled again under the grammar): ``token_reset`` is told, and reading starts over."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_ANSWER = re.compile(r'^\s*(?:```\w*\s*)?\{\s*"answer"\s*:\s*"', re.DOTALL)
_NAME = re.compile(r'"name"\s*:\s*"([^"\\]+)"')


def _string_prefix(raw: str) -> tuple[str, bool]:
    """The decoded text of a JSON string body as far as it is complete, and whether its closing quote came."""
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == '"':
            return "".join(out), True
        if ch == "\\":
            end = i + 6 if raw[i + 1:i + 2] == "u" else i + 2
            if end > len(raw):
                break  # an escape cut in the middle: wait for the rest
            try:
                out.append(json.loads('"' + raw[i:end] + '"'))
            except ValueError:
                out.append(raw[i + 1:end])
            i = end
            continue
        out.append(ch)
        i += 1
    return "".join(out), False


class ReplyStream:
    """Feeds a reply's pieces to ``emit(kind, data)`` as tool names and answer tokens."""

    def __init__(self, emit: Callable[[str, dict[str, Any]], None]) -> None:
        self.emit = emit
        self.raw, self.names, self.told = "", 0, 0

    def start(self) -> None:
        """A new reply begins (nothing is told)."""
        self.raw, self.names, self.told = "", 0, 0

    def __call__(self, piece: str | None) -> None:
        if piece is None:
            if self.told:
                self.emit("token_reset", {})
            self.start()
            return
        self.raw += piece
        names = _NAME.findall(self.raw)
        for name in names[self.names:]:
            self.emit("tool_call_start", {"name": name})
        self.names = len(names)
        m = _ANSWER.match(self.raw)
        if m:
            text, _ = _string_prefix(self.raw[m.end():])
            if len(text) > self.told:
                self.emit("token", {"text": text[self.told:]})
                self.told = len(text)
