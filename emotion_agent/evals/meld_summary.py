"""The summary of a MELD run (``summary.json``): metrics with the bootstrap CI, the always-neutral baseline,
latency, explanation and adjudication scores, and provenance — all rebuilt from ``records.jsonl``."""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from emotion_agent.evals.meld import select
from emotion_agent.evals.meld_config import RunConfig
from emotion_agent.evals.metrics import classification_report
from emotion_agent.evals.provenance import git_commit, package_versions, settings_dict
from emotion_agent.evals.records import read_records
from emotion_agent.evals.scorers import adjudication_summary, explanation_summary, percentile
from emotion_agent.tools.settings import Settings


def summarize_run(out: Path, settings: Settings | None = None, cfg: RunConfig | None = None,
                  agent: Any = None, bootstrap: int = 1000) -> dict[str, Any]:
    """Metrics and provenance from ``records.jsonl`` (so a resumed run scores all of its records)."""
    from emotion_agent.tools.prompts import prompt_hashes

    settings = settings or Settings.from_env()
    config = json.loads((out / "config.json").read_text())
    records = read_records(out / "records.jsonl")
    gold = [r["gold"] for r in records]
    pred = [r["label"] for r in records]
    conf = [float(r["confidence"]) for r in records]
    metrics = classification_report(gold, pred, confidence=conf, bootstrap=bootstrap)
    baseline = classification_report(gold, ["neutral"] * len(gold), bootstrap=bootstrap)
    stages: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for k, v in r["result"].get("timings_ms", {}).items():
            stages[k].append(float(v))
        stages["wall"].append(float(r.get("wall_ms", 0.0)))
    latency = {k: {"p50": percentile(v, 50), "p95": percentile(v, 95), "mean": round(float(np.mean(v)), 2)}
               for k, v in stages.items() if v}
    sessions = []
    if (out / "sessions.jsonl").is_file():
        sessions = [json.loads(x) for x in (out / "sessions.jsonl").read_text().splitlines() if x.strip()]
    model_ids: dict[str, str] = {}
    modalities_available: dict[str, int] = defaultdict(int)
    modalities_used: dict[str, int] = defaultdict(int)
    cache_stats: dict[str, int] = defaultdict(int)
    for r in records:
        for e in r["result"]["evidence"]:
            model_ids[e["expert"]] = e["model_id"]
        for m in r.get("modalities_available", []):
            modalities_available[m] += 1
        for m in r.get("modalities_used", []):
            modalities_used[m] += 1
        for status in r.get("cache", {}).values():
            cache_stats[str(status)] += 1
    identity = config["identity"]
    if identity.get("explain") or identity.get("adjudicate"):
        model_ids["llm"] = settings.llm_url or settings.llm
    if any(r["result"].get("fusion_policy", "").startswith("learned") for r in records):
        from emotion_agent.agent.fusion import LEARNED_WEIGHTS, load_learned

        m = load_learned()
        model_ids["fusion"] = f"{LEARNED_WEIGHTS.name} {m.meta if m else '(missing)'}"
    summary = {
        "run_id": config.get("run_id"), "config": identity, "n": len(records),
        "complete": None,
        "metrics": metrics,
        "always_neutral": {k: baseline[k] for k in ("weighted_f1", "weighted_f1_ci95", "macro_f1", "accuracy")
                           if k in baseline},
        "latency_ms": latency,
        "wall_seconds": {
            "sum_of_sessions": round(sum(s.get("end", s["start"]) - s["start"] for s in sessions), 1),
            "sum_of_turns": round(sum(stages["wall"]) / 1000.0, 1),
            "sessions": len(sessions),
        },
        "explanations": explanation_summary(records),
        "adjudication": adjudication_summary(records),
        "modalities_available": dict(modalities_available), "modalities_used": dict(modalities_used),
        "expert_cache": dict(cache_stats),
        "fusion_policies": sorted({r["result"].get("fusion_policy", "") for r in records}),
        "text_modes": dict(Counter(str(r["result"].get("text_mode")) for r in records)),
        "model_ids": model_ids, "prompt_hashes": prompt_hashes(), "packages": package_versions(),
        "git": git_commit(), "settings": settings_dict(settings),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if cfg is not None:
        _, sample = select(cfg.split, cfg, settings)
        summary["complete"] = len(records) == len(sample)
        summary["expected"] = len(sample)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / "summary.json")
    return summary
