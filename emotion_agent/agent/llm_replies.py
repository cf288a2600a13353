"""Free (unconstrained) replies of the local chat model: where the first JSON object ends, the code fence a model
may add, and whether the reply is a valid tool call / answer (else it is sampled again under the grammar)."""

from __future__ import annotations

import json
from typing import Any


def unfenced(text: str) -> str:
    """A reply's first JSON object, without the Markdown code fence or the words a free model may add."""
    t = text.strip()
    if t.startswith("```"):
        t = t.split("\n", 1)[1] if "\n" in t else ""
        t = t.rsplit("```", 1)[0].strip()
    if t.startswith("{"):
        try:
            _, end = json.JSONDecoder().raw_decode(t)
            return t[:end]
        except ValueError:
            pass
    return t


class _JsonEnd:
    """Tells when the first JSON object of a streamed reply has closed (braces outside strings)."""

    def __init__(self) -> None:
        self.depth, self.in_string, self.escaped, self.started = 0, False, False, False

    def feed(self, piece: str) -> bool:
        for ch in piece:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
                continue
            if ch == '"':
                self.in_string = True
            elif ch == "{":
                self.depth, self.started = self.depth + 1, True
            elif ch == "}" and self.started:
                self.depth -= 1
                if self.depth == 0:
                    return True
        return False


def free_reply_invalid(text: str, tools: list[dict[str, Any]] | None, kwargs: dict[str, Any]) -> str | None:
    """Why an unconstrained reply cannot stand (then it is sampled again under the grammar), or None.

    Valid: ``{"tool_calls": [...]}`` naming known tools with object args, or (when answers are allowed)
    ``{"answer": "..."}``; a forced call (``tool_choice`` "any") must call at least one tool."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return "not JSON"
    if not isinstance(data, dict):
        return "not an object"
    if kwargs.get("allow_answer") and isinstance(data.get("answer"), str) and data["answer"].strip() \
            and set(data) == {"answer"}:
        return None
    calls = data.get("tool_calls")
    known = {t["function"]["name"]: t["function"] for t in tools or []}
    if not isinstance(calls, list) or not calls or set(data) != {"tool_calls"}:
        return "no tool call"
    for c in calls:
        if not isinstance(c, dict) or c.get("name") not in known or not isinstance(c.get("args", {}), dict):
            return "unknown tool or bad args"
        props = (known[c["name"]].get("parameters") or {}).get("properties") or {}
        if set(c.get("args") or {}) - set(props):
            return "unknown argument"
    return None
