"""Graph state: plumbing between nodes (evidence and results are the pydantic data in tools/evidence.py)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field

from agent.memory import MemoryRecall
from tools.base import TurnInput
from tools.evidence import EmotionEvidence, FusedResult


def merge_dicts(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    return {**(a or {}), **(b or {})}


class TurnOptions(BaseModel):
    """Per-turn switches (set by the CLI, the server or the eval runner)."""

    explain: bool = True
    remember: bool = True
    planner: str = "auto"
    fusion: str = "weighted"
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

    #: planner/tools → planner: tool calls and tool results (the LLM planner reads them).
    messages: Annotated[Sequence[AnyMessage], add_messages]
    #: collect → fuse/explain: every evidence item gathered this turn.
    evidence: Annotated[list[EmotionEvidence], operator.add]
    #: recall → experts (context), explain: what memory returned.
    recall: MemoryRecall
    #: planner → planner: rounds used (hard cap in settings.max_tool_rounds).
    tool_rounds: int
    #: fuse → explain → remember: the answer.
    result: FusedResult
    #: every node: milliseconds spent, by stage.
    timings: Annotated[dict[str, float], merge_dicts]
