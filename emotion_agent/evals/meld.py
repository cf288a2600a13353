"""MELD as a dataset: the loader (utterances grouped into dialogues, quirks of the CSVs handled), the
stratified sample a run scores, and the local media clips of an utterance.

Quirks (see ``shared/data/README.md``): ``Sr No.`` is not unique in train, so rows are keyed
by (Dialogue_ID, Utterance_ID); dialogues can have gaps in Utterance_ID (we keep the order,
not the numbers); timestamps mix 1- and 2-digit hours and 2- or 3-digit milliseconds; a few
durations are outliers (kept, flagged by :attr:`Utterance.duration_s`).
"""

from __future__ import annotations

import csv
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotion_agent.tools.evidence import LABELS

if TYPE_CHECKING:
    from emotion_agent.evals.meld_config import RunConfig
    from emotion_agent.tools.settings import Settings

SPLITS = ("train", "dev", "test")
_TS = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})[,.](\d{1,3})$")


class MeldError(ValueError):
    """The MELD files are missing or malformed."""


@dataclass(frozen=True)
class Utterance:
    """One MELD utterance: speaker, words, gold labels, timestamps and position in its dialogue."""

    split: str
    dialogue_id: int
    utterance_id: int
    speaker: str
    text: str
    emotion: str
    sentiment: str
    start_s: float | None
    end_s: float | None
    #: Position inside the dialogue (0-based, no gaps) — differs from utterance_id where MELD has gaps.
    position: int = 0

    @property
    def key(self) -> str:
        """Unique id ``<split>/dia<D>_utt<U>``."""
        return f"{self.split}/dia{self.dialogue_id}_utt{self.utterance_id}"

    @property
    def duration_s(self) -> float | None:
        """End minus start time in seconds, or None when a timestamp is missing."""
        if self.start_s is None or self.end_s is None:
            return None
        return self.end_s - self.start_s


def parse_timestamp(raw: str) -> float | None:
    """``0:20:57,256`` or ``00:20:57,25`` → seconds; ``None`` when unparseable."""
    m = _TS.match(raw.strip())
    if not m:
        return None
    h, mi, s, ms = m.groups()
    frac = int(ms) / (10 ** len(ms))
    return int(h) * 3600 + int(mi) * 60 + int(s) + frac


def csv_path(split: str, data_dir: Path) -> Path:
    """Path of the MELD CSV for ``split``; MeldError for an unknown split."""
    if split not in SPLITS:
        raise MeldError(f"unknown MELD split '{split}' (use one of {', '.join(SPLITS)})")
    return data_dir / "meld" / f"{split}_sent_emo.csv"


def load_split(split: str, data_dir: Path) -> list[Utterance]:
    """All utterances of ``split``, ordered by dialogue then utterance."""
    path = csv_path(split, data_dir)
    if not path.is_file():
        raise MeldError(f"MELD {split} CSV not found at {path} (set EMOTION_AGENT_DATA_DIR to the data folder)")
    rows: dict[tuple[int, int], dict[str, str]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        needed = {"Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"}
        if not reader.fieldnames or not needed <= set(reader.fieldnames):
            raise MeldError(f"{path}: missing columns {sorted(needed - set(reader.fieldnames or []))}")
        for row in reader:
            key = (int(row["Dialogue_ID"]), int(row["Utterance_ID"]))
            rows[key] = row
    by_dialogue: dict[int, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for (dia, utt), row in rows.items():
        by_dialogue[dia].append((utt, row))
    out: list[Utterance] = []
    for dia in sorted(by_dialogue):
        for pos, (utt, row) in enumerate(sorted(by_dialogue[dia], key=lambda t: t[0])):
            emotion = row["Emotion"].strip().lower()
            if emotion not in LABELS:
                raise MeldError(f"{path}: dialogue {dia} utterance {utt} has unknown emotion '{emotion}'")
            out.append(Utterance(
                split=split, dialogue_id=dia, utterance_id=utt, speaker=row["Speaker"].strip(),
                text=row["Utterance"].strip(), emotion=emotion, sentiment=row["Sentiment"].strip().lower(),
                start_s=parse_timestamp(row.get("StartTime", "")), end_s=parse_timestamp(row.get("EndTime", "")),
                position=pos,
            ))
    return out


def dialogues(utterances: list[Utterance]) -> dict[int, list[Utterance]]:
    """Group utterances by dialogue id, each list in dialogue order."""
    groups: dict[int, list[Utterance]] = defaultdict(list)
    for u in utterances:
        groups[u.dialogue_id].append(u)
    return dict(groups)


def previous_turns(utterances: list[Utterance], k: int) -> dict[str, list[Utterance]]:
    """For each utterance key, the up-to-``k`` utterances before it in its dialogue."""
    out: dict[str, list[Utterance]] = {}
    for turns in dialogues(utterances).values():
        for i, u in enumerate(turns):
            out[u.key] = turns[max(0, i - k):i] if k > 0 else []
    return out


def stratified_sample(utts: list[Utterance], limit: int | None, seed: int = 13) -> list[Utterance]:
    """``limit`` utterances with MELD's class proportions (at least one per class), fixed seed."""
    if not limit or limit >= len(utts):
        return utts
    rng = random.Random(seed)
    by: dict[str, list[Utterance]] = defaultdict(list)
    for u in utts:
        by[u.emotion].append(u)
    picked: list[Utterance] = []
    for label, group in sorted(by.items()):
        n = max(1, round(limit * len(group) / len(utts)))
        picked += rng.sample(group, min(n, len(group)))
    rng.shuffle(picked)
    picked = picked[:limit]
    order = {u.key: i for i, u in enumerate(utts)}
    return sorted(picked, key=lambda u: order[u.key])


def media_for(u: Utterance, data_dir: Path) -> dict[str, Any]:
    """The real clips we have for this utterance (most of MELD has none here)."""
    media = data_dir / "meld" / "media"
    out: dict[str, Any] = {"audio": None, "video": None, "image": None, "warnings": []}
    for prefix, uncertain in ((f"{u.split}_dia{u.dialogue_id}_utt{u.utterance_id}", False),
                              (f"probably_{u.split}_dia{u.dialogue_id}_utt{u.utterance_id}", True)):
        found = False
        for kind, suffix in (("video", ".mp4"), ("audio", ".wav"), ("image", "_frames.png")):
            p = media / f"{prefix}{suffix}"
            if p.is_file() and out[kind] is None:
                out[kind] = p
                found = True
        if found and uncertain:
            out["warnings"].append("media file is only probably this utterance (see data README)")
    if out["video"] is not None:  # the video carries the audio track and the frames
        out["audio"] = None
        out["image"] = None
    return out


def select(split: str, cfg: RunConfig, settings: Settings) -> tuple[list[Utterance], list[Utterance]]:
    """(all utterances of ``split``, the sample to run); without text only ones with media."""
    utts = load_split(split, settings.data_dir)
    pool = utts
    if "text" not in cfg.modalities:  # without words only utterances with media can be analysed
        pool = [u for u in utts if any(media_for(u, settings.data_dir)[k] for k in ("audio", "video", "image"))]
    return utts, stratified_sample(pool, cfg.limit, cfg.seed)
