"""Explanations: the LLM justifies the fused label under a JSON schema that only admits real evidence ids.

The instructions (``prompts/explain_system.md``) come first and never change, so llama.cpp's
prompt cache reuses them across turns; the per-turn evidence and the user's words come last,
inside ``<utterance>`` tags, as data.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from emotion_agent.agent.compose import compose
from emotion_agent.agent.faithfulness import (  # noqa: F401 - re-exported for the eval
    ID_IN_TEXT,
    LABEL_WORDS,
    asserted_labels,
    label_prefix,
    last_complete_sentences,
    mentions_label,
    problems,
)
from emotion_agent.tools import prompts
from emotion_agent.agent.structured import StructuredAnswerError, ask_structured, first_json_object  # noqa: F401
from emotion_agent.agent.recall import MemoryRecall
from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.evidence import EmotionEvidence, Explanation, FusedResult, WordWeight

MAX_UTTERANCE_CHARS = 600


_ID_IN_PROSE = re.compile(r"\s*\[([a-z_]+-[0-9a-f]{6})\]")


def clean_citations(text: str, ids: list[str]) -> tuple[str, list[str]]:
    """Drop bracketed ids that are not real evidence (small models copy the prompt's example ids)."""
    found: list[str] = []

    def keep(m: re.Match[str]) -> str:
        """Keep a bracketed id when it is real evidence (and note it), drop it otherwise."""
        if m.group(1) in ids:
            found.append(m.group(1))
            return m.group(0)
        return ""

    cleaned = _ID_IN_PROSE.sub(keep, text)
    cleaned = re.sub(r"\s+([,.;:])", r"\1", " ".join(cleaned.split()))
    return cleaned, found


def cited_answer_schema(evidence_ids: list[str], text_field: str = "explanation") -> dict[str, Any]:
    """JSON schema for ``{<text_field>: str, cited_evidence_ids: [...]}`` whose citations can only be real ids.

    No min/maxLength: llama.cpp expands them into long repetition rules that make sampling slow.
    Shared by explanations, ``why --ask`` and the service's ``/v1/why``.
    """
    ids = {"type": "string", "enum": evidence_ids} if evidence_ids else {"type": "string"}
    return {
        "type": "object",
        "properties": {
            text_field: {"type": "string"},
            "cited_evidence_ids": {"type": "array", "items": ids, "maxItems": max(1, len(evidence_ids))},
        },
        "required": [text_field, "cited_evidence_ids"],
    }


def explanation_schema(evidence_ids: list[str]) -> dict[str, Any]:
    """The explanation's JSON schema with at least one real citation when there is evidence."""
    schema = cited_answer_schema(evidence_ids)
    schema["properties"]["cited_evidence_ids"]["minItems"] = 1 if evidence_ids else 0
    return schema


def turn_prompt_fields(turn: TurnInput, result: FusedResult, recall: MemoryRecall) -> dict[str, str]:
    """The per-turn parts of an LLM prompt about a fused result (explanation, adjudication): evidence lines,
    the conversation so far and the user's words (truncated; they go inside ``<utterance>`` tags as data)."""
    return {"evidence": "\n".join(evidence_line(e) for e in result.evidence) or "(no evidence)",
            "memory": _memory_block(recall),
            "utterance": (turn.spoken_text() or "(no words: audio/visual only)")[:MAX_UTTERANCE_CHARS]}


def _memory_block(recall: MemoryRecall) -> str:
    lines = [f"- {t.speaker or 'someone'}: \"{t.text[:160]}\" ({t.label})" for t in recall.previous]
    lines += [f"- earlier, similar: \"{t.text[:120]}\" ({t.label})" for t in recall.similar]
    return ("\n" + "\n".join(lines)) if lines else "(first turn)"


def _dist(d: dict[str, float], k: int = 2) -> str:
    return ", ".join(f"{lab} {p:.2f}" for lab, p in sorted(d.items(), key=lambda kv: -kv[1])[:k])


_WHAT = {"text": "words", "transcript": "transcribed words", "audio": "voice", "vision": "face"}


def evidence_line(e: EmotionEvidence) -> str:
    """Compact evidence line for the prompt (short prompts are fast on 2 cores)."""
    line = f"- [{e.id}] {_WHAT.get(e.modality, e.modality)}: {_dist(e.distribution)}"
    if e.cues:
        line += "; cues: " + "; ".join(str(c) for c in e.cues[:3])
    if e.warnings:
        line += "; warnings: " + "; ".join(e.warnings[:2])
    return line


def parse_explanation(content: Any) -> Explanation | None:
    """The first JSON object in ``content`` as an :class:`Explanation`, or None."""
    data = first_json_object(content)
    if data is None:
        return None
    try:
        return Explanation.model_validate(data)
    except (ValueError, TypeError):
        return None


_OPEN_EXPLANATION = re.compile(r'"explanation"\s*:\s*"((?:[^"\\]|\\.)*)')


def cut_off_explanation(content: str) -> str | None:
    """The complete sentences of an ``explanation`` string that the token budget cut off mid-answer
    (``{"explanation": "Anger fits. The words 'late' and`` → ``Anger fits.``); None when there is none."""
    m = _OPEN_EXPLANATION.search(content)
    if m is None:
        return None
    raw = m.group(1).rstrip("\\")
    try:
        text = json.loads(f'"{raw}"', strict=False)
    except ValueError:
        return None
    return last_complete_sentences(" ".join(text.split())) or None


#: Reasons to re-ask under the JSON-schema grammar: it fixes the answer's form, never what the answer claims.
FORMAT_PROBLEMS = frozenset({"not the JSON object", "too short"})


class ExplanationError(ValueError):
    """No LLM answer passed the checks (not the JSON object, no real citation, or another label argued)."""


class Explainer:
    """Writes the explanation of a fused result: the composer's facts, rephrased by the LLM when it passes every
    faithfulness check, else the composer's own text (marked ``template``)."""

    def __init__(self, llm_getter: Any, max_tokens: int = 120, grammar: str = "fallback", use_llm: bool = True):
        self._llm_getter = llm_getter
        self.max_tokens = max_tokens
        self.grammar = grammar
        self.use_llm = use_llm

    def explain_result(self, turn: TurnInput, result: FusedResult, recall: MemoryRecall) -> FusedResult:
        """``result`` with its explanation and citations; the source says whether the LLM's prose was kept."""
        from emotion_agent.agent.llm import LLMError

        composed, composed_ids = compose(turn, result, recall, attributions_of(result))
        warnings = list(result.warnings)
        text, cited, source = composed, composed_ids, "template"
        if self.use_llm:
            try:
                text, cited = self.explain(turn, result, recall, facts=composed)
                source = "llm"
            except (ExplanationError, LLMError, ValueError, RuntimeError, OSError) as exc:
                text, cited = composed, composed_ids
                warnings.append(f"LLM explanation not used ({str(exc)[:120]}); composed from the evidence")
        return result.model_copy(update={"explanation": text, "cited_evidence_ids": cited,
                                         "explanation_source": source, "warnings": warnings})

    def messages(self, turn: TurnInput, result: FusedResult, recall: MemoryRecall, facts: str = "") -> list[Any]:
        """System instructions, then this turn's facts and the utterance (as data) for the LLM."""
        user = prompts.render("explain_user", label=result.label, confidence=f"{result.confidence:.2f}",
                              facts=facts or compose(turn, result, recall, attributions_of(result))[0],
                              **turn_prompt_fields(turn, result, recall))
        return [SystemMessage(prompts.load("explain_system")), HumanMessage(user)]

    def explain(self, turn: TurnInput, result: FusedResult, recall: MemoryRecall,
                facts: str = "") -> tuple[str, list[str]]:
        """The LLM's rephrasing of the facts, accepted only when it passes :func:`faithfulness.problems`.

        Asked through :func:`structured.ask_structured` (free answer first, the JSON-schema grammar only
        when it fails; ``grammar="always"`` constrains every call). Raises
        :class:`ExplanationError` (with the last reason) when no answer passes.
        """
        ids = [e.id for e in result.evidence]
        try:
            return ask_structured(self._llm_getter(), self.messages(turn, result, recall, facts),
                                  schema=explanation_schema(ids), max_tokens=self.max_tokens, grammar=self.grammar,
                                  accept=lambda content: self.accept(content, ids, turn, result, facts),
                                  retry=lambda reason: reason in FORMAT_PROBLEMS)
        except StructuredAnswerError as exc:
            raise ExplanationError(f"the LLM gave no acceptable explanation: {exc.reason}") from exc

    @staticmethod
    def accept(content: str, ids: list[str], turn: TurnInput, result: FusedResult,
               facts: str = "") -> tuple[tuple[str, list[str]] | None, str]:
        """The cleaned prose and its citations when an answer passes every check, else ``None`` and why."""
        data = parse_explanation(content)
        if data is None and "{" in content and "}" not in content[content.index("{"):]:
            # the token budget ran out mid-answer: keep the sentences that were complete, checked like any answer
            salvaged = cut_off_explanation(content)
            if salvaged is None:
                return None, "cut off before the JSON object closed (it rambled past the token budget)"
            data = Explanation(explanation=salvaged)
        if data is None:
            return None, "not the JSON object"
        text, in_prose = clean_citations(data.explanation, ids)
        text = ID_IN_TEXT.sub("", text)  # prose carries no raw ids: they go in the citation list
        text = re.sub(r"\s+([,.;:])", r"\1", " ".join(text.split()))
        text = last_complete_sentences(text) or text
        if len(text) < 10:
            return None, "too short"
        if not mentions_label(text.lower(), result.label):
            text = label_prefix(result.label) + text  # always name the fused label the prose explains
        issues = problems(text, result, turn.spoken_text(), example=example_answer(),
                          removed_instructions=" ".join(turn.removed_instructions), facts=facts)
        if issues:
            return None, issues[0]
        cited = [i for i in data.cited_evidence_ids if i in ids] + in_prose
        return (text, list(dict.fromkeys(cited or ids))), ""

    @staticmethod
    def fallback(result: FusedResult) -> tuple[str, list[str]]:
        """The composer's explanation when only the result is at hand (no turn or recall)."""
        return compose(TurnInput(), result, None, attributions_of(result))


def example_answer() -> str:
    """The example answer inside the system prompt (an answer copying it is refused)."""
    system = prompts.load("explain_system")
    return system.rsplit("Answer:", 1)[-1] if "Answer:" in system else ""


def attributions_of(result: FusedResult) -> list[WordWeight]:
    """The word attributions the explain node attached to the text evidence (empty when none)."""
    for e in result.evidence:
        if e.modality in ("text", "transcript") and e.attributions is not None:
            return list(e.attributions)
    return []
