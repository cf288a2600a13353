"""Per-turn latency through ``EmotionAgent.analyze`` (the path users take), p50/p95, and peak RSS.

    python -m emotion_agent.benchmarks.bench_latency [--n 20] [--out results/bench_latency.json]

Rows: text label only; text + composed explanation (no LLM); text + LLM-rephrased explanation (checked);
a 3–4 s speech clip (label only); a MELD video clip (audio + frames, label only). Each row also gives every
stage's p50 (``attributions`` = the occlusion word weights, ``explain`` = the composer or the LLM). Each row is warmed up
once, then timed ``--n`` times on fresh turns of the same kind (different sentences / clips).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.tools.settings import Settings


def pct(values: list[float]) -> dict[str, float]:
    """p50 / p95 in milliseconds."""
    return {"p50_ms": round(float(np.percentile(values, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(values, 95)) * 1000, 1), "n": len(values)}


def main(argv: list[str] | None = None) -> int:
    """Measure per-turn latency through EmotionAgent.analyze and write the JSON."""
    from emotion_agent.agent.inputs import make_turn
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.evals.meld import load_split

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_latency.json")
    ap.add_argument("--skip-llm", action="store_true")
    args = ap.parse_args(argv)
    settings = Settings.from_env()
    data = settings.require_data_dir()
    texts = [u.text for u in load_split("dev", data) if len(u.text.split()) >= 4][: args.n + 1]
    clips = sorted((data / "speech" / "ravdess").rglob("*.flac"))[: args.n + 1]
    video = data / "meld" / "media" / "train_dia1_utt0.mp4"
    agent = EmotionAgent(settings, memory=False)
    rows: dict[str, Any] = {}

    def bench(name: str, turns: list[Any], **opts: Any) -> None:
        """Time ``turns`` (after one warm-up) and record p50/p95."""
        agent.analyze(turns[0], **opts)  # warm-up
        times, sources, stages = [], [], []
        for t in turns[1:]:
            t0 = time.perf_counter()
            r = agent.analyze(t, **opts)
            times.append(time.perf_counter() - t0)
            sources.append(r.explanation_source)
            stages.append(r.timings_ms)
        rows[name] = pct(times)
        # where the time goes: each stage's p50 (experts run concurrently, so stages need not add up)
        rows[name]["stages_p50_ms"] = {k: round(float(np.median([s.get(k, 0.0) for s in stages])), 2)
                                       for k in stages[0] if k in ("explain", "attributions") or (
                                           k != "total" and np.median([s.get(k, 0.0) for s in stages]) >= 1.0)}
        if opts.get("explain"):  # how many explanations were the LLM's (the others: the composer's, after a refusal)
            rows[name]["llm_prose_kept"] = f"{sources.count('llm')}/{len(sources)}"
        print(name, rows[name], flush=True)

    text_turns = [make_turn(text=t) for t in texts]
    bench("text, label only", text_turns, explain=False)
    agent.explainer.use_llm = False
    bench("text, label + composed explanation", text_turns, explain=True)
    if not args.skip_llm:
        agent.explainer.use_llm = True
        bench("text, label + LLM explanation (checked)", text_turns[: max(2, args.n // 2) + 1], explain=True)
    bench("speech clip 3-4 s, label only", [make_turn(audio=p) for p in clips], explain=False)
    if video.is_file():
        # a fresh turn per request: one turn object repeated would share its decoded audio (TurnInput.derived)
        bench("MELD video clip, label only", [make_turn(video=video) for _ in range(min(args.n, 10) + 1)],
              explain=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"command": "python -m emotion_agent.benchmarks.bench_latency --n %d" % args.n, "rows": rows,
           "peak_rss_mb": round(peak_mb, 1), "text_model": agent.experts["text_emotion"].model_id}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
