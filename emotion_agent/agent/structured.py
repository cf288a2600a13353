"""One way to get a typed answer from the LLM: free answer → validate → retry under the JSON-schema grammar.

Explanation and adjudication both need a small JSON object from a small local model. llama.cpp's
grammar sampling over a 150k-token vocabulary is several times slower than a free answer (timings in
docs/measurements.md), so the model first answers freely (one line, JSON asked for by the prompt); only when
that answer does not validate is it re-asked under the JSON schema. ``grammar="always"`` skips the
free attempt. Whatever still does not validate raises :class:`StructuredAnswerError` with the last
reason, and the caller decides what to keep (the composed explanation, the fused label).

The ``accept`` callable is the validation: it turns the answer's text into the typed value, or
``None`` plus the reason it was refused (not JSON, a field missing, a faithfulness problem...).
``why`` is answered deterministically from the evidence (``agent/why.py``) and needs no LLM.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class StructuredAnswerError(ValueError):
    """No answer of the LLM validated; ``reason`` says why the last one was refused."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def first_json_object(content: Any) -> Any | None:
    """The JSON object an LLM answer contains (from its first ``{`` to its last ``}``), or None."""
    raw = content if isinstance(content, str) else ""
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return json.loads(raw[start:end + 1], strict=False)
    except ValueError:
        return None


def ask_structured(llm: Any, messages: Sequence[Any], *, schema: dict[str, Any],
                   accept: Callable[[str], tuple[T | None, str]], max_tokens: int,
                   grammar: str = "fallback", retry: Callable[[str], bool] | None = None) -> T:
    """The first answer ``accept`` turns into a value: free first (unless ``grammar="always"``), then under
    ``schema`` — only when ``retry(reason)`` says the grammar can fix what was wrong (a format problem; a
    grammar cannot fix what an answer claims). LLM errors propagate (the caller catches its typed
    ``LLMError``); a refused answer raises :class:`StructuredAnswerError`."""
    reason = "no answer"
    for constrained in ([True] if grammar == "always" else [False, True]):
        if constrained and grammar != "always" and retry is not None and not retry(reason):
            break  # the free answer's problem is not one the grammar can fix
        bound = (llm.bind(json_schema=schema, max_tokens=max_tokens) if constrained
                 else llm.bind(max_tokens=max_tokens, stop=["\n"]))
        content = bound.invoke(list(messages)).content
        value, reason = accept(content if isinstance(content, str) else "")
        if value is not None:
            return value
    raise StructuredAnswerError(reason)
