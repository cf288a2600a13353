"""Word error rate and decode time of the two transcription modes ('fast' short window vs 'accurate' 30 s).

Real speech: RAVDESS clips (two known sentences, a seeded sample) and the MELD clips in ``meld/media`` against
their CSV utterances. ``python -m emotion_agent.benchmarks.asr_wer [N_RAVDESS]`` prints figures and writes
``results/asr_wer.json`` (with the CPU model); ``N_RAVDESS`` 1440 takes every RAVDESS clip.
``python -m emotion_agent.benchmarks.asr_wer --records RUN/records.jsonl [OUT.json]``: WER of the transcripts an
``eval media speech`` run made through the agent.
"""

from __future__ import annotations

import csv
import json
import platform
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

from emotion_agent.tools.media import load_audio
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.transcribe import TranscribeExpert, wer

RAVDESS_SENTENCES = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's guess)."""
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def clips(data: Path, n_ravdess: int) -> list[tuple[Path, str]]:
    """(audio file, reference text) pairs: a seeded RAVDESS sample and every MELD clip with a CSV utterance."""
    ravdess = sorted((data / "speech" / "ravdess").glob("*.flac"))
    random.Random(0).shuffle(ravdess)
    pairs = [(p, RAVDESS_SENTENCES[p.name.split("-")[4]]) for p in ravdess[:n_ravdess]]
    utterances = {}
    for split in ("train", "dev", "test"):
        with open(data / "meld" / f"{split}_sent_emo.csv", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                utterances[f"{split}_dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}"] = row["Utterance"]
    for p in sorted((data / "meld" / "media").glob("*.wav")):
        key = re.sub(r"^probably_", "", p.stem)
        if key in utterances:
            pairs.append((p, utterances[key]))
    return pairs


def main(n_ravdess: int = 60) -> dict:
    settings = Settings.from_env()
    experts = {mode: TranscribeExpert(settings.model_copy(update={"asr_mode": mode})) for mode in ("fast", "accurate")}
    rows = []
    for path, ref in clips(settings.data_dir, n_ravdess):
        audio, duration = load_audio(path, settings.max_audio_s, "bench")
        row = {"clip": path.name, "corpus": "meld" if "dia" in path.name else "ravdess", "duration_s": duration}
        for mode, expert in experts.items():
            t = time.perf_counter()
            result = expert.transcribe_audio(audio)
            row[f"{mode}_s"] = time.perf_counter() - t
            row[f"{mode}_wer"] = wer(ref, " ".join(s["text"] for s in result["segments"]))
        rows.append(row)
    summary = {}
    for corpus in ("ravdess", "meld"):
        sel = [r for r in rows if r["corpus"] == corpus]
        summary[corpus] = {"n": len(sel), **{f"{m}_{k}": round(float(f([r[f'{m}_{k}'] for r in sel])), 4)
                                             for m in experts for k, f in (("wer", np.mean), ("s", np.median))}}
    out = {"cpu": cpu_model(), "summary": summary, "rows": rows, "note": "mean WER, median decode seconds"}
    Path("results").mkdir(exist_ok=True)
    Path("results/asr_wer.json").write_text(json.dumps(out, indent=1))
    print(out["cpu"])
    print(json.dumps(summary, indent=1))
    return out


def records_wer(records: Path) -> dict:
    """WER of the transcripts an agent eval already made (``eval media speech`` records.jsonl, RAVDESS rows):
    the ASR mode the run used, through the agent, with no second decode."""
    rows = []
    for line in records.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("corpus") != "ravdess":
            continue
        ref = RAVDESS_SENTENCES[Path(rec["key"]).name.split("-")[4]]
        rows.append({"clip": rec["key"], "wer": wer(ref, rec.get("transcript") or ""), "wall_s": rec.get("wall_s")})
    out = {"records": str(records), "n": len(rows), "mean_wer": round(float(np.mean([r["wer"] for r in rows])), 4)
           if rows else None, "rows": rows}
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}))
    return out


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--records":
        result = records_wer(Path(sys.argv[2]))
        if len(sys.argv) > 3:
            Path(sys.argv[3]).write_text(json.dumps(result, indent=1))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
