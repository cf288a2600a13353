"""Eval runs as the analyst pages see them: the runs folder, one run's records, filters and paging.

A run folder is what ``emotion-agent eval meld`` writes (``config.json``, ``records.jsonl``,
``summary.json``). Runs are read once and kept while their files do not change (keyed by the records'
size and mtime), so filtering and paging the 2,610-utterance test run is a list scan, not a re-read.
Everything here is plain data; the pages render it (as text: records hold users' words).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotion_agent.evals.records import read_records
from emotion_agent.tools.evidence import LABELS

RUN_NAME = re.compile(r"^[A-Za-z0-9._-]{1,120}$")
PAGE_SIZE = 50


class RunNotFound(LookupError):
    """The asked run (or turn) is not in the runs folder."""


@dataclass
class RunSummary:
    """A run's headline: name, date, size, metrics and the models and config it ran with."""

    name: str
    written: str
    n: int
    expected: int | None
    complete: bool
    weighted_f1: float | None
    ci: list[float] | None
    macro_f1: float | None
    accuracy: float | None
    config: dict[str, Any]
    model_ids: dict[str, str]


@dataclass
class Run:
    """One run read from its folder: summary (rescored when stale), records, and an index by key."""

    name: str
    path: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    by_key: dict[str, int] = field(default_factory=dict)
    #: What the pages computed from this version of the run (plots by kind, word attributions by key): it goes
    #: with the run when the records change or the run leaves the store's memory.
    plots: dict[str, bytes] = field(default_factory=dict)
    words: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def turn(self, key: str) -> dict[str, Any]:
        """The record of utterance ``key``; :class:`RunNotFound` when absent."""
        if key not in self.by_key:
            raise RunNotFound(f"run '{self.name}' has no utterance '{key}'")
        return self.records[self.by_key[key]]

    def dialogue(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The conversation around a turn, in order: the records of the same dialogue in this run, and the
        earlier turns the agent saw as context that the run did not score itself (a sampled run); those
        carry no key, and their label is what the agent's memory held."""
        same = [r for r in self.records if r.get("dialogue_id") == record.get("dialogue_id")]
        seen = {r.get("position") for r in same}
        earlier = [{"key": None, "position": c.get("turn_index"), "speaker": c.get("speaker"), "text": c.get("text"),
                    "label": c.get("label"), "gold": None, "from_context": True}
                   for c in record.get("context") or [] if c.get("turn_index") not in seen]
        return sorted([*earlier, *same], key=lambda r: r.get("position") or 0)


@dataclass
class Filters:
    """What the run page's filter form asks for (all optional)."""

    gold: str | None = None
    pred: str | None = None
    conf_min: float | None = None
    conf_max: float | None = None
    modality: str | None = None
    disagree: bool = False
    wrong: bool = False
    q: str | None = None

    @classmethod
    def from_query(cls, params: Any) -> "Filters":
        """Filters from query parameters; unknown labels and bad numbers are ignored (never an error page)."""
        def label(name: str) -> str | None:
            """A MELD label from the query, or None."""
            v = (params.get(name) or "").strip()
            return v if v in LABELS else None

        def number(name: str) -> float | None:
            """A number in [0, 1] from the query, or None."""
            try:
                v = float(params.get(name) or "")
            except ValueError:
                return None
            return min(1.0, max(0.0, v))

        modality = (params.get("modality") or "").strip()
        q = (params.get("q") or "").strip()[:200]
        return cls(gold=label("gold"), pred=label("pred"), conf_min=number("conf_min"), conf_max=number("conf_max"),
                   modality=modality if modality in ("text", "audio", "vision") else None,
                   disagree=params.get("disagree") in ("1", "on", "true"), wrong=params.get("wrong") in ("1", "on", "true"),
                   q=q or None)

    def query(self, **override: Any) -> dict[str, str]:
        """These filters as query parameters (for links that keep them), with ``override`` applied."""
        values = {"gold": self.gold, "pred": self.pred, "conf_min": self.conf_min, "conf_max": self.conf_max,
                  "modality": self.modality, "disagree": "1" if self.disagree else None,
                  "wrong": "1" if self.wrong else None, "q": self.q} | override
        return {k: str(v) for k, v in values.items() if v not in (None, "")}

    def keep(self, r: dict[str, Any]) -> bool:
        """Whether record ``r`` passes every filter."""
        if self.gold and r.get("gold") != self.gold:
            return False
        if self.pred and r.get("label") != self.pred:
            return False
        conf = float(r.get("confidence") or 0.0)
        if self.conf_min is not None and conf < self.conf_min:
            return False
        if self.conf_max is not None and conf > self.conf_max:
            return False
        if self.modality and self.modality not in (r.get("modalities_used") or []):
            return False
        if self.disagree and not disagrees(r):
            return False
        if self.wrong and r.get("label") == r.get("gold"):
            return False
        if self.q and self.q.lower() not in str(r.get("text") or "").lower():
            return False
        return True


def disagrees(r: dict[str, Any]) -> bool:
    """Whether the modalities of a record pointed at different labels (confident evidence only)."""
    result = r.get("result")
    if not isinstance(result, dict):
        return False
    if result.get("disagreement"):
        return True
    evidence = result.get("evidence")
    labels = {e.get("label") for e in (evidence if isinstance(evidence, list) else [])
              if isinstance(e, dict) and isinstance(e.get("confidence"), (int, float)) and e["confidence"] >= 0.2}
    return len(labels) > 1


def confusion(records: list[dict[str, Any]]) -> list[list[int]]:
    """Counts ``[gold][pred]`` in MELD's label order."""
    index = {lab: i for i, lab in enumerate(LABELS)}
    m = [[0] * len(LABELS) for _ in LABELS]
    for r in records:
        g, p = index.get(r.get("gold")), index.get(r.get("label"))
        if g is not None and p is not None:
            m[g][p] += 1
    return m


class RunStore:
    """The runs folder, read lazily; one lock so two page loads never read the same run twice at once."""

    def __init__(self, folder: Path, keep: int = 4):
        self.folder = Path(folder)
        self.keep = keep  # runs kept in memory (a 2,610-utterance run holds ~90 MB of records)
        self._cache: OrderedDict[str, tuple[tuple[int, float], Run]] = OrderedDict()
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Run folders (those with records), newest first."""
        if not self.folder.is_dir():
            return []
        runs = [p for p in self.folder.iterdir() if p.is_dir() and (p / "records.jsonl").is_file()
                and RUN_NAME.match(p.name)]
        return [p.name for p in sorted(runs, key=lambda p: (p / "records.jsonl").stat().st_mtime, reverse=True)]

    def summaries(self) -> list[RunSummary]:
        """The headline of every run (from its summary file when present, else scored from its records)."""
        out = []
        for name in self.names():
            try:
                out.append(quick_headline(name, self.folder / name) or full_headline(self.get(name)))
            except (OSError, ValueError, KeyError) as exc:  # a damaged run is listed, not a crash
                out.append(RunSummary(name=name, written=f"unreadable ({type(exc).__name__})", n=0, expected=None,
                                      complete=False, weighted_f1=None, ci=None, macro_f1=None, accuracy=None,
                                      config={}, model_ids={}))
        return out

    def get(self, name: str) -> Run:
        """Run ``name`` (cached until its records change); :class:`RunNotFound` for unknown or unsafe names."""
        if not RUN_NAME.match(name or "") or name in (".", ".."):
            raise RunNotFound(f"no run named '{name[:60]}'")
        path = self.folder / name
        rec = path / "records.jsonl"
        if not rec.is_file():
            raise RunNotFound(f"no run named '{name}' in {self.folder}")
        st = rec.stat()
        stamp = (st.st_size, st.st_mtime)
        with self._lock:
            hit = self._cache.get(name)
            if hit and hit[0] == stamp:
                self._cache.move_to_end(name)
                return hit[1]
            run = load(name, path)
            self._cache[name] = (stamp, run)
            self._cache.move_to_end(name)
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
            return run


def load(name: str, path: Path) -> Run:
    """Read a run folder: records, and the summary (rescored from the records when missing or stale)."""
    records = read_records(path / "records.jsonl")
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if summary.get("n") != len(records) and records and (path / "config.json").is_file():
        from emotion_agent.evals.run_meld import summarize_run

        ablations = summary.get("ablations")
        try:
            summary = summarize_run(path, bootstrap=200)
        except (KeyError, ValueError, TypeError, OSError):  # an odd config: score the records alone
            summary = {"config": summary.get("config") or {}, "metrics": scored(records)}
        if ablations:
            summary["ablations"] = ablations
    run = Run(name=name, path=path, summary=summary, records=records)
    run.by_key = {str(r.get("key")): i for i, r in enumerate(records)}
    return run


def scored(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics of records with no usable summary (gold vs label, confidence)."""
    from emotion_agent.evals.metrics import classification_report

    return classification_report([str(r.get("gold")) for r in records], [str(r.get("label")) for r in records],
                                 confidence=[float(r.get("confidence") or 0.0) for r in records], bootstrap=200)


def quick_headline(name: str, path: Path) -> RunSummary | None:
    """The headline from ``summary.json`` alone when it covers every line of the records (no records read
    into memory: the runs page stays fast with many big runs); None when it is missing or stale."""
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        return None
    with (path / "records.jsonl").open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    summary = json.loads(summary_path.read_text())
    if summary.get("n") != lines:
        return None
    return headline(name, summary, lines)


def full_headline(run: Run) -> RunSummary:
    """The headline of a run read into memory."""
    return headline(run.name, run.summary, len(run.records))


def headline(name: str, summary: dict[str, Any], n: int) -> RunSummary:
    """The headline of a run (its summary and record count) for the runs page."""
    s, m = summary, summary.get("metrics") or {}
    return RunSummary(name=name, written=str(s.get("written") or "?"), n=n,
                      expected=s.get("expected"), complete=bool(s.get("complete")),
                      weighted_f1=m.get("weighted_f1"), ci=m.get("weighted_f1_ci95"), macro_f1=m.get("macro_f1"),
                      accuracy=m.get("accuracy"), config=s.get("config") or {},
                      model_ids={k: str(v) for k, v in (s.get("model_ids") or {}).items()})


def page(items: list[Any], number: int, size: int = PAGE_SIZE) -> tuple[list[Any], int, int]:
    """One page of ``items`` (1-based, clamped), the page number shown and the page count."""
    pages = max(1, -(-len(items) // size))
    number = min(max(1, number), pages)
    return items[(number - 1) * size: number * size], number, pages
