"""Grounding checks for the ask agent: every label, number, quoted word and turn index in an answer must appear
in a tool result of the same ask. Pure functions; the failing check is named so a repair or refusal can say why.

A value a tool result only echoes from the call's own arguments (``class_errors(label=X)`` answers
``{"label": X, ...}``; an error names the key it was given) is the model's word, not the tool's: it grounds an
answer only when the question itself said it (the asker's words), never on its own."""

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


def _same(value: Any, arg: Any) -> bool:
    if isinstance(value, list) and isinstance(arg, list):
        return sorted(map(str, value)) == sorted(map(str, arg))
    return not isinstance(value, (dict, list, bool)) and str(value).strip().lower() == str(arg).strip().lower()


def split_echoes(result: Any, args: dict[str, Any] | None) -> tuple[Any, list[Any]]:
    """(``result`` without what only repeats the call's ``args``, the repeated values).

    An error result is all echo (it names what it was given). Other results lose each top-level field whose
    value equals an argument's value (``label``, ``turn``, ``turn_index``, ``dropped``, a filter echoed back)."""
    data = result
    if isinstance(result, str):
        try:
            data = json.loads(result)
        except ValueError:
            return result, []
    if not isinstance(data, dict):
        return data, []
    if "error" in data:
        return {}, [data]
    values = [v for v in (args or {}).values() if v is not None]
    kept: dict[str, Any] = {}
    echoed: list[Any] = []
    for k, v in data.items():
        if k == "filter" and isinstance(v, dict):  # a result that states the filter it applied
            echoed.append(v)
        elif any(_same(v, a) for a in values):
            echoed.append(v)
        else:
            kept[k] = v
    return kept, echoed


def check_grounding(answer: str, tool_results: list[Any], tool_args: list[dict[str, Any] | None] | None = None,
                    question: str = "") -> GroundingReport:
    """Check ``answer`` against the tool results of the same ask (any JSON-able objects).

    ``tool_args``: the arguments of the call behind each result (same order); a value a result only echoes
    from them counts only when ``question`` states it too."""
    args = list(tool_args or []) + [None] * (len(tool_results) - len(tool_args or []))
    split = [split_echoes(r, a) if a is not None else (r, []) for r, a in zip(tool_results, args)]
    source = "\n".join(_flatten(r) for r, _ in split)
    source_low = source.lower()
    source_numbers = _numbers_in(source)
    echo = "\n".join(_flatten(e) for _, es in split for e in es).lower()
    echo_numbers = _numbers_in(echo)
    asked, asked_numbers = question.lower(), _numbers_in(question)

    def said(word: str) -> bool:  # echoed from the model's arguments, and the asker said it too
        return word.lower() in echo and word.lower() in asked

    def said_number(n: str) -> bool:
        forms = {n, f"{float(n):g}"}
        return bool(forms & echo_numbers) and bool(forms & asked_numbers)

    unsupported: dict[str, list[str]] = {}
    labels = [lab for lab in LABELS if re.search(rf"\b{re.escape(lab)}\b", answer, re.IGNORECASE)]
    bad = [lab for lab in labels if not re.search(rf"\b{lab}\b", source_low) and not said(lab)]
    if bad:
        unsupported["labels"] = bad
    turns = set(_TURN.findall(answer))
    bad = sorted(t for t in turns if t not in source_numbers and not said_number(t))
    if bad:
        unsupported["turn_indices"] = bad
    answer_wo_turns = _TURN.sub(" ", answer)
    bad = sorted(n for n in {m.rstrip("%") for m in _NUMBER.findall(answer_wo_turns)}
                 if not ({n, f"{float(n):g}"} & source_numbers) and not said_number(n))
    if bad:
        unsupported["numbers"] = bad
    bad = [q for q in _QUOTED.findall(answer) if q.lower() not in source_low and not said(q)]
    if bad:
        unsupported["quoted_words"] = bad
    return GroundingReport(grounded=not unsupported, failed_checks=sorted(unsupported), unsupported=unsupported)


_ASKS_NUMBER = re.compile(r"^\s*(how many|how much|what (is|was) the (accuracy|recall|number|count|confidence)"
                          r"|(at |in |on )?(which|what) turn)\b", re.IGNORECASE)
_ASKS_YES_NO = re.compile(r"^\s*(would|was|were|is|are|did|does|do|can|could|has|had)\b", re.IGNORECASE)
_SAYS_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


#: Result fields that are a yes/no verdict (turn: was it right; without_modalities: would it keep its label).
VERDICT_FIELDS = ("correct", "still_same_label")


def _verdicts(tool_results: list[Any]) -> set[tuple[str, bool]]:
    out = set()
    for r in tool_results:
        data = r
        if isinstance(r, str):
            try:
                data = json.loads(r)
            except ValueError:
                continue
        if isinstance(data, dict):
            out |= {(k, data[k]) for k in VERDICT_FIELDS if isinstance(data.get(k), bool)}
    return out


def answer_form(question: str, answer: str, tool_results: list[Any] | None = None) -> str | None:
    """What the answer's form lacks for the question's kind, or None: a "how many"/"what was the accuracy"
    question needs a number; a yes/no question ("Would…", "Was…") an answer that starts with Yes or No, and
    one that agrees with the tools' verdict when they gave exactly one (``correct``, ``still_same_label``)."""
    if _ASKS_NUMBER.search(question) and not re.search(r"\d", answer):
        return "gives no number, but the question asks for one"
    if not _ASKS_YES_NO.search(question):
        if re.fullmatch(r"\W*(yes|no)\W*", answer, re.IGNORECASE):
            return "is only Yes or No, but the question does not ask yes or no"
        return None
    said = _SAYS_YES_NO.search(answer)
    if not said:
        return "does not start with Yes or No, but the question asks yes or no"
    verdicts = _verdicts(tool_results or [])
    if len(verdicts) == 1:
        field, value = next(iter(verdicts))
        if (said.group(1).lower() == "yes") != value:
            return f"says {said.group(1)}, but the tool result has {field}={str(value).lower()}"
    return None
