"""``EmotionAgent``: the one object the CLI, the HTTP service and the eval harness all use.

It owns the long-lived resources — experts (models loaded once), Chroma memory, the chat
model — and the compiled graph; :meth:`analyze` runs one turn through it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from agent.adjudicate import Adjudicator
from agent.config import Settings
from agent.explain import Explainer
from agent.graph import build_graph
from agent.llm import build_chat_model
from agent.memory import ConversationMemory
from agent.state import TurnOptions
from tools.base import Expert, TurnInput
from tools.evidence import FusedResult
from tools.registry import build_experts


class EmotionAgent:
    def __init__(self, settings: Settings | None = None, *, memory: bool = True,
                 experts: dict[str, Expert] | None = None, llm: Any = None):
        self.settings = settings or Settings.from_env()
        self.experts = experts if experts is not None else build_experts(self.settings)
        self.memory = ConversationMemory(self.settings) if memory else None
        self._llm = llm
        self._llm_lock = threading.Lock()
        self.explainer = Explainer(lambda: self.llm, grammar=self.settings.explain_grammar)
        self.adjudicator = Adjudicator(lambda: self.llm, threshold=self.settings.adjudicate_margin,
                                       grammar=self.settings.explain_grammar)
        self.graph = build_graph(self)

    @property
    def llm(self) -> Any:
        with self._llm_lock:
            if self._llm is None:
                self._llm = build_chat_model(self.settings)
            return self._llm

    def warmup(self, llm: bool = True) -> None:
        for expert in self.experts.values():
            expert.warmup()
        if llm:
            getattr(self.llm, "llama", None)

    def options(self, **overrides: Any) -> TurnOptions:
        base = TurnOptions(explain=self.settings.explain, planner=self.settings.planner, fusion=self.settings.fusion,
                           adjudicate=self.settings.adjudicate)
        return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})

    def analyze(self, turn: TurnInput, **options: Any) -> FusedResult:
        """Run one turn through the graph. Options: explain, remember, planner, fusion, adjudicate, adjudicate_margin,
        experts, use_memory."""
        start = time.perf_counter()
        out = self.graph.invoke({"turn": turn, "options": self.options(**options)}, config={"recursion_limit": 30})
        result: FusedResult = out["result"]
        timings = {**result.timings_ms, "total": round((time.perf_counter() - start) * 1000.0, 2)}
        return result.model_copy(update={"timings_ms": timings})
