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

from agent import prompts
from agent.memory import MemoryRecall
from tools.base import TurnInput
from tools.evidence import EmotionEvidence, Explanation, FusedResult

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
    raw = content if isinstance(content, str) else ""
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return Explanation.model_validate(json.loads(raw[start:end + 1], strict=False))
    except (ValueError, TypeError):
        return None


class Explainer:
    def __init__(self, llm_getter: Any, max_tokens: int = 120, grammar: str = "fallback"):
        self._llm_getter = llm_getter
        self.max_tokens = max_tokens
        self.grammar = grammar

    def messages(self, turn: TurnInput, result: FusedResult, recall: MemoryRecall) -> list[Any]:
        utterance = (turn.spoken_text() or "(no words: audio/visual only)")[:MAX_UTTERANCE_CHARS]
        user = prompts.render(
            "explain_user", label=result.label, confidence=f"{result.confidence:.2f}",
            evidence="\n".join(evidence_line(e) for e in result.evidence) or "(no evidence)",
            memory=_memory_block(recall), utterance=utterance,
        )
        return [SystemMessage(prompts.load("explain_system")), HumanMessage(user)]

    def explain(self, turn: TurnInput, result: FusedResult, recall: MemoryRecall) -> tuple[str, list[str]]:
        """LLM explanation validated against :class:`Explanation`; citations limited to real evidence ids.

        ``grammar="fallback"`` (default) first lets the model answer freely — the few-shot prompt makes it
        write the JSON object, and grammar-constrained sampling halves llama.cpp's generation speed
        (measured 12–16 vs 28 tok/s on the 0.5B) — and re-asks under the JSON-schema grammar only when
        the free answer does not validate. ``grammar="always"`` constrains every call.
        """
        ids = [e.id for e in result.evidence]
        llm = self._llm_getter()
        msgs = self.messages(turn, result, recall)
        data = None
        if self.grammar != "always":
            data = parse_explanation(llm.bind(max_tokens=self.max_tokens, stop=["\n"]).invoke(msgs).content)  # one line
            if data is not None and ids and not set(data.cited_evidence_ids) & set(ids):
                data = None  # cites no real evidence (small models copy the example's ids): ask under the schema
        if data is None:
            msg = llm.bind(json_schema=explanation_schema(ids), max_tokens=self.max_tokens).invoke(msgs)
            data = parse_explanation(msg.content)
            if data is None:
                raise ValueError("the LLM answer is not the requested JSON object")
        text, in_prose = clean_citations(data.explanation, ids)
        cited = [i for i in data.cited_evidence_ids if i in ids] + in_prose
        if len(text) < 10:
            raise ValueError("empty explanation")
        if not re.search(rf"\b{result.label}\b", text, re.IGNORECASE):
            text = f"{result.label.capitalize()}: {text}"  # always name the fused label the prose explains
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
