"""The one structured-LLM helper: free answer, validation, retry under the grammar, typed failure."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage

from emotion_agent.agent.adjudicate import Adjudicator
from emotion_agent.agent.recall import MemoryRecall
from emotion_agent.agent.structured import StructuredAnswerError, ask_structured, first_json_object
from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.evidence import EmotionEvidence, FusedResult, LABELS


class ScriptedChat:
    """Answers from a script and records how each call was bound (free or under a schema)."""

    def __init__(self, answers: list[str]):
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []
        self._bound: dict[str, Any] = {}

    def bind(self, **kw: Any) -> "ScriptedChat":
        self._bound = kw
        return self

    def invoke(self, messages: Any) -> AIMessage:
        self.calls.append(dict(self._bound))
        return AIMessage(self.answers.pop(0))


def accept_label(content: str) -> tuple[str | None, str]:
    data = first_json_object(content)
    label = data.get("label") if isinstance(data, dict) else None
    return (label, "") if label in ("joy", "anger") else (None, "no candidate label")


SCHEMA = {"type": "object", "properties": {"label": {"enum": ["joy", "anger"]}}}


def test_free_answer_that_validates_is_taken_without_the_grammar() -> None:
    chat = ScriptedChat(['{"label": "joy"}'])
    assert ask_structured(chat, [], schema=SCHEMA, accept=accept_label, max_tokens=8) == "joy"
    assert len(chat.calls) == 1 and "json_schema" not in chat.calls[0] and chat.calls[0]["stop"] == ["\n"]


def test_invalid_free_answer_is_retried_under_the_schema() -> None:
    chat = ScriptedChat(["I think it is joy", '{"label": "anger"}'])
    assert ask_structured(chat, [], schema=SCHEMA, accept=accept_label, max_tokens=8) == "anger"
    assert [("json_schema" in c) for c in chat.calls] == [False, True]
    assert chat.calls[1]["json_schema"] is SCHEMA


def test_always_mode_constrains_the_only_call() -> None:
    chat = ScriptedChat(['{"label": "joy"}'])
    ask_structured(chat, [], schema=SCHEMA, accept=accept_label, max_tokens=8, grammar="always")
    assert len(chat.calls) == 1 and "json_schema" in chat.calls[0]


def test_no_valid_answer_raises_a_typed_error_with_the_reason() -> None:
    chat = ScriptedChat(["nope", '{"label": "fear"}'])
    with pytest.raises(StructuredAnswerError, match="no candidate label"):
        ask_structured(chat, [], schema=SCHEMA, accept=accept_label, max_tokens=8)


def _close_call() -> FusedResult:
    dist = {lab: 0.0 for lab in LABELS} | {"anger": 0.46, "sadness": 0.44, "neutral": 0.10}
    ev = EmotionEvidence(id="text-abc123", modality="text", expert="fake", model_id="fake", label="anger", confidence=0.46,
                         distribution=dist)
    return FusedResult(label="anger", confidence=0.46, distribution=dist, evidence=[ev])


def test_adjudicator_uses_the_helper_and_keeps_the_fused_label_when_it_fails() -> None:
    chat = ScriptedChat(["sadness, clearly", '{"label": "sadness"}'])
    adj = Adjudicator(lambda: chat, threshold=0.1).choose(TurnInput(text="x"), _close_call(), MemoryRecall())
    assert adj.status == "applied" and adj.chosen == "sadness" and adj.changed
    chat = ScriptedChat(["no", '{"label": "joy"}'])  # joy is not a candidate: refused even under the grammar
    adj = Adjudicator(lambda: chat, threshold=0.1).choose(TurnInput(text="x"), _close_call(), MemoryRecall())
    assert adj.status == "failed" and "StructuredAnswerError" in adj.detail and not adj.changed
