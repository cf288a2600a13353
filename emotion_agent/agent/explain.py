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

from emotion_agent.tools import prompts
from emotion_agent.agent.recall import MemoryRecall
from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.evidence import EmotionEvidence, Explanation, FusedResult

MAX_UTTERANCE_CHARS = 600


_ID_IN_PROSE = re.compile(r"\s*\[([a-z_]+-[0-9a-f]{6})\]")


def clean_citations(text: str, ids: list[str]) -> tuple[str, list[str]]:
    """Drop bracketed ids that are not real evidence (small models copy the prompt's example ids)."""
    found: list[str] = []

    def keep(m: re.Match[str]) -> str:
        if m.group(1) in ids:
            found.append(m.group(1))
            return m.group(0)
        return ""

    cleaned = _ID_IN_PROSE.sub(keep, text)
    cleaned = re.sub(r"\s+([,.;:])", r"\1", " ".join(cleaned.split()))
    return cleaned, found


# ---- does the prose agree with the label? (used by the explainer and by the eval's checks) -------
#: Words that name each label in prose (the label itself plus its common adjective/noun forms).
LABEL_WORDS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neutrality"),
    "joy": ("joy", "joyful", "joyous", "happy", "happiness"),
    "surprise": ("surprise", "surprised", "surprising"),
    "anger": ("anger", "angry", "angered"),
    "sadness": ("sadness", "sad"),
    "disgust": ("disgust", "disgusted", "disgusting"),
    "fear": ("fear", "fearful", "afraid", "scared"),
}
_ASSERT = (r"(?:label(?:ed|led)?|classif(?:ied|y)|categori[sz]ed|emotion|answer|verdict|final label|tagged)"
           r"(?:\s+(?:is|was|as|should\s+be|would\s+be|of|=|:))+\s+\"?'?")
#: Any bracketed evidence-id-like token in prose (the checks count invented ones too).
ID_IN_TEXT = re.compile(r"\[([A-Za-z_]+-[0-9a-f]{4,})\]")


def mentions_label(text: str, label: str) -> bool:
    """``text`` (lower case) names ``label`` or one of its forms, as a whole word."""
    return any(re.search(rf"\b{w}\b", text) for w in LABEL_WORDS[label])


def asserted_labels(text: str) -> set[str]:
    """Labels the prose asserts as the answer: ``labeled (as) X``, ``the emotion is X``, ``classified as X``..."""
    low = text.lower()
    out = set()
    for lab, words in LABEL_WORDS.items():
        for w in words:
            if re.search(_ASSERT + rf"{w}\b", low):
                out.add(lab)
    return out



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


def parse_explanation(content: Any) -> Explanation | None:
    """The first JSON object in ``content`` as an :class:`Explanation`, or None."""
    data = first_json_object(content)
    if data is None:
        return None
    try:
        return Explanation.model_validate(data)
    except (ValueError, TypeError):
        return None


class ExplanationError(ValueError):
    """No LLM answer passed the checks (not the JSON object, no real citation, or another label argued)."""


