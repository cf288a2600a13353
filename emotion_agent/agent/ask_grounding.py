"""Grounding checks for the ask agent: every label, number, quoted word and turn index in an answer must appear
in a tool result of the same ask. Pure functions; the failing check is named so a repair or refusal can say why."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field

from emotion_agent.tools.evidence import LABELS

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?%?")
_QUOTED = re.compile(r"[\"“]([^\"”]{1,80})[\"”]")
_TURN = re.compile(r"\bturns?\s+#?(\d+)", re.IGNORECASE)


class GroundingReport(BaseModel):
    """Which checks an answer failed and the unsupported items each check found."""

    grounded: bool
    failed_checks: list[str] = Field(default_factory=list)
    unsupported: dict[str, list[str]] = Field(default_factory=dict)


def _flatten(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _numbers_in(text: str) -> set[str]:
    out: set[str] = set()
    for m in _NUMBER.findall(text):
        raw = m.rstrip("%")
        out.add(raw)
        try:
            f = float(raw)
        except ValueError:
            continue
        out.update({f"{f:g}", f"{f:.1f}", f"{f:.2f}", f"{f:.3f}"})
        if "%" not in m and 0.0 <= f <= 1.0:  # a fraction in a tool result may be quoted as a percentage
            out.update({f"{f * 100:g}", f"{f * 100:.0f}", f"{f * 100:.1f}"})
    return out


def check_grounding(answer: str, tool_results: list[Any]) -> GroundingReport:
    """Check ``answer`` against the tool results of the same ask (any JSON-able objects)."""
    source = "\n".join(_flatten(r) for r in tool_results)
    source_low = source.lower()
    source_numbers = _numbers_in(source)
    unsupported: dict[str, list[str]] = {}
    labels = [lab for lab in LABELS if re.search(rf"\b{re.escape(lab)}\b", answer, re.IGNORECASE)]
    bad = [lab for lab in labels if lab.lower() not in source_low]
    if bad:
        unsupported["labels"] = bad
    turns = set(_TURN.findall(answer))
    bad = sorted(t for t in turns if t not in source_numbers)
    if bad:
        unsupported["turn_indices"] = bad
    answer_wo_turns = _TURN.sub(" ", answer)
    bad = sorted(n for n in {m.rstrip("%") for m in _NUMBER.findall(answer_wo_turns)}
                 if not ({n, f"{float(n):g}"} & source_numbers))
    if bad:
        unsupported["numbers"] = bad
    bad = [q for q in _QUOTED.findall(answer) if q.lower() not in source_low]
    if bad:
        unsupported["quoted_words"] = bad
    return GroundingReport(grounded=not unsupported, failed_checks=sorted(unsupported), unsupported=unsupported)
