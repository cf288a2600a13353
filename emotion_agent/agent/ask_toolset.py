"""The ask agent's tools as LangChain tools, each bound to one scope when it is built.

A run's tools (``run_tools``) read one run folder's records (or one turn of it); a conversation's tools
(``conversation_tools``) read one tenant-scoped conversation of the memory. No argument names a conversation, a
run or a service key, so no question can reach outside the scope. Every tool returns compact JSON (no nulls, no
spaces) of a bounded pydantic object: short tool results keep the prompt, and so the latency, small.
``describe_tools`` renders the tools as short signature lines for the fixed part of the prompt."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, BeforeValidator, Field

from emotion_agent.agent.ask_expert_tools import (Label, Modality, fuse_without, modality_alias, turn_for_attribution,
                                                  word_attributions)
from emotion_agent.agent.ask_memory_tools import ConversationTools, LabelQuery, SimilarQuery, TurnIndex, TurnRange
from emotion_agent.agent.ask_run_tools import RunTools, TurnFilter

#: Previous turns given to the text expert when it re-weighs a stored turn's words (its own default).
ATTRIBUTION_CONTEXT = 3


def compact(value: Any) -> str:
    """A tool result as short JSON: a pydantic object without its unset/None fields."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_none=True)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class _NoArgs(BaseModel):
    pass


class _Label(BaseModel):
    label: Label


#: A modality argument; "voice", "words", "face" … are read as audio, text, vision.
ModalityArg = Annotated[Modality, BeforeValidator(modality_alias)]


class _Drop(BaseModel):
    drop: list[ModalityArg] = Field(min_length=1, max_length=2, description="Modalities to leave out.")


class _RunDrop(BaseModel):
    drop: list[ModalityArg] = Field(min_length=1, max_length=2, description="Modalities to leave out.")
    turn_key: str | None = Field(default=None, max_length=80, description="The turn's record key in this run "
                                 "(default: the scoped turn).")


class _RunTurn(BaseModel):
    turn_key: str | None = Field(default=None, max_length=80, description="The turn's record key in this run "
                                 "(default: the scoped turn).")


class _RunWords(BaseModel):
    label: Label
    turn_key: str | None = Field(default=None, max_length=80, description="The turn's record key in this run "
                                 "(default: the scoped turn).")


class _TurnDrop(BaseModel):
    turn_index: int = Field(ge=0)
    drop: list[ModalityArg] = Field(min_length=1, max_length=2, description="Modalities to leave out.")


class _TurnWords(BaseModel):
    turn_index: int = Field(ge=0)
    label: Label


def _tool(fn: Callable[..., Any], name: str, description: str, schema: type[BaseModel] = _NoArgs) -> StructuredTool:
    def run(**kw: Any) -> str:
        return compact(fn(schema(**kw)) if schema is not _NoArgs else fn())
    return StructuredTool.from_function(run, name=name, description=description, args_schema=schema)


def run_tools(tools: RunTools, text_expert: Callable[[], Any] | None = None) -> list[StructuredTool]:
    """The run tools; the run (or one turn of it) is bound here, never an argument."""
    def record(key: str | None) -> tuple[str, dict[str, Any]] | dict[str, str]:
        if key is None and len(tools.records) == 1:
            return tools.records[0]["key"], tools.records[0]
        hit = [r for r in tools.records if r["key"] == key]
        if not hit and key:  # a key given without its split prefix ("dia10_utt2" for "dev/dia10_utt2")
            hit = [r for r in tools.records if r["key"].split("/")[-1] == key.strip().split("/")[-1]]
            hit = hit if len(hit) == 1 else []
        return (hit[0]["key"], hit[0]) if hit else {"error": f"this run has no turn with key {key!r}" if key
                                          else "give the turn's key (from filter_turns)"}

    def without(q: _RunDrop) -> Any:
        got = record(getattr(q, "turn_key", None))
        return got if isinstance(got, dict) else fuse_without(got[0], got[1], list(q.drop))

    def words(q: _RunWords) -> Any:
        got = record(getattr(q, "turn_key", None))
        if isinstance(got, dict):
            return got
        key, rec = got
        prev = [(c.get("speaker"), str(c.get("text") or "")) for c in rec.get("context") or [] if isinstance(c, dict)]
        turn = turn_for_attribution(str(rec.get("text") or ""), rec.get("speaker"), prev)
        return word_attributions(key, turn, q.label, text_expert)

    def one(q: _RunTurn | None = None) -> Any:
        got = record(getattr(q, "turn_key", None))
        return got if isinstance(got, dict) else tools.turn_record(got[1])

    # scoped to one turn: its tools take no key (a small model copies keys it has seen anywhere)
    turn_s, drop_s, words_s = (_NoArgs, _Drop, _Label) if tools.key else (_RunTurn, _RunDrop, _RunWords)
    return [
        _tool(one, "turn", "One turn of this run (the scoped turn when no key): gold label, predicted label, "
              "correct, confidence, text, each modality's label.", turn_s),
        _tool(tools.filter_turns, "filter_turns", "Turns of this run by gold label, predicted label, modality, "
              "disagreement, wrong_only, confidence range: the count (matched) and up to 5 "
              "rows.", TurnFilter),
        _tool(tools.metrics, "metrics", "Number of turns, accuracy, per-class recall, gold_counts (turns per gold "
              "label) and predicted_counts (turns per predicted label) of this run."),
        _tool(tools.confusion, "confusion", "Counts of gold label -> predicted label in this run."),
        _tool(lambda q: tools.class_errors(q.label), "class_errors",
              "For one label: how many turns had it as gold (gold_count), how many of "
              "those were wrong, its recall, what was predicted instead, most_predicted_instead, and how many turns "
              "were predicted as it (predicted_count).",
              _Label),
        _tool(without, "without_modalities", "Re-fuse one turn's expert evidence leaving out modalities "
              "(audio = the voice, text = the words, vision = the face): the label it "
              "would get and still_same_label.", drop_s),
        _tool(words, "word_attributions", "How much each word of one turn pushed toward a label "
              "(text expert, occlusion).", words_s),
    ]


