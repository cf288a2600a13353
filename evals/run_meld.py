"""Run the agent over MELD utterances and score it. The same graph the user runs — no second pipeline."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agent.config import Settings
from agent.inputs import make_turn
from evals.meld import Utterance, load_split, previous_turns
from evals.metrics import classification_report
from tools.base import PriorTurn


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


def run(split: str, *, limit: int | None, out: Path | None, explain: bool, context: int,
        settings: Settings | None = None, agent: Any = None) -> dict[str, Any]:
    from agent.runtime import EmotionAgent

    settings = settings or Settings.from_env()
    utts = load_split(split, settings.data_dir)
    prev = previous_turns(utts, context)
    sample = stratified_sample(utts, limit)
    agent = agent or EmotionAgent(settings, memory=False)
    gold, pred, conf, latencies = [], [], [], []
    records = []
    start = time.time()
    for u in tqdm(sample, desc=f"MELD {split}", unit="utt"):
        ctx = [PriorTurn(speaker=p.speaker, text=p.text) for p in prev[u.key]]
        turn = make_turn(text=u.text, speaker=u.speaker, context=ctx, max_chars=settings.max_text_chars)
        result = agent.analyze(turn, explain=explain, remember=False, use_memory=False)
        gold.append(u.emotion)
        pred.append(result.label)
        conf.append(result.confidence)
        latencies.append(result.timings_ms.get("total", 0.0))
        records.append({"key": u.key, "dialogue_id": u.dialogue_id, "utterance_id": u.utterance_id,
                        "gold": u.emotion, "result": result.model_dump(mode="json")})
    summary = {"split": split, "n": len(sample), "seconds": round(time.time() - start, 1), "explain": explain,
               "context": context, "metrics": classification_report(gold, pred, confidence=conf),
               "latency_ms_p50": sorted(latencies)[len(latencies) // 2] if latencies else None}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with (out / "records.jsonl").open("w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
