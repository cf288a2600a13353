"""One-request latency of voice turns through ``EmotionAgent.analyze`` (no explanation), fast vs accurate ASR.

Clips: a seeded sample of 3-4 s RAVDESS clips and the MELD video ``meld/media/train_dia1_utt0.mp4``. Each
request builds its turn with ``make_turn`` (the input checks a user's request goes through) and runs
``EmotionAgent.analyze(turn, explain=False)``; the per-stage timings come from the result's ``timings_ms``.
Every request reads a fresh copy of its clip, so no decode is served from an earlier request's cache.
Both ASR modes run in one process, interleaved clip by clip (the same clips, the same machine load).

``python -m emotion_agent.benchmarks.bench_voice_latency [N_AUDIO] [N_VIDEO]`` prints the figures and writes
``results/bench_voice_latency.json`` (with the CPU model and the peak RSS). ``--before-after`` runs it twice in
fresh processes, CTranslate2's OpenMP threads spinning (the old default) and passive (:mod:`tools.openmp`), and
prints both side by side.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from emotion_agent.agent.inputs import make_turn
from emotion_agent.agent.runtime import EmotionAgent
from emotion_agent.benchmarks.asr_wer import cpu_model
from emotion_agent.tools import openmp
from emotion_agent.tools.settings import Settings

MODES = ("fast", "accurate")
VIDEO = "meld/media/train_dia1_utt0.mp4"


def short_ravdess(data: Path, n: int, low: float = 3.0, high: float = 4.0) -> list[Path]:
    """A seeded sample of ``n`` RAVDESS clips lasting ``low``-``high`` seconds."""
    files = sorted((data / "speech" / "ravdess").glob("*.flac"))
    random.Random(0).shuffle(files)
    picked = []
    for p in files:
        if low <= sf.info(str(p)).duration <= high:
            picked.append(p)
            if len(picked) == n:
                break
    return picked


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 / p95 / mean (ms) of ``values``."""
    a = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "mean": round(float(a.mean()), 1), "n": int(a.size)}


def one_request(agent: EmotionAgent, clip: Path, kind: str, scratch: Path) -> dict[str, float]:
    """Time one request on a fresh copy of ``clip``: make_turn, then the agent's own stage timings."""
    fresh = scratch / f"{time.perf_counter_ns()}{clip.suffix}"
    shutil.copy(clip, fresh)
    start = time.perf_counter()
    turn = make_turn(**{kind: str(fresh)}, settings=agent.settings)
    built = time.perf_counter()
    result = agent.analyze(turn, explain=False)
    done = time.perf_counter()
    fresh.unlink()
    stages = {k: float(v) for k, v in result.timings_ms.items()}
    stages["make_turn"] = (built - start) * 1000.0
    stages["request"] = (done - start) * 1000.0
    stages["_label"] = result.label  # type: ignore[assignment]
    return stages


def main(n_audio: int = 8, n_video: int = 5, out_path: str = "results/bench_voice_latency.json") -> dict:
    settings = Settings.from_env()
    data = settings.data_dir
    audio = short_ravdess(data, n_audio)
    video = data / VIDEO
    agents = {m: EmotionAgent(settings.model_copy(update={"asr_mode": m}), memory=False) for m in MODES}
    runs: dict[str, dict[str, list[dict]]] = {m: {"audio": [], "video": []} for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for m in MODES:  # warm-up (model loading), not counted
            one_request(agents[m], audio[0], "audio", scratch)
            one_request(agents[m], video, "video", scratch)
        work = [(p, "audio") for p in audio] + [(video, "video")] * (n_video if video.is_file() else 0)
        for clip, kind in work:
            for m in MODES:
                runs[m][kind].append({"clip": clip.name, **one_request(agents[m], clip, kind, scratch)})
    summary: dict[str, dict] = {}
    for m in MODES:
        for kind, rows in runs[m].items():
            if not rows:
                continue
            stages = sorted({k for r in rows for k in r if k not in ("clip", "_label")})
            summary[f"{m}/{kind}"] = {s: percentiles([r[s] for r in rows if s in r]) for s in stages}
    out = {
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine_note": "shared machine (other jobs running): "
        "figures are upper bounds", "asr_model": settings.asr_model,
        "n_audio_clips": len(audio), "n_video_requests": len(runs[MODES[0]]["video"]),
        "audio_clips": [p.name for p in audio], "video": VIDEO,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ct2_openmp_wait_policy": openmp.loaded_policy, "load_avg_at_end": os.getloadavg(),
        "summary_ms": summary, "runs": runs,
    }
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(out, indent=1))
    print(out["cpu"], f"({out['cpu_count']} CPUs, shared)", f"peak RSS {out['peak_rss_mb']} MB")
    for key, stages in summary.items():
        main_stages = {s: stages[s]["p50"] for s in ("request", "total", "make_turn", "expert_transcribe",
                                                     "expert_speech_emotion", "expert_face_emotion") if s in stages}
        print(f"{key:16s} request p50 {stages['request']['p50']:.0f} ms p95 {stages['request']['p95']:.0f} ms "
              f"(n={stages['request']['n']}); p50 by stage: {main_stages}")
    return out


def before_after(n_audio: int, n_video: int) -> dict:
    """The benchmark twice, each in a fresh process: CTranslate2's OpenMP threads spinning (before, the old
    default) then passive (after, :mod:`tools.openmp`); one JSON with both, printed side by side."""
    import subprocess

    both = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flag in (("before_spinning", "0"), ("after_passive", "1")):
            child = Path(tmp) / f"{name}.json"
            subprocess.run([sys.executable, "-m", "emotion_agent.benchmarks.bench_voice_latency", str(n_audio),
                            str(n_video), "--out", str(child)], check=True,
                           env={**os.environ, "EMOTION_AGENT_CT2_PASSIVE": flag})
            both[name] = json.loads(child.read_text())
    Path("results").mkdir(exist_ok=True)
    Path("results/bench_voice_latency.json").write_text(json.dumps(both, indent=1))
    print(f"{'mode/turn':16s} {'stage (p50 ms)':22s} {'before':>8s} {'after':>8s}")
    for key in both["after_passive"]["summary_ms"]:
        for stage in ("request", "expert_transcribe", "expert_speech_emotion", "expert_facial_emotion",
                      "expert_text_emotion"):
            b, a = (both[n]["summary_ms"].get(key, {}).get(stage, {}).get("p50") for n in both)
            if a is not None:
                print(f"{key:16s} {stage:22s} {b:8.0f} {a:8.0f}")
    return both


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--before-after" in args:
        args.remove("--before-after")
        before_after(*(int(a) for a in args[:2]))
    elif "--out" in args:
        i = args.index("--out")
        main(*(int(a) for a in args[:i][:2]), out_path=args[i + 1])
    else:
        main(*(int(a) for a in args[:2]))
