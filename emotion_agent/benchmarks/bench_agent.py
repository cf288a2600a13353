"""Benchmark the agent end to end on real MELD dev turns: per-stage latency p50/p95 and peak RSS.

    python -m emotion_agent.benchmarks.bench_agent [--n 50] [--llm qwen2.5-coder-0.5b --llm smollm2-135m]

Each LLM runs in its own process (so peak RSS is its own): MELD dev dialogues are replayed turn
by turn with memory on, first label-only (no LLM call), then with explanations. Figures are
printed and written to ``results/bench_agent.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emotion_agent.evals.paths import RESULTS_DIR

DEFAULT_OUT = RESULTS_DIR / "bench_agent.json"


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values`` (nearest sorted value); 0.0 when empty."""
    if not values:
        return 0.0
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], 1)


def worker(llm: str, n: int, explain_n: int) -> dict:
    """Replay MELD dev turns with ``llm`` in this process; stage latencies, load time and RSS."""
    from emotion_agent.tools.settings import Settings
    from emotion_agent.agent.inputs import make_turn
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.evals.meld import load_split

    with tempfile.TemporaryDirectory() as mem:
        settings = Settings.from_env(llm=llm, memory_dir=Path(mem))
        t0 = time.perf_counter()
        agent = EmotionAgent(settings)
        agent.warmup(llm=True)
        load_s = time.perf_counter() - t0
        utts = load_split("dev", settings.data_dir)
        out: dict = {"llm": llm, "load_s": round(load_s, 2)}
        for mode, count, explain in (("label_only", n, False), ("with_explanation", explain_n, True)):
            stages: dict[str, list[float]] = {}
            for u in utts[:count]:
                turn = make_turn(text=u.text, conversation_id=f"bench-{mode}-{u.dialogue_id}", speaker=u.speaker)
                r = agent.analyze(turn, explain=explain)
                for k, v in r.timings_ms.items():
                    key = "experts" if k.startswith("expert_") else ("plan" if k.startswith("plan_") else k)
                    stages.setdefault(key, []).append(v)
            out[mode] = {"n": count, **{k: {"p50": pct(v, 0.5), "p95": pct(v, 0.95), "mean": round(statistics.mean(v), 1)}
                                        for k, v in stages.items()}}
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return out


def main(argv: list[str] | None = None) -> None:
    """Benchmark each LLM in its own worker process; print and write the results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="turns for the label-only pass (>= 50 for p95)")
    ap.add_argument("--explain-n", type=int, default=50, help="turns for the with-explanation pass")
    ap.add_argument("--llm", action="append", help="LLM(s) to compare (default: 0.5b and smollm2)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.explain_n)))
        return
    results = []
    for llm in args.llm or ["qwen2.5-coder-0.5b", "smollm2-135m"]:
        proc = subprocess.run([sys.executable, "-m", "emotion_agent.benchmarks.bench_agent", "--worker", llm, "--n", str(args.n),
                               "--explain-n", str(args.explain_n)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"benchmark worker for {llm} failed")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        for mode in ("label_only", "with_explanation"):
            m = res[mode]
            stages = ", ".join(f"{k} {v['p50']}/{v['p95']}" for k, v in m.items() if isinstance(v, dict))
            print(f"{llm} {mode} (n={m['n']}) p50/p95 ms: {stages}")
        print(f"{llm}: peak RSS {res['peak_rss_mb']} MB, load {res['load_s']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "when": time.strftime("%Y-%m-%d %H:%M")}, indent=2))
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
