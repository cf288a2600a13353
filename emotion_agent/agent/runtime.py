"""``EmotionAgent``: the one object the CLI, the HTTP service and the eval harness all use.

It owns the long-lived resources — experts (models loaded once), Chroma memory, the chat
model — and the compiled graph; :meth:`analyze` runs one turn through it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from emotion_agent.agent.adjudicate import Adjudicator
from emotion_agent.tools.settings import Settings
from emotion_agent.agent.explain import Explainer
from emotion_agent.agent.graph import AgentContext, build_graph, graph
from emotion_agent.agent.chat_model import build_chat_model
from emotion_agent.agent.memory import ConversationMemory
from emotion_agent.agent.recall import MemoryStore
from emotion_agent.agent.state import TurnOptions
from emotion_agent.tools.base import Expert, TurnInput
from emotion_agent.tools.evidence import FusedResult
from emotion_agent.tools.registry import build_experts

#: Paused runs (label sent, explanation pending) kept at most; older ones are dropped.
MAX_PAUSED_RUNS = 256
#: The state types a paused run stores (the checkpointer deserializes only these).
PAUSED_STATE_TYPES = [("emotion_agent.tools.base", "TurnInput"), ("emotion_agent.tools.base", "PriorTurn"),
                      ("emotion_agent.agent.state", "TurnOptions"), ("emotion_agent.agent.recall", "MemoryRecall"),
                      ("emotion_agent.agent.recall", "RecalledTurn"), ("emotion_agent.tools.evidence", "EmotionEvidence"),
                      ("emotion_agent.tools.evidence", "FusedResult"), ("emotion_agent.tools.evidence", "Cue"),
                      ("emotion_agent.tools.evidence", "ModalityView"), ("emotion_agent.tools.evidence", "Adjudication")]


class EmotionAgent:
    """Owns the models, memory and chat model; :meth:`analyze` runs one turn through the graph."""

    def __init__(self, settings: Settings | None = None, *, memory: "bool | MemoryStore" = True,
                 experts: dict[str, Expert] | None = None, llm: Any = None,
                 explainer: Explainer | None = None, adjudicator: Adjudicator | None = None):
        """``memory``: True (Chroma), False (none) or any :class:`MemoryStore`; ``experts``, ``llm``, ``explainer``
        and ``adjudicator``: given ones are used (shared, e.g. by an eval's worker agents) instead of new ones."""
        self.settings = settings or Settings.from_env()
        self.experts = experts if experts is not None else build_experts(self.settings)
        if isinstance(memory, bool):
            self._memory: MemoryStore | None = ConversationMemory(self.settings) if memory else None
        else:
            self._memory = memory  # any object with the MemoryStore methods (the eval's MELD memory)
        self._llm = llm
        self._llm_lock = threading.Lock()
        self._ask_llm: Any = None  # the ask agent's model (built on the first ask)
        self._ask_warnings: list[str] = []
        self.explainer = explainer or Explainer(lambda: self.llm, grammar=self.settings.explain_grammar,
                                                use_llm=self.settings.explain_llm)
        self.adjudicator = adjudicator or Adjudicator(lambda: self.llm, threshold=self.settings.adjudicate_margin,
                                                      grammar=self.settings.explain_grammar)
        self.graph = graph
        self._paused_saver = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=PAUSED_STATE_TYPES))
        self._open_runs: deque[str] = deque()
        self._paused = build_graph(checkpointer=self._paused_saver, pause_before_explain=True)
        self.context = AgentContext(settings=self.settings, experts=self.experts, memory=self._memory,
                                    explainer=self.explainer, adjudicator=self.adjudicator,
                                    chat_model=lambda: self.llm)

    @property
    def memory(self) -> "MemoryStore | None":
        """The conversation memory the graph reads and writes (Chroma by default)."""
        return self._memory

    @memory.setter
    def memory(self, store: "MemoryStore | None") -> None:
        """Set the conversation memory (None: off); the graph's context follows it."""
        self._memory = store
        self.context.memory = store

    @property
    def llm(self) -> Any:
        """The chat model, built on first use (llama.cpp in-process, or an OpenAI-compatible endpoint)."""
        with self._llm_lock:
            if self._llm is None:
                self._llm = build_chat_model(self.settings)
            return self._llm

    def warmup(self, llm: bool = True) -> None:
        """Load every expert's model now (and the LLM), so the first turn is not slow."""
        for expert in self.experts.values():
            expert.warmup()
        if llm:
            getattr(self.llm, "llama", None)

    def options(self, **overrides: Any) -> TurnOptions:
        """This agent's default per-turn options with ``overrides`` applied."""
        base = TurnOptions(explain=self.settings.explain, planner=self.settings.planner, fusion=self.settings.fusion,
                           adjudicate=self.settings.adjudicate)
        # re-validated, not model_copy(update=...): a misspelt option or an unknown fusion name is an error
        return TurnOptions.model_validate({**base.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})

    def analyze(self, turn: TurnInput, **options: Any) -> FusedResult:
        """Run one turn through the graph. Options: explain, remember, planner, fusion, adjudicate, adjudicate_margin,
        experts, use_memory."""
        start = time.perf_counter()
        out = self.graph.invoke({"turn": turn, "options": self.options(**options)}, context=self.context,
                                config={"recursion_limit": 30})
        result: FusedResult = out["result"]
        timings = {**result.timings_ms, "total": round((time.perf_counter() - start) * 1000.0, 2)}
        return result.model_copy(update={"timings_ms": timings})

    def label_first(self, turn: TurnInput, **options: Any) -> tuple[FusedResult, Callable[[], FusedResult] | None]:
        """Run the graph up to the fused label; return it and, when an explanation was asked, a function that
        resumes the same run (explain → remember) and returns the final result. Used by the HTTP service to
        answer with the label first; the resume function must be called once (it frees the paused run)."""
        start = time.perf_counter()
        config = {"configurable": {"thread_id": uuid.uuid4().hex}, "recursion_limit": 30}
        out = self._paused.invoke({"turn": turn, "options": self.options(**options)}, context=self.context,
                                  config=config)
        result: FusedResult = out["result"]
        result = result.model_copy(update={"timings_ms": {**result.timings_ms,
                                                          "total": round((time.perf_counter() - start) * 1000, 2)}})
        if not self._paused.get_state(config).next:
            self._paused_saver.delete_thread(config["configurable"]["thread_id"])
            return result, None

        self._open_runs.append(config["configurable"]["thread_id"])
        while len(self._open_runs) > MAX_PAUSED_RUNS:  # runs never resumed (client gone): free the oldest
            self._paused_saver.delete_thread(self._open_runs.popleft())

        def resume() -> FusedResult:
            """Resume the paused run (explain, remember) and return its final result."""
            try:
                final = self._paused.invoke(None, context=self.context, config=config)["result"]
            finally:
                self._paused_saver.delete_thread(config["configurable"]["thread_id"])
            return final

        return result, resume

    def stream(self, turn: TurnInput, **options: Any) -> Iterator[tuple[str, FusedResult]]:
        """Run one turn, yielding ``(node, result)`` each time a node updates the result (label first)."""
        for update in self.graph.stream({"turn": turn, "options": self.options(**options)}, context=self.context,
                                        config={"recursion_limit": 30}, stream_mode="updates"):
            for node, values in update.items():
                if isinstance(values, dict) and isinstance(values.get("result"), FusedResult):
                    yield node, values["result"]

    @property
    def ask_llm(self) -> Any:
        """The ask agent's chat model (``Settings.ask_llm``; the 1.5B by default), built on first ask: the
        per-turn label path never loads it."""
        with self._llm_lock:
            if getattr(self, "_ask_llm", None) is None:
                from emotion_agent.agent.chat_model import build_ask_model
                self._ask_llm, self._ask_warnings = build_ask_model(self.settings)
            return self._ask_llm

    def text_expert(self) -> Any:
        """The text expert, for the ask agent's word attributions (built on first use when not already here)."""
        if "text_emotion" not in self.experts:
            self.experts.update(build_experts(self.settings, only=["text_emotion"]))
        return self.experts.get("text_emotion")

    def ask(self, question: str, *, conversation_id: str | None = None, run: "str | Path | None" = None,
            turn: str | None = None, on_event: Any = None) -> Any:
        """Answer ``question`` by the LLM calling tools bound to one scope (``agent.ask_loop``): a stored
        conversation of this agent's memory (``conversation_id``; the caller scopes it to a tenant), or a run
        folder (``run``), or one turn of it (``run`` and ``turn`` = its key). Exactly one of the two scopes."""
        from pathlib import Path as _Path

        from emotion_agent.agent.ask_loop import ask, conversation_tools, run_tools
        from emotion_agent.agent.ask_memory_tools import ConversationTools
        from emotion_agent.agent.ask_run_tools import RunTools
        if (conversation_id is None) == (run is None):
            raise ValueError("ask needs exactly one scope: conversation_id=... or run=DIR")
        if conversation_id is not None:
            if turn is not None:
                raise ValueError("turn=KEY goes with run=DIR; ask about a conversation's turn in the question")
            if self.memory is None:
                raise ValueError("conversation memory is off, so there is no conversation to ask about")
            tools = conversation_tools(ConversationTools(self.memory, conversation_id), self.text_expert)
            names = (conversation_id, conversation_id.split("~", 1)[-1])
        else:
            tools = run_tools(RunTools(_Path(run), key=turn), self.text_expert)
            names = (_Path(run).name, str(run), *((turn, turn.split("/")[-1]) if turn else ()))
        model = self.ask_llm
        answer = ask(model, tools, question, on_event=on_event, max_rounds=self.settings.ask_max_rounds,
                     scope_names=names)
        extra = list(getattr(self, "_ask_warnings", None) or [])
        return answer.model_copy(update={"warnings": extra + answer.warnings}) if extra else answer
