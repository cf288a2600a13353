"""Live text-turn latency of the text modes side by side: ``utterance`` (the expert alone, the previous default)
against ``online`` (the expert plus the dialogue model, the new default), through ``make_turn`` and
``EmotionAgent.analyze`` with conversation memory on — the path a chatbot's turn takes.

    python -m emotion_agent.benchmarks.bench_text_modes [--dialogues 6] [--out results/bench_text_modes.json]

The turns are MELD dev dialogues' utterances in order (other dialogues per row), each dialogue a conversation (its own id per mode, in
a throw-away memory folder). The modes alternate turn by turn, so both see the same machine load. Each mode is
warmed up on one dialogue first. Rows: label only (``explain`` off) and the default turn (composed explanation
with word attributions). Writes p50/p95 per mode, the online/utterance ratio of the p50s, and the CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from emotion_agent.benchmarks.asr_wer import cpu_model
from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.tools.settings import Settings

MODES = ("utterance", "online")


def summary(values: list[float]) -> dict[str, float]:
    """p50 / p95 / mean in milliseconds."""
    return {"p50_ms": round(float(np.percentile(values, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(values, 95)) * 1000, 1),
            "mean_ms": round(float(np.mean(values)) * 1000, 1), "n": len(values)}


def main(argv: list[str] | None = None) -> int:
    """Time live text turns in each mode (alternating) and write the JSON."""
    from emotion_agent.agent.inputs import make_turn
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.evals.meld import dialogues, load_split

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dialogues", type=int, default=6, help="Timed dialogues (after one warm-up dialogue).")
    ap.add_argument("--min-turns", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_text_modes.json")
    args = ap.parse_args(argv)
    base = Settings.from_env()
    dias = [d for _, d in sorted(dialogues(load_split("dev", base.require_data_dir())).items())
            if len(d) >= args.min_turns][: 2 * (args.dialogues + 1)]
    # each row its own dialogues: the online mode's feature memo must not carry one row's turns into the other
    sets = {"label": dias[: args.dialogues + 1], "explained": dias[args.dialogues + 1:]}
    with tempfile.TemporaryDirectory(prefix="bench-text-modes-") as tmp:
        agents = {m: EmotionAgent(base.replace(text_mode=m, memory_dir=Path(tmp) / m)) for m in MODES}
        times: dict[str, dict[str, list[float]]] = {row: {m: [] for m in MODES} for row in ("label", "explained")}
        modes_seen: dict[str, set[str]] = {m: set() for m in MODES}
        for row, explain in (("label", False), ("explained", True)):
            for k, dia in enumerate(sets[row]):
                for u in dia:
                    for m in MODES:
                        t0 = time.perf_counter()
                        turn = make_turn(text=u.text, speaker=u.speaker, settings=agents[m].settings,
                                         conversation_id=f"{row}-{m}-dia{u.dialogue_id}")
                        result = agents[m].analyze(turn, explain=explain)
                        if k > 0:  # dialogue 0 warms up
                            times[row][m].append(time.perf_counter() - t0)
                        modes_seen[m].add(str(result.text_mode))
    rows: dict[str, Any] = {}
    for row, by_mode in times.items():
        stats = {m: summary(v) for m, v in by_mode.items()}
        rows[row] = {**stats, "online_over_utterance_p50": round(stats["online"]["p50_ms"] /
                                                                  stats["utterance"]["p50_ms"], 3)}
    out = {"rows": rows, "turns_per_mode": len(times["label"]["online"]), "dialogues": args.dialogues,
           "text_modes_reported": {m: sorted(v) for m, v in modes_seen.items()},
           "cpu": cpu_model(), "cores": __import__("os").cpu_count(),
           "note": "shared machine: other jobs ran at the same time; the modes alternate turn by turn",
           "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
