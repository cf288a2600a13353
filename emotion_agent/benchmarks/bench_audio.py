"""Benchmark the audio experts on the real clips: ASR WER + real-time factor, per-clip latency, peak RSS.

    python -m emotion_agent.benchmarks.bench_audio                 # everything → results/bench_audio.json
    python -m emotion_agent.benchmarks.bench_audio --quick         # faster-whisper only
    python -m emotion_agent.benchmarks.bench_audio --latency-only  # (used internally, in a fresh process, for latency + RSS)

Clips: the six MELD clips in ../shared/data/meld/media (references from the MELD CSVs; the
``probably_test_*`` clips were checked against test_sent_emo.csv: dia0_utt0 matches utterance 0 exactly, the
other three are longer than their CSV utterance and span the following utterance(s) of the same speaker,
so their reference joins those utterances) and 8 RAVDESS clips (two fixed sentences, several actors and
emotions). 2 EmoDB clips (German) are transcribed too, to check language detection, but are not in the WER.
Timings depend on the machine's load, which is recorded (``loadavg``): the project machine has 2 cores
shared with other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from emotion_agent.evals.paths import RESULTS_DIR, SOURCE_DIR
from emotion_agent.tools.settings import Settings

RESULTS = RESULTS_DIR

MELD_REFS = {
    "train_dia1_utt0.wav": "But then who? The waitress I went out with last month?",
    "train_dia1038_utt17.wav": 'That was a good one. For a second there, I was like, "whoa."',
    "probably_test_dia0_utt0.wav": "Why do all you’re coffee mugs have numbers on the bottom?",
    "probably_test_dia100_utt1.wav": "You guys feel safe. Right?",  # test dia100 utt1 + utt2
    "probably_test_dia100_utt5.wav": "Okay, I’m sorry. I didn’t mean to scare you. I just have to clean that up.",
    "probably_test_dia101_utt0.wav": "Hey! Hey.",  # test dia101 utt0 (Phoebe) + utt1 (Monica)
}
RAVDESS_SENT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
RAVDESS_CLIPS = [
    "03-01-01-01-01-01-01.flac", "03-01-03-02-02-01-02.flac", "03-01-04-01-01-02-05.flac",
    "03-01-05-02-02-02-08.flac", "03-01-06-01-01-01-11.flac", "03-01-07-02-02-01-14.flac",
    "03-01-08-01-01-02-17.flac", "03-01-02-02-02-02-20.flac",
]
EMODB_CLIPS = 2
LATENCY_CLIP = "probably_test_dia100_utt5.wav"  # 4.2 s of TV dialogue


def clips(data_dir: Path) -> list[tuple[Path, str | None, str]]:
    """(path, reference transcript or None, corpus) for the MELD, RAVDESS and EmoDB clips."""
    out: list[tuple[Path, str | None, str]] = []
    for name, ref in MELD_REFS.items():
        out.append((data_dir / "meld" / "media" / name, ref, "meld"))
    for name in RAVDESS_CLIPS:
        out.append((data_dir / "speech" / "ravdess" / name, RAVDESS_SENT[name.split("-")[4]], "ravdess"))
    emodb = sorted((data_dir / "speech" / "emodb").glob("*.flac"))[:EMODB_CLIPS]
    out += [(p, None, "emodb") for p in emodb]
    return out


def bench_asr(backend: str, model: str, settings: Settings, items) -> dict:
    """WER, real-time factor and per-clip results of one ASR backend and model on ``items``."""
    from emotion_agent.tools.media import decode
    from emotion_agent.tools.transcribe import TranscribeExpert, wer, words

    expert = TranscribeExpert(settings, backend=backend, model=model)
    t0 = time.perf_counter()
    expert.warmup()
    expert.transcribe_audio(decode(items[0][0], want_frames=False).audio)  # warm-up run
    load_s = time.perf_counter() - t0
    rows, errs, ref_words, proc, audio_s, cpu = [], 0.0, 0, 0.0, 0.0, 0.0
    for path, ref, corpus in items:
        audio = decode(path, want_frames=False).audio
        t, c = time.perf_counter(), time.process_time()
        res = expert.transcribe_audio(audio)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        hyp = " ".join(s["text"] for s in res["segments"]).strip()
        row = {"clip": path.name, "corpus": corpus, "seconds": round(len(audio) / 16_000, 2),
               "time_s": round(dt, 3), "cpu_s": round(dc, 3), "hypothesis": hyp, "language": res["language"],
               "language_probability": round(res["language_probability"], 3)}
        if ref is not None:
            w = wer(ref, hyp)
            row.update(reference=ref, wer=round(w, 3))
            n = len(words(ref))
            errs += w * n
            ref_words += n
            proc += dt
            cpu += dc
            audio_s += len(audio) / 16_000
        rows.append(row)
        print(f"  {backend}:{model} {path.name}: {dt:.2f} s  {row.get('wer', '-')}  {hyp[:70]}", flush=True)
    by = {}
    for corpus in ("meld", "ravdess"):
        sel = [r for r in rows if r["corpus"] == corpus]
        n = sum(len(words(r["reference"])) for r in sel)
        by[corpus] = round(sum(r["wer"] * len(words(r["reference"])) for r in sel) / max(n, 1), 3)
    return {"backend": backend, "model": model, "load_and_warmup_s": round(load_s, 2),
            "wer": round(errs / max(ref_words, 1), 3), "wer_by_corpus": by,
            "rtf": round(proc / max(audio_s, 1e-9), 3), "cpu_rtf": round(cpu / max(audio_s, 1e-9), 3),
            "loadavg": [round(x, 2) for x in os.getloadavg()], "clips": rows}


def latency(settings: Settings, runs: int = 3) -> dict:
    """transcribe + speech_emotion on a ~4 s clip, default settings, decode cache cleared each run."""
    from emotion_agent.tools import media
    from emotion_agent.tools.base import TurnInput
    from emotion_agent.tools.speech_emotion import SpeechEmotionExpert
    from emotion_agent.tools.transcribe import TranscribeExpert

    clip = settings.data_dir / "meld" / "media" / LATENCY_CLIP
    t0 = time.perf_counter()
    asr, ser = TranscribeExpert(settings), SpeechEmotionExpert(settings)
    asr.warmup()
    ser.warmup()
    load_s = time.perf_counter() - t0
    turn = TurnInput(audio_path=clip)
    asr.analyze(turn), ser.analyze(turn)  # warm caches, JIT paths
    per_run = []
    from emotion_agent.tools.whisper_encoder import _MODELS

    for _ in range(runs):
        media._CACHE.clear()
        for sw in _MODELS.values():  # no encoder-state cache hits: measure the real encoder pass
            sw._cache.clear()
        t, c = time.perf_counter(), time.process_time()
        a = asr.analyze(turn)
        c1 = time.process_time()
        b = ser.analyze(turn)
        per_run.append({"total_s": round(time.perf_counter() - t, 3), "transcribe_s": round(a.latency_ms / 1000, 3),
                        "speech_emotion_s": round(b.latency_ms / 1000, 3),
                        "cpu_s_total": round(time.process_time() - c, 3), "cpu_s_transcribe": round(c1 - c, 3),
                        "cpu_s_speech_emotion": round(time.process_time() - c1, 3)})
    best = min(per_run, key=lambda r: r["total_s"])
    return {
        "clip": clip.name, "clip_seconds": round(media.decode(clip, want_frames=False).duration_s, 2),
        "asr": f"{settings.asr_backend}:{settings.asr_model}", "speech_model": settings.speech_model,
        "model_load_s": round(load_s, 2), "runs": per_run, "best_total_s": best["total_s"],
        "median_total_s": float(np.median([r["total_s"] for r in per_run])),
        "transcript": a.transcript and a.transcript.text, "speech_label": b.label, "speech_confidence": round(b.confidence, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    """Measure latency in a fresh process, benchmark the ASR configs and write the JSON results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="faster-whisper only")
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_audio.json")
    args = ap.parse_args(argv)
    settings = Settings.from_env()
    if args.latency_only:
        print(json.dumps(latency(settings)))
        return
    # latency + RSS in a fresh process with only the default models loaded
    proc = subprocess.run([sys.executable, "-m", "emotion_agent.benchmarks.bench_audio", "--latency-only"], capture_output=True,
                          text=True, cwd=SOURCE_DIR.parent, env=os.environ.copy())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    lat = json.loads(lines[-1]) if lines else {"error": proc.stderr[-2000:]}
    print("latency:", json.dumps({k: v for k, v in lat.items() if k != "runs"}), flush=True)
    items = clips(settings.data_dir)
    configs = [("faster-whisper", "whisper-tiny.en"), ("faster-whisper", "whisper-base")]
    if not args.quick:
        configs += [("whisper", "whisper-tiny.en"), ("whisper", "whisper-base")]
    asr = []
    for backend, model in configs:
        asr.append(bench_asr(backend, model, settings, items))
        r = asr[-1]
        print(f"{backend}:{model}: WER {r['wer']:.3f} (MELD {r['wer_by_corpus']['meld']:.3f}, RAVDESS "
              f"{r['wer_by_corpus']['ravdess']:.3f}), RTF {r['rtf']:.3f} (CPU-s per audio-s {r['cpu_rtf']:.3f})",
              flush=True)
    out = {
        "machine": f"{os.cpu_count()} CPU cores (shared), loadavg at end {[round(x, 2) for x in os.getloadavg()]}",
        "asr": asr, "latency_4s_clip": lat,
        "peak_rss_mb_all_asr_models_loaded": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