def conversation_tools(tools: ConversationTools, text_expert: Callable[[], Any] | None = None) -> list[StructuredTool]:
    """The conversation tools; the conversation is bound here, never an argument."""
    def stored(index: int) -> dict[str, Any] | None:
        hit = [t for t in tools._turns() if t["turn_index"] == index]
        return hit[0] if hit else None

    def without(q: _TurnDrop) -> Any:
        t = stored(q.turn_index)
        if t is None or not t.get("record"):
            return {"error": f"this conversation has no stored turn {q.turn_index} with evidence"}
        return fuse_without(f"turn {q.turn_index}", t["record"], list(q.drop))

    def words(q: _TurnWords) -> Any:
        all_turns = tools._turns()
        t = stored(q.turn_index)
        if t is None:
            return {"error": f"this conversation has no turn {q.turn_index}"}
        prev = [(p.get("speaker"), str(p.get("text") or "")) for p in all_turns
                if p["turn_index"] < q.turn_index][-ATTRIBUTION_CONTEXT:]
        turn = turn_for_attribution(str(t.get("text") or ""), t.get("speaker"), prev)
        return word_attributions(f"turn {q.turn_index}", turn, q.label, text_expert)

    return [
        _tool(tools.turns, "turns", "Stored turns of this conversation (index, speaker, text, label, "
              "confidence), optionally from turn first to turn last.", TurnRange),
        _tool(tools.turn_evidence, "turn_evidence", "One turn's label and evidence: each modality's label and "
              "confidence, each modality's share of the fused label, and top_modality (the largest share).", TurnIndex),
        _tool(tools.label_turns, "label_turns", "The turns that got one label: how many (count), their indices, "
              "the first and the last.", LabelQuery),
        _tool(tools.similar, "similar_turns", "Turns of this conversation most similar to some words.", SimilarQuery),
        _tool(tools.summary, "summary", "Number of turns, label trajectory, label counts, turning points (each "
              "label change and the modality that drove it), first_change_turn."),
        _tool(without, "without_modalities", "Re-fuse one turn's expert evidence leaving out modalities "
              "(audio = the voice, text = the words, vision = the face): the label it "
              "would get and still_same_label.", _TurnDrop),
        _tool(words, "word_attributions", "How much each word of one turn pushed toward a label "
              "(text expert, occlusion).", _TurnWords),
    ]


def _kind(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return "|".join(map(str, spec["enum"])) if len(spec["enum"]) <= 3 else "label"
    if "anyOf" in spec:
        return "|".join(_kind(s) for s in spec["anyOf"] if s.get("type") != "null")
    if spec.get("type") == "array":
        return "list of " + _kind(spec.get("items") or {})
    return str(spec.get("type") or "value")


def _arg(name: str, spec: dict[str, Any], required: bool) -> str:
    return f"{name}{'' if required else '?'}: {_kind(spec)}"


def describe_tools(tools: list[StructuredTool]) -> str:
    """One line per tool, ``name(arg: type, opt?: type) - description``; ``label`` is one of MELD's 7 labels."""
    lines = []
    for t in tools:
        schema = t.args_schema.model_json_schema() if isinstance(t.args_schema, type) else {}
        schema = _inline(schema)
        req = set(schema.get("required") or [])
        args = ", ".join(_arg(n, s, n in req) for n, s in (schema.get("properties") or {}).items())
        lines.append(f"- {t.name}({args}): {t.description}")
    return "\n".join(lines)


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with ``$ref``s to its ``$defs`` replaced by the definitions (one level is enough here)."""
    defs = schema.get("$defs") or {}

    def sub(s: Any) -> Any:
        if isinstance(s, dict):
            if "$ref" in s:
                return sub(defs.get(s["$ref"].split("/")[-1], {}))
            return {k: sub(v) for k, v in s.items()}
        if isinstance(s, list):
            return [sub(v) for v in s]
        return s
    return sub({k: v for k, v in schema.items() if k != "$defs"})
