"""Graph state: plumbing between nodes (evidence and results are the pydantic data in tools/evidence.py)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from emotion_agent.agent.recall import MemoryRecall
from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.evidence import EmotionEvidence, FusedResult
from emotion_agent.tools.settings import FusionName, PlannerName


def merge_dicts(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer for the timings field: later keys win."""
    return {**(a or {}), **(b or {})}


class TurnOptions(BaseModel):
    """Per-turn switches (set by the CLI, the server or the eval runner); unknown names are refused."""

    model_config = ConfigDict(extra="forbid")

    explain: bool = True
    remember: bool = True
    planner: PlannerName = "auto"
    fusion: FusionName = "learned"
    adjudicate: bool = False
    adjudicate_margin: float | None = Field(default=None, description="Override settings.adjudicate_margin.")
    experts: list[str] | None = Field(default=None, description="Restrict to these experts (ablations).")
    use_memory: bool = True


class InputState(TypedDict):
    """What a caller gives the graph."""

    turn: TurnInput
    options: TurnOptions


class AgentState(InputState, total=False):
    """Full state. Writers → readers are noted per field."""

    #: plan → run_experts: the experts chosen for this round.
    planned: list[str]
    #: run_experts → plan/fuse/explain: every evidence item gathered this turn.
    evidence: Annotated[list[EmotionEvidence], operator.add]
    #: run_experts → every node after it (via ``effective_turn``): the words the transcription expert heard,
    #: written once, when the turn came without a transcript.
    transcript: str
    #: recall → experts (context), explain: what memory returned.
    recall: MemoryRecall
    #: planner → planner: rounds used (hard cap in settings.max_tool_rounds).
    tool_rounds: int
    #: fuse → explain → remember: the answer.
    result: FusedResult
    #: every node: milliseconds spent, by stage.
    timings: Annotated[dict[str, float], merge_dicts]
