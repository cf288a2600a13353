"""Ablations of a MELD run: each row (fusion policy, context off, LLM adjudication, one modality alone) is its
own resumable run under ``<run>/ablations/``; the table goes to ``ablations.json`` and the run's summary."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emotion_agent.evals.meld_config import RunConfig
from emotion_agent.evals.metrics import classification_report
from emotion_agent.evals.records import read_records
from emotion_agent.evals.run_meld import run
from emotion_agent.tools.settings import Settings


def ablation_variants(cfg: RunConfig, learned_available: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, description, overrides) for each row of the ablation table."""
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("text_only", "text expert alone (text_only fusion)", {"fusion": "text_only"}),
        ("weighted", "weighted late fusion", {"fusion": "weighted"}),
    ]
    if learned_available:
        rows.append(("learned", "learned late fusion (text + conversation context)", {"fusion": "learned"}))
    from emotion_agent.agent.fusion import LEARNED_NOCTX_WEIGHTS

    if LEARNED_NOCTX_WEIGHTS.is_file():
        rows.append(("learned_noctx", "learned fusion trained without conversation features",
                     {"fusion": "learned_noctx"}))
    if cfg.context != 0:
        rows.append((f"{cfg.fusion}_context0", f"{cfg.fusion} fusion, memory context off at inference (K=0)",
                     {"context": 0}))
    rows.append(("llm_adjudication", f"{cfg.fusion} fusion + LLM picks between the fused top-2 labels when their "
                 f"margin < {cfg.adjudicate_margin:g}", {"adjudicate": True, "adjudicate_margin": cfg.adjudicate_margin}))
    for m in ("audio", "vision"):
        if m in cfg.modalities:
            rows.append((f"{m}_only", f"{m} experts alone (utterances with media only)",
                         {"modalities": [m], "fusion": "weighted"}))
    return rows


def run_ablations(split: str, *, out: Path, limit: int | None, context: int, modalities: list[str],
                  fusion: str, seed: int = 13, settings: Settings | None = None, adjudicate_margin: float | None = None,
                  progress: bool = True, cache_path: Path | None = None, workers: int = 1) -> list[dict[str, Any]]:
    """Every ablation row as its own resumable run under ``out/ablations/``; returns the table rows."""
    from emotion_agent.agent.fusion import load_learned

    settings = settings or Settings.from_env()
    base = RunConfig(split=split, limit=limit, modalities=sorted(modalities), context=context, fusion=fusion,
                     seed=seed, adjudicate_margin=adjudicate_margin or settings.adjudicate_margin)
    rows = []
    for name, desc, over in ablation_variants(base, load_learned() is not None):
        kw = {"limit": limit, "context": context, "modalities": modalities, "fusion": fusion, "seed": seed,
              "adjudicate": False, **over}
        s = run(split, out=out / "ablations" / name, explain=False, settings=settings, progress=progress,
                cache_path=cache_path, workers=workers, **kw)
        m = s["metrics"]
        rows.append({"name": name, "description": desc, "n": m["n"], "weighted_f1": m["weighted_f1"],
                     "weighted_f1_ci95": m.get("weighted_f1_ci95"), "macro_f1": m["macro_f1"],
                     "accuracy": m["accuracy"], "ece": m.get("ece"), "fusion": kw["fusion"], "context": kw["context"],
                     "wall_p50_ms": s["latency_ms"].get("wall", {}).get("p50"),
                     **({"adjudication": s["adjudication"]} if s.get("adjudication") else {})})
    if rows:
        gold_n = rows[0]["n"]
        recs = read_records(out / "ablations" / rows[0]["name"] / "records.jsonl")
        g = [r["gold"] for r in recs]
        b = classification_report(g, ["neutral"] * len(g))
        rows.append({"name": "always_neutral", "description": "always-neutral baseline", "n": gold_n,
                     "weighted_f1": b["weighted_f1"], "weighted_f1_ci95": b.get("weighted_f1_ci95"),
                     "macro_f1": b["macro_f1"], "accuracy": b["accuracy"], "ece": None, "fusion": "-",
                     "context": "-", "wall_p50_ms": None})
    (out / "ablations.json").write_text(json.dumps(rows, indent=2))
    summary_path = out / "summary.json"
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        s["ablations"] = rows
        tmp = out / "summary.json.tmp"
        tmp.write_text(json.dumps(s, indent=2))
        os.replace(tmp, summary_path)
    return rows
