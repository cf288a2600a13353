"""Tools of the ask agent over one stored run: filter turns, metrics, confusion counts, per-class errors.

The run folder is bound when the tools are built (``RunTools(run_dir)``), so no tool argument can reach another
run. Every result is a small pydantic object with a bounded size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from emotion_agent.tools.evidence import LABELS

MAX_ROWS = 5  # rows shown (the count is "matched"); each row costs prompt time on the next call
Label = Literal["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]


class TurnFilter(BaseModel):
    gold: Label | None = None
    pred: Label | None = None
    modality: Literal["text", "audio", "vision"] | None = None
    disagreement: bool | None = None
    wrong_only: bool = False
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    max_confidence: float | None = Field(default=None, ge=0.0, le=1.0)


class TurnRow(BaseModel):
    key: str
    gold: str
    pred: str
    confidence: float
    text: str = Field(default="", max_length=60)


class FilterResult(BaseModel):
    filter: dict[str, Any] = Field(default_factory=dict, description="The filters applied (what was counted).")
    matched: int
    rows: list[TurnRow] = Field(max_length=MAX_ROWS)
    truncated: bool


class Metrics(BaseModel):
    n: int
    accuracy: float
    per_class_recall: dict[str, float]
    gold_counts: dict[str, int] = Field(default_factory=dict, description="label -> turns with that gold label")
    predicted_counts: dict[str, int] = Field(default_factory=dict, description="label -> turns predicted as it")


class ClassErrors(BaseModel):
    label: str
    gold_count: int
    wrong: int
    recall: float | None = None
    predicted_count: int = Field(default=0, description="Turns predicted as this label (any gold label).")
    predicted_instead: dict[str, int]
    most_predicted_instead: str | None = Field(default=None, description="The wrong label predicted most often "
                                               "for this gold label (None when there is no error or a tie).")


class TurnRecord(BaseModel):
    """One turn of the run: its labels, text and each expert's reading."""

    key: str
    correct: bool = Field(description="Whether the predicted label is the gold label.")
    gold: str
    pred: str
    speaker: str | None = None
    text: str = Field(default="", max_length=200)
    confidence: float
    modalities_used: list[str] = Field(default_factory=list)
    evidence: dict[str, str] = Field(default_factory=dict, description="modality -> its label (confidence)")


def _records(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and all(isinstance(rec.get(k), str) for k in ("key", "gold", "label")):
            out.append(rec)
    return out


def _disagrees(r: dict[str, Any]) -> bool:
    result = r.get("result") if isinstance(r.get("result"), dict) else {}
    if result.get("disagreement"):
        return True
    ev = result.get("evidence") if isinstance(result.get("evidence"), list) else []
    return len({e.get("label") for e in ev if isinstance(e, dict)
                and isinstance(e.get("confidence"), (int, float)) and e["confidence"] >= 0.2}) > 1


class RunTools:
    """The run tools, scoped to one run folder (its ``records.jsonl``), or to one turn of it when ``key`` is set."""

    def __init__(self, run_dir: Path, key: str | None = None) -> None:
        path = Path(run_dir) / "records.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir} has no records.jsonl (give a folder written by a batch/eval run)")
        self.records = _records(path)
        self.key = key  # the one turn in scope (its tools then take no key)
        if key is not None:
            self.records = [r for r in self.records if r["key"] == key]
            if not self.records:
                raise KeyError(f"run {run_dir} has no turn with key {key!r}")

    def filter_turns(self, f: TurnFilter) -> FilterResult:
        hits = []
        for r in self.records:
            conf = float(r.get("confidence") or 0.0)
            if (f.gold and r["gold"] != f.gold) or (f.pred and r["label"] != f.pred) \
                    or (f.wrong_only and r["label"] == r["gold"]) \
                    or (f.modality and f.modality not in (r.get("modalities_used") or [])) \
                    or (f.disagreement is not None and _disagrees(r) != f.disagreement) \
                    or (f.min_confidence is not None and conf < f.min_confidence) \
                    or (f.max_confidence is not None and conf > f.max_confidence):
                continue
            hits.append(TurnRow(key=r["key"], gold=r["gold"], pred=r["label"], confidence=round(conf, 3),
                                text=str(r.get("text") or "")[:60]))
        return FilterResult(filter=f.model_dump(exclude_none=True, exclude_defaults=True), matched=len(hits),
                            rows=hits[:MAX_ROWS], truncated=len(hits) > MAX_ROWS)

    def metrics(self) -> Metrics:
        n = len(self.records)
        correct = sum(r["gold"] == r["label"] for r in self.records)
        recall = {}
        for lab in LABELS:
            g = [r for r in self.records if r["gold"] == lab]
            if g:
                recall[lab] = round(sum(r["label"] == lab for r in g) / len(g), 3)
        gold = {lab: sum(r["gold"] == lab for r in self.records) for lab in LABELS}
        pred = {lab: sum(r["label"] == lab for r in self.records) for lab in LABELS}
        return Metrics(n=n, accuracy=round(correct / n, 3) if n else 0.0, per_class_recall=recall,
                       gold_counts={k: v for k, v in gold.items() if v},
                       predicted_counts={k: v for k, v in pred.items() if v})

    def confusion(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            row = out.setdefault(r["gold"], {})
            row[r["label"]] = row.get(r["label"], 0) + 1
        return out

    def class_errors(self, label: Label) -> ClassErrors:
        g = [r for r in self.records if r["gold"] == label]
        instead: dict[str, int] = {}
        for r in g:
            if r["label"] != label:
                instead[r["label"]] = instead.get(r["label"], 0) + 1
        ranked = sorted(instead.items(), key=lambda kv: -kv[1])
        top = ranked[0][0] if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]) else None
        wrong = sum(instead.values())
        return ClassErrors(label=label, gold_count=len(g), wrong=wrong,
                           recall=round((len(g) - wrong) / len(g), 3) if g else None,
                           predicted_count=sum(r["label"] == label for r in self.records),
                           predicted_instead=dict(ranked), most_predicted_instead=top)

    def turn_record(self, r: dict[str, Any]) -> TurnRecord:
        result = r.get("result") if isinstance(r.get("result"), dict) else {}
        ev = {}
        for e in (result.get("evidence") or [])[:6]:
            if isinstance(e, dict) and isinstance(e.get("distribution"), dict) and e["distribution"]:
                top = max(e["distribution"], key=e["distribution"].get)
                ev[str(e.get("modality"))] = f"{top} ({float(e['distribution'][top]):.2f})"
        return TurnRecord(key=r["key"], speaker=r.get("speaker"), text=str(r.get("text") or "")[:200],
                          gold=r["gold"], pred=r["label"], correct=r["gold"] == r["label"],
                          confidence=round(float(r.get("confidence") or 0.0), 3),
                          modalities_used=list(r.get("modalities_used") or []), evidence=ev)
