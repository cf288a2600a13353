"""LLM adjudication: when fusion is unsure between its top two labels, the LLM picks one of them.

Off by default (``settings.adjudicate``): on MELD dev it is measured as an ablation row of
``emotion-agent eval meld --ablations``. The label can never come from free text: the answer must be
the JSON object ``{"label": <candidate>}`` whose value is exactly one of the two candidates. As for
explanations, the model first answers without a grammar (llama.cpp's grammar sampling over a 150k
vocabulary is several times slower than a free answer; see :mod:`agent.structured`) and is re-asked under
the JSON schema — ``label``
an enum of the two candidates — only when that answer does not validate. Anything else (an LLM
error, still no valid answer) keeps the fused label and says so in ``result.adjudication`` and the
warnings.
"""

from __future__ import annotations

import time
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from emotion_agent.tools import prompts
from emotion_agent.agent.explain import turn_prompt_fields
from emotion_agent.agent.llm import LLMError
from emotion_agent.agent.structured import StructuredAnswerError, ask_structured, first_json_object
from emotion_agent.agent.fusion import support_shares
from emotion_agent.agent.recall import MemoryRecall
from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.evidence import Adjudication, FusedResult


def top_two(distribution: dict[str, float]) -> tuple[list[str], float]:
    """The two most likely labels (best first; ties broken by MELD's label order) and their margin."""
    ranked = sorted(distribution.items(), key=lambda kv: -kv[1])[:2]
    return [k for k, _ in ranked], float(ranked[0][1] - ranked[1][1])


def adjudication_schema(candidates: list[str]) -> dict[str, Any]:
    """JSON schema for ``{"label": ...}`` whose label must be one of ``candidates``."""
    return {"type": "object", "properties": {"label": {"type": "string", "enum": candidates}},
            "required": ["label"]}


def parse_choice(content: Any, candidates: list[str]) -> str | None:
    """The candidate named by the answer's JSON object ``{"label": ...}``; ``None`` unless exactly a candidate."""
    data = first_json_object(content)
    label = data.get("label") if isinstance(data, dict) else None
    return label if isinstance(label, str) and label in candidates else None


class Adjudicator:
    """Asks the LLM to pick one of the fused top-2 labels when their margin is below threshold."""

    def __init__(self, llm_getter: Any, threshold: float = 0.1, max_tokens: int = 16, grammar: str = "fallback"):
        self._llm_getter = llm_getter
        self.threshold = threshold
        self.max_tokens = max_tokens
        self.grammar = grammar

    def messages(self, turn: TurnInput, result: FusedResult, recall: MemoryRecall, candidates: list[str]) -> list[Any]:
        """The system and user prompts asking the LLM to pick one of ``candidates``."""
        user = prompts.render("adjudicate_user", candidates=" or ".join(candidates),
                              **turn_prompt_fields(turn, result, recall))
        return [SystemMessage(prompts.load("adjudicate_system")), HumanMessage(user)]

    def choose(self, turn: TurnInput, result: FusedResult, recall: MemoryRecall,
               threshold: float | None = None) -> Adjudication:
        """Ask the LLM when the fused margin is below ``threshold``; never raises."""
        threshold = self.threshold if threshold is None else threshold
        candidates, margin = top_two(result.distribution)
        adj = Adjudication(candidates=candidates, margin=margin, threshold=threshold,
                           fused_label=result.label)
        if margin >= threshold or not result.evidence:
            return adj
        start = time.perf_counter()
        try:
            chosen = ask_structured(self._llm_getter(), self.messages(turn, result, recall, candidates),
                                    schema=adjudication_schema(candidates), max_tokens=self.max_tokens,
                                    grammar=self.grammar,
                                    accept=lambda content: (parse_choice(content, candidates),
                                                            f"the answer names neither of {candidates}"))
        except (StructuredAnswerError, LLMError, ValueError, RuntimeError, OSError) as exc:
            # the LLM failing must not lose the turn: keep the fused label
            return adj.model_copy(update={"status": "failed", "detail": f"{type(exc).__name__}: {str(exc)[:160]}",
                                          "latency_ms": round((time.perf_counter() - start) * 1000.0, 2)})
        return adj.model_copy(update={"status": "applied", "chosen": chosen, "changed": chosen != result.label,
                                      "latency_ms": round((time.perf_counter() - start) * 1000.0, 2)})

    @staticmethod
    def apply(result: FusedResult, adj: Adjudication) -> FusedResult:
        """The result with the adjudicated label (distribution kept; confidence = its fused probability)."""
        update: dict[str, Any] = {"adjudication": adj}
        if adj.status == "failed":
            update["warnings"] = [*result.warnings, f"LLM adjudication failed ({adj.detail}); fused label kept"]
        if adj.changed and adj.chosen:
            update.update(label=adj.chosen, confidence=round(float(result.distribution[adj.chosen]), 4),
                          contributions=support_shares(adj.chosen, result.evidence),
                          fusion_policy=f"{result.fusion_policy}+llm_adjudication")
        return result.model_copy(update=update)
