"""A deterministic, grounded summary of one stored conversation: the trajectory of labels and the turning
points (label changes), each with the modality that drove the new label, read from the stored evidence.

No model runs here: every figure comes from the turns' stored records (``ConversationMemory.conversation(...,
with_records=True)``), so the same memory gives the same summary."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TrajectoryPoint(BaseModel):
    turn_index: int
    speaker: str | None = None
    label: str
    confidence: float


class TurningPoint(BaseModel):
    turn_index: int
    from_label: str
    to_label: str
    driver: str | None = Field(description="The modality that carried the largest share of the new label "
                                           "(None when the stored record has no evidence).")
    driver_share: float | None = None
    driver_evidence_id: str | None = None


class ConversationSummary(BaseModel):
    turns: int
    trajectory: list[TrajectoryPoint]
    turning_points: list[TurningPoint]
    first_change_turn: int | None = Field(default=None, description="The turn where the label first changed.")
    label_counts: dict[str, int]
    dominant_label: str | None
    text: str


def _driver(record: dict[str, Any], label: str) -> tuple[str | None, float | None, str | None]:
    """The modality behind ``label``: the largest fused contribution, else the surest evidence for that label."""
    evidence = [e for e in record.get("evidence") or [] if isinstance(e, dict)]
    shares = {m: float(s) for m, s in (record.get("contributions") or {}).items() if isinstance(s, (int, float))}
    if shares:
        modality = max(shares, key=lambda m: (shares[m], m))
        ev = [e for e in evidence if e.get("modality") == modality]
        return modality, round(shares[modality], 3), (ev[0].get("id") if ev else None)
    backing = [e for e in evidence if e.get("label") == label and isinstance(e.get("confidence"), (int, float))]
    if backing:
        best = max(backing, key=lambda e: e["confidence"])
        return best.get("modality"), None, best.get("id")
    return None, None, None


def summarize_conversation(turns: list[dict[str, Any]]) -> ConversationSummary:
    """Summary of stored turns (dicts with turn_index, speaker, label, confidence and optional record)."""
    ordered = sorted((t for t in turns if isinstance(t.get("label"), str)), key=lambda t: int(t["turn_index"]))
    trajectory = [TrajectoryPoint(turn_index=int(t["turn_index"]), speaker=t.get("speaker"), label=t["label"],
                                  confidence=round(float(t.get("confidence") or 0.0), 3)) for t in ordered]
    points: list[TurningPoint] = []
    for prev, cur in zip(ordered, ordered[1:]):
        if cur["label"] != prev["label"]:
            driver, share, ev_id = _driver(cur.get("record") or {}, cur["label"])
            points.append(TurningPoint(turn_index=int(cur["turn_index"]), from_label=prev["label"],
                                       to_label=cur["label"], driver=driver, driver_share=share,
                                       driver_evidence_id=ev_id))
    counts: dict[str, int] = {}
    for p in trajectory:
        counts[p.label] = counts.get(p.label, 0) + 1
    dominant = max(counts, key=lambda k: (counts[k], k)) if counts else None
    return ConversationSummary(turns=len(trajectory), trajectory=trajectory, turning_points=points,
                               first_change_turn=points[0].turn_index if points else None,
                               label_counts=counts, dominant_label=dominant, text=_prose(trajectory, points, counts))


def _prose(trajectory: list[TrajectoryPoint], points: list[TurningPoint], counts: dict[str, int]) -> str:
    if not trajectory:
        return "No stored turns."
    labels = " -> ".join(p.label for p in trajectory)
    parts = [f"{len(trajectory)} turns: {labels}."]
    if counts:
        parts.append("Counts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) + ".")
    for p in points:
        why = f" ({p.driver} drove it" + (f", share {p.driver_share:.2f}" if p.driver_share is not None else "") + ")" \
            if p.driver else " (no stored evidence)"
        parts.append(f"Turn {p.turn_index}: {p.from_label} -> {p.to_label}{why}.")
    if not points:
        parts.append("No label changes.")
    return " ".join(parts)