class Explainer:
    """Writes the cited explanation of a fused result: LLM prose checked against the evidence, or a template."""

    def __init__(self, llm_getter: Any, max_tokens: int = 120, grammar: str = "fallback"):
        self._llm_getter = llm_getter
        self.max_tokens = max_tokens
        self.grammar = grammar

    def explain_result(self, turn: TurnInput, result: FusedResult, recall: MemoryRecall) -> FusedResult:
        """``result`` with its explanation: the LLM's when it validates, else the template's, marked as such."""
        from emotion_agent.agent.llm import LLMError

        warnings = list(result.warnings)
        try:
            text, cited = self.explain(turn, result, recall)
            source = "llm"
        except (ExplanationError, LLMError, ValueError, RuntimeError, OSError) as exc:
            text, cited = self.fallback(result)
            source = "template"
            warnings.append(f"LLM explanation failed ({type(exc).__name__}); template explanation used")
        return result.model_copy(update={"explanation": text, "cited_evidence_ids": cited,
                                         "explanation_source": source, "warnings": warnings})

    def messages(self, turn: TurnInput, result: FusedResult, recall: MemoryRecall) -> list[Any]:
        user = prompts.render("explain_user", label=result.label, confidence=f"{result.confidence:.2f}",
                              **turn_prompt_fields(turn, result, recall))
        return [SystemMessage(prompts.load("explain_system")), HumanMessage(user)]

    def explain(self, turn: TurnInput, result: FusedResult, recall: MemoryRecall) -> tuple[str, list[str]]:
        """LLM explanation validated against :class:`Explanation`; citations limited to real evidence ids.

        ``grammar="fallback"`` (default) first lets the model answer freely — the few-shot prompt makes it
        write the JSON object, and grammar-constrained sampling halves llama.cpp's generation speed
        (measured 12–16 vs 28 tok/s on the 0.5B) — and re-asks under the JSON-schema grammar only when
        the free answer does not validate: not the JSON object, no real evidence cited, or prose that asserts
        another label than the fused one. ``grammar="always"`` constrains every call. Raises ``ValueError``
        when no answer validates (the graph then uses the template explanation and says so).
        """
        ids = [e.id for e in result.evidence]
        llm = self._llm_getter()
        msgs = self.messages(turn, result, recall)
        for constrained in ([False, True] if self.grammar != "always" else [True]):
            out = self._attempt(llm, msgs, ids, result.label, constrained)
            if out is not None:
                return out
        raise ExplanationError("the LLM gave no valid explanation (not the JSON object, no real citation, or it argued "
                         "for another label)")

    def _attempt(self, llm: Any, msgs: list[Any], ids: list[str], label: str,
                 constrained: bool) -> tuple[str, list[str]] | None:
        """One LLM answer, validated: the JSON object, citing real evidence, explaining ``label`` and no other."""
        if constrained:
            content = llm.bind(json_schema=explanation_schema(ids), max_tokens=self.max_tokens).invoke(msgs).content
        else:  # one line of free JSON
            content = llm.bind(max_tokens=self.max_tokens, stop=["\n"]).invoke(msgs).content
        data = parse_explanation(content)
        if data is None:
            return None
        if not constrained and ids and not set(data.cited_evidence_ids) & set(ids):
            return None  # cites no real evidence (small models copy the example's ids): ask under the schema
        text, in_prose = clean_citations(data.explanation, ids)
        if len(text) < 10:
            return None
        if asserted_labels(text) - {label}:
            return None  # "... so it is labeled joy" under an anger label: the prose contradicts the answer
        if not mentions_label(text.lower(), label):
            text = f"{label.capitalize()}: {text}"  # always name the fused label the prose explains
        cited = [i for i in data.cited_evidence_ids if i in ids] + in_prose
        return text, list(dict.fromkeys(cited))

    @staticmethod
    def fallback(result: FusedResult) -> tuple[str, list[str]]:
        """Deterministic explanation from the evidence (used when the LLM is off or fails)."""
        support = sorted(((e.distribution[result.label] * e.confidence, e) for e in result.evidence
                          if e.confidence > 0), key=lambda t: -t[0])
        top = [e for _, e in support[:2]]
        top_text = "; ".join(
            f"[{e.id}] {e.expert} gives {result.label} {e.distribution[result.label]:.2f}"
            + (f" ({', '.join(str(c) for c in e.cues[:2])})" if e.cues else "") for e in top) or "none"
        weak = [e for e in result.evidence if e.low_confidence]
        weak_text = (" Weak or missing: " + "; ".join(f"[{e.id}] {e.expert}: {', '.join(e.warnings) or 'low confidence'}"
                                                       for e in weak) + ".") if weak else ""
        text = prompts.render("explain_fallback", label=result.label, confidence=f"{result.confidence:.2f}",
                              policy=result.fusion_policy, n_evidence=len(result.evidence), top_support=top_text,
                              weak=weak_text)
        return text, [e.id for e in top]
