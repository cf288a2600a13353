"""Latency of the ask agent through ``EmotionAgent.ask`` with streaming on (the callback the SSE route uses):
time to the first streamed event, to the first answer token, and to the full answer, p50/p95.

``python -m emotion_agent.benchmarks.bench_ask --run runs/meld-dev-80 [--n 10] [--model auto]`` asks ``n``
computable questions of that run (the eval's generator, round-robin over templates) after one warm-up ask (the
model load, reported apart), prints the figures and writes ``results/ask_latency.json`` with the CPU model, the
threads and the load average. Run it on an otherwise idle machine for quiet figures."""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from emotion_agent.evals.ask_questions import run_questions
from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.evals.records import read_records
from emotion_agent.evals.run_ask import cpu_name, matches
from emotion_agent.tools.settings import Settings


def _pct(xs: list[float], q: float) -> float | None:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2) if xs else None


def timed_ask(agent: Any, question: str, run: Path) -> dict[str, Any]:
    """One ask with streaming on: seconds to the first event, first tool name, first token and the answer."""
    start = time.perf_counter()
    marks: dict[str, float] = {}

    def on_event(kind: str, data: dict) -> None:
        now = round(time.perf_counter() - start, 3)
        marks.setdefault("first_event_s", now)
        marks.setdefault(f"first_{kind}_s", now)

    ans = agent.ask(question, run=run, on_event=on_event)
    return {"question": question, "answer": ans.text, "grounded": ans.grounded,
            "tool_calls": [c["name"] for c in ans.tool_calls], "wall_s": round(time.perf_counter() - start, 3),
            **marks, "usage": ans.usage}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="A run folder with records.jsonl")
    p.add_argument("--n", type=int, default=10, help="Questions timed after the warm-up ask")
    p.add_argument("--model", default=None, help="ask_llm (default: the setting, 'auto' = the 1.5B)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "ask_latency.json")
    a = p.parse_args(argv)
    from emotion_agent.agent.runtime import EmotionAgent
    settings = Settings.from_env()
    settings = settings.replace(ask_llm=a.model) if a.model else settings
    agent = EmotionAgent(settings, memory=False, experts={})
    qs = [q for q in run_questions(read_records(a.run / "records.jsonl"), a.run.name, random.Random(7))
          if q.kind == "computable"]
    by_template: dict[str, list[Any]] = {}
    for q in qs:
        by_template.setdefault(q.template, []).append(q)
    picked = [t.pop(0) for _ in range(a.n) for t in by_template.values() if t][:a.n]
    load_before = os.getloadavg()
    warm = timed_ask(agent, "How many turns does this run have?", a.run)
    rows = []
    for q in picked:
        row = timed_ask(agent, q.text, a.run)
        row["correct"] = bool(row["grounded"] and q.expect is not None and matches(row["answer"], q.expect))
        rows.append(row)
        print(f"{row['wall_s']:6.1f}s first event {row.get('first_event_s')}s token {row.get('first_token_s')}s "
              f"{q.text[:50]!r} -> {row['answer'][:70]!r}", flush=True)

    def col(k: str) -> list[float]:
        return [r[k] for r in rows if r.get(k) is not None]
    out = {"model": agent.ask_llm.model if hasattr(agent.ask_llm, "model") else None, "cpu": cpu_name(),
           "threads": settings.ask_threads, "load_avg_before": [round(x, 2) for x in load_before],
           "load_avg_after": [round(x, 2) for x in os.getloadavg()], "n": len(rows),
           "warmup_s": warm["wall_s"], "correct": sum(r["correct"] for r in rows),
           **{f"{k}_p50": _pct(col(k), 0.5) for k in ("first_event_s", "first_token_s", "wall_s")},
           **{f"{k}_p95": _pct(col(k), 0.95) for k in ("first_event_s", "first_token_s", "wall_s")},
           "llm_calls_mean": round(statistics.mean(r["usage"].get("llm_calls", 0) for r in rows), 2) if rows else None,
           "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))
    return out


if __name__ == "__main__":
    main()
