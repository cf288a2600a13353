"""What conversation memory returns for a turn: plain data, with no storage dependency."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, Field


class RecalledTurn(BaseModel):
    """One remembered turn of the same conversation."""

    id: str
    conversation_id: str
    turn_index: int
    speaker: str | None = None
    text: str
    label: str | None = None
    confidence: float | None = None
    similarity: float | None = Field(default=None, description="Cosine similarity to the current text.")
    distribution: dict[str, float] | None = Field(
        default=None, description="The turn's full predicted distribution, where the memory kept one (learned fusion).")


class MemoryRecall(BaseModel):
    """What memory returned for one turn."""

    previous: list[RecalledTurn] = Field(default_factory=list, description="Last turns of the conversation.")
    similar: list[RecalledTurn] = Field(default_factory=list, description="Earlier similar turns, same conversation.")


class MemoryStore(Protocol):
    """What the graph needs from a conversation memory (Chroma in use; the eval's MELD memory in runs)."""

    def next_turn_index(self, conversation_id: str) -> int:
        """The index the next turn of this conversation gets."""

    def recall(self, conversation_id: str, text: str | None, *, previous: int = 3, similar: int = 2) -> MemoryRecall:
        """The previous turns (and similar earlier ones) of this conversation."""

    def remember(self, *, conversation_id: str, turn_index: int, speaker: str | None, text: str, label: str,
                 confidence: float, record: dict[str, Any]) -> None:
        """Store one analysed turn."""
