"""The expert contract: one small interface every modality expert implements.

An expert turns a :class:`TurnInput` into one :class:`EmotionEvidence`. It loads its model
once (lazily, on first use) and is reused across turns. :func:`as_tool` exposes it to the
LangGraph agent as a LangChain tool whose inputs are *injected from the graph state* — the
LLM planner chooses which expert to call, never which file it reads.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Annotated, Any, ClassVar

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import InjectedState
from pydantic import BaseModel, Field, PrivateAttr

from emotion_agent.tools.evidence import EmotionEvidence, Modality

log = logging.getLogger(__name__)


class PriorTurn(BaseModel):
    """A previous utterance of the same conversation (context for the experts and the LLM)."""

    speaker: str | None = None
    text: str
    label: str | None = None


class TurnMemo:
    """Values derived once per turn (the decoded audio and its prosody), shared by every expert of the turn.

    Copies of a turn (``model_copy``) share it; a turn built anew, or unpickled, starts empty. Thread-safe:
    experts running in parallel wait for the first computation of a key and reuse it (errors included).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[Any, threading.Lock] = {}
        self._values: dict[Any, tuple[bool, Any]] = {}

    def get(self, key: Any, compute: Any) -> Any:
        """``compute()`` once for ``key``; later calls return its value or raise its exception again."""
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self._values:
                try:
                    self._values[key] = (True, compute())
                except Exception as exc:  # noqa: BLE001 - kept and re-raised for every expert alike
                    self._values[key] = (False, exc)
            ok, value = self._values[key]
        if not ok:
            raise value
        return value

    def __deepcopy__(self, memo: dict) -> "TurnMemo":
        return TurnMemo()

    def __reduce__(self):
        return (TurnMemo, ())


class TurnInput(BaseModel):
    """Everything the user gave for one conversational turn."""

    text: str | None = Field(default=None, description="What was said, as text.")
    audio_path: Path | None = None
    image_path: Path | None = None
    video_path: Path | None = None
    conversation_id: str | None = None
    speaker: str | None = None
    turn_index: int | None = None
    context: list[PriorTurn] = Field(default_factory=list, description="Previous turns, oldest first.")
    future: list[PriorTurn] = Field(default_factory=list, description="Later turns of the same dialogue, in order "
                                    "(known only when a whole dialogue is analysed; read by the offline text mode).")
    warnings: list[str] = Field(default_factory=list, description="Problems found while reading the input.")
    removed_instructions: list[str] = Field(default_factory=list,
                                            description="Instruction-like spans removed from the text (never analysed).")
    #: Filled by the transcription expert when the turn had audio and no text.
    transcript: str | None = None
    _memo: TurnMemo = PrivateAttr(default_factory=TurnMemo)

    def derived(self, key: Any, compute: Any) -> Any:
        """A value computed once per turn and shared by its copies (see :class:`TurnMemo`)."""
        return self._memo.get(key, compute)

    def spoken_text(self) -> str | None:
        """The text to analyse: given text first, else the transcript."""
        if self.text and self.text.strip():
            return self.text
        if self.transcript and self.transcript.strip():
            return self.transcript
        return None

    def has_audio(self) -> bool:
        """Whether the turn carries sound (an audio file or a video's track)."""
        return self.audio_path is not None or self.video_path is not None

    def has_visual(self) -> bool:
        """Whether the turn carries pictures (an image or a video)."""
        return self.image_path is not None or self.video_path is not None


class ExpertError(RuntimeError):
    """The input cannot be analysed at all (unreadable file, wrong format); message is user-facing."""


class Expert(ABC):
    """Base class of every modality expert."""

    name: ClassVar[str]
    modality: ClassVar[Modality]
    description: ClassVar[str]
    #: Experts with a higher stage run after lower ones (text runs after transcription).
    stage: ClassVar[int] = 0

    @abstractmethod
    def accepts(self, turn: TurnInput) -> bool:
        """Whether this turn has the input this expert needs."""

    @abstractmethod
    def _analyze(self, turn: TurnInput) -> EmotionEvidence:
        """Produce evidence; may raise :class:`ExpertError` for unusable input."""

    @property
    def model_id(self) -> str:
        """Which model this expert runs (shown in evidence and run records)."""
        return self.name

    def analyze(self, turn: TurnInput) -> EmotionEvidence:
        """Run the expert, timing it; unusable input becomes zero-confidence evidence with a warning."""
        start = time.perf_counter()
        try:
            if not self.accepts(turn):
                raise ExpertError(f"{self.name}: this turn has no input for the {self.modality} expert")
            evidence = self._analyze(turn)
        except ExpertError as exc:
            evidence = EmotionEvidence.uninformative(
                modality=self.modality, expert=self.name, model_id=self.model_id, warning=str(exc)
            )
        except Exception as exc:  # an expert's bug must not lose the turn: its own modality, marked failed
            log.exception("expert %s failed", self.name)
            evidence = EmotionEvidence.uninformative(
                modality=self.modality, expert=self.name, model_id=self.model_id,
                warning=f"{self.name} failed ({type(exc).__name__}: {str(exc)[:160]})", failed=True,
            )
        evidence.latency_ms = (time.perf_counter() - start) * 1000.0
        return evidence

    def warmup(self) -> None:
        """Load the model now (servers call this at start)."""


def summarize(evidence: EmotionEvidence, max_cues: int = 4) -> str:
    """One line an LLM can read: id, top label, confidence, a few cues and warnings."""
    top = sorted(evidence.distribution.items(), key=lambda kv: -kv[1])[:3]
    dist = ", ".join(f"{k} {v:.2f}" for k, v in top)
    cues = "; ".join(str(c) for c in evidence.cues[:max_cues])
    line = f"[{evidence.id}] {evidence.expert} ({evidence.modality}): {dist}; confidence {evidence.confidence:.2f}"
    if cues:
        line += f"; cues: {cues}"
    if evidence.warnings:
        line += f"; warnings: {'; '.join(evidence.warnings)}"
    return line


def as_tool(expert: Expert) -> BaseTool:
    """Expose ``expert`` as a LangChain tool; its only input is the turn, injected from graph state."""

    def run(state: Annotated[dict[str, Any], InjectedState]) -> tuple[str, EmotionEvidence]:
        """Run the expert on the turn (the tool's entry point)."""
        turn = state["turn"]
        if not isinstance(turn, TurnInput):
            turn = TurnInput.model_validate(turn)
        # Evidence gathered earlier in the turn (e.g. a transcript) is visible to later experts.
        for ev in state.get("evidence", []) or []:
            text = getattr(ev, "extra", {}).get("transcript") if hasattr(ev, "extra") else None
            if text and not turn.transcript:
                turn = turn.model_copy(update={"transcript": text})
        evidence = expert.analyze(turn)
        return summarize(evidence), evidence

    return StructuredTool.from_function(
        func=run,
        name=expert.name,
        description=expert.description,
        response_format="content_and_artifact",
    )
