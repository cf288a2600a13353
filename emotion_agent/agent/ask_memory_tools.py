"""Tools of the ask agent over one stored conversation: its turns with labels, one turn's evidence, similar
past turns, the grounded summary.

The conversation (already tenant-scoped by the caller) is bound when the tools are built
(``ConversationTools(memory, conversation_id)``); no tool argument names a conversation, so a question cannot
reach another one. Results are small pydantic objects with bounded sizes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from emotion_agent.agent.conversation_summary import ConversationSummary, summarize_conversation

MAX_TURNS = 20


class TurnRange(BaseModel):
    first: int | None = Field(default=None, ge=0, description="First turn index (default: the start).")
    last: int | None = Field(default=None, ge=0, description="Last turn index (default: the end).")


class TurnIndex(BaseModel):
    turn_index: int = Field(ge=0)


class LabelQuery(BaseModel):
    label: Literal["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]


class LabelTurns(BaseModel):
    """The turns of this conversation that got one label."""

    label: str
    count: int
    turn_indices: list[int] = Field(max_length=MAX_TURNS)
    first_turn: int | None = None
    last_turn: int | None = None


class SimilarQuery(BaseModel):
    text: str = Field(min_length=1, max_length=300, description="Words to find similar past turns for.")
    k: int = Field(default=3, ge=1, le=5)


class StoredTurn(BaseModel):
    turn_index: int
    speaker: str | None = None
    text: str = Field(default="", max_length=120)
    label: str | None = None
    confidence: float | None = None


class TurnsResult(BaseModel):
    total: int
    turns: list[StoredTurn] = Field(max_length=MAX_TURNS)
    truncated: bool


class EvidenceRow(BaseModel):
    id: str
    modality: str
    label: str
    confidence: float


class TurnEvidence(BaseModel):
    turn_index: int
    label: str | None
    confidence: float | None
    contributions: dict[str, float] = Field(default_factory=dict)
    top_modality: str | None = Field(default=None, description="The modality with the largest share of the label.")
    evidence: list[EvidenceRow] = Field(default_factory=list, max_length=8)
    explanation: str | None = Field(default=None, max_length=400)


class SimilarResult(BaseModel):
    turns: list[StoredTurn] = Field(max_length=5)
    similarity: list[float] = Field(max_length=5)


def _row(t: dict[str, Any]) -> StoredTurn:
    conf = t.get("confidence")
    return StoredTurn(turn_index=int(t["turn_index"]), speaker=t.get("speaker"), text=str(t.get("text") or "")[:120],
                      label=t.get("label"), confidence=round(float(conf), 3) if conf is not None else None)


class ConversationTools:
    """The conversation tools, bound to one (tenant-scoped) conversation id of a memory store."""

    def __init__(self, memory: Any, conversation_id: str) -> None:
        self._memory, self._cid = memory, conversation_id

    def _turns(self) -> list[dict[str, Any]]:
        return self._memory.conversation(self._cid, with_records=True)

    def turns(self, r: TurnRange) -> TurnsResult:
        all_turns = self._turns()
        hits = [t for t in all_turns if (r.first is None or t["turn_index"] >= r.first)
                and (r.last is None or t["turn_index"] <= r.last)]
        return TurnsResult(total=len(all_turns), turns=[_row(t) for t in hits[:MAX_TURNS]],
                           truncated=len(hits) > MAX_TURNS)

    def turn_evidence(self, q: TurnIndex) -> TurnEvidence | dict[str, str]:
        match = [t for t in self._turns() if t["turn_index"] == q.turn_index]
        if not match:
            return {"error": f"this conversation has no turn {q.turn_index}"}
        t, rec = match[0], match[0].get("record") or {}
        ev = [EvidenceRow(id=str(e.get("id")), modality=str(e.get("modality")), label=str(e.get("label")),
                          confidence=round(float(e.get("confidence") or 0.0), 3))
              for e in (rec.get("evidence") or [])[:8] if isinstance(e, dict)]
        shares = {m: round(float(s), 3) for m, s in (rec.get("contributions") or {}).items()}
        return TurnEvidence(turn_index=t["turn_index"], label=t.get("label"), confidence=t.get("confidence"),
                            contributions=shares, top_modality=max(shares, key=shares.get) if shares else None,
                            evidence=ev, explanation=(rec.get("explanation") or None) and rec["explanation"][:400])

    def label_turns(self, q: LabelQuery) -> LabelTurns:
        hits = sorted(int(t["turn_index"]) for t in self._turns() if t.get("label") == q.label)
        return LabelTurns(label=q.label, count=len(hits), turn_indices=hits[:MAX_TURNS],
                          first_turn=hits[0] if hits else None, last_turn=hits[-1] if hits else None)

    def similar(self, q: SimilarQuery) -> SimilarResult:
        recall = self._memory.recall(self._cid, q.text, previous=0, similar=q.k)
        got = list(recall.similar)[:q.k]
        return SimilarResult(turns=[_row(t.model_dump()) for t in got],
                             similarity=[round(float(t.similarity or 0.0), 3) for t in got])

    def summary(self) -> ConversationSummary:
        return summarize_conversation(self._turns())
