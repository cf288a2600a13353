"""How much resident memory the conversation memory (Chroma) itself adds per stored turn.

    python -m emotion_agent.benchmarks.bench_memory_growth [--turns 800]

Stores ``--turns`` turns (each with a full result record, as the service stores them) across 50
conversations, recalling after each, in a private memory folder, and prints the RSS growth every 200
turns; the soak test's residual slope is compared with this. Writes JSON to results/.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from emotion_agent.benchmarks.load_test import rss_mb
from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.tools.evidence import LABELS, EmotionEvidence, FusedResult
from emotion_agent.tools.settings import Settings


def sample_record() -> dict:
    """A result record of the size the service stores (one text evidence with its attributions)."""
    dist = {lab: 1 / len(LABELS) for lab in LABELS}
    ev = EmotionEvidence(id="text-abc123", modality="text", expert="text_emotion", model_id="mpnet", label="joy",
                         confidence=0.6, distribution=dist,
                         extra={"attributions": [{"word": f"w{i}", "weight": 0.01 * i} for i in range(12)]})
    return FusedResult(label="joy", confidence=0.6, distribution=dist, evidence=[ev],
                       explanation="Joy fits this turn best (60% confident).").model_dump(mode="json")


def main(argv: list[str] | None = None) -> int:
    """Store turns, sample RSS, write the JSON."""
    from emotion_agent.agent.memory import ConversationMemory

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=800)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_memory_growth.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emotion-agent-mem-") as tmp:
        memory = ConversationMemory(Settings.from_env(memory_dir=Path(tmp)))
        record = sample_record()
        memory.remember(conversation_id="warm", turn_index=0, speaker="a", text="hello there", label="joy",
                        confidence=0.5, record=record)
        memory.recall("warm", "hello")
        base = rss_mb(os.getpid()) or 0.0
        growth = []
        for i in range(1, args.turns + 1):
            memory.remember(conversation_id=f"c{i % 50}", turn_index=i, speaker="a", label="joy", confidence=0.5,
                            text=f"this is turn number {i} of the soak", record=record)
            memory.recall(f"c{i % 50}", f"turn {i}")
            if i % 200 == 0:
                growth.append({"turns": i, "rss_growth_mb": round((rss_mb(os.getpid()) or 0.0) - base, 1)})
                print(growth[-1], flush=True)
    out = {"command": "python -m emotion_agent.benchmarks.bench_memory_growth --turns %d" % args.turns,
           "rss_after_warmup_mb": round(base, 1), "growth": growth}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
