"""What conversation memory returns for a turn: plain data, with no storage dependency."""

from __future__ import annotations

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


class MemoryRecall(BaseModel):
    """What memory returned for one turn."""

    previous: list[RecalledTurn] = Field(default_factory=list, description="Last turns of the conversation.")
    similar: list[RecalledTurn] = Field(default_factory=list, description="Earlier similar turns, same conversation.")
