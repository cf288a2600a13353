"""Scorers of a MELD run: explanation checks, metrics with bootstrap CIs, the adjudication curve."""

from __future__ import annotations

from typing import Any

import numpy as np

from emotion_agent.agent.explain import ID_IN_TEXT, asserted_labels, mentions_label
from emotion_agent.evals.metrics import classification_report
from emotion_agent.tools.evidence import LABELS


# ---- explanation checks ----------------------------------------------------------------------
def explanation_checks(result: dict[str, Any]) -> dict[str, Any] | None:
    """The two checks on one stored result (``None`` when it has no explanation).

    *Agreement* (documented rule): the explanation names the emitted label (the label word or one of
    its forms in :data:`LABEL_WORDS`, whole word, case-insensitive) AND asserts no other label as the
    answer (no ``labeled/classified as Y``, ``the emotion/label/answer is Y`` with Y another label).
    Mentioning other labels as evidence ("the text expert gave surprise 0.2") is allowed.
    *Citations valid*: every id in ``cited_evidence_ids`` and every ``[id]`` written in the prose is
    the id of an evidence item of this record; ``cites_any`` says whether at least one id was cited.
    """
    text = result.get("explanation")
    if not text:
        return None
    label = result["label"]
    low = text.lower()
    mentioned = mentions_label(low, label)
    others = asserted_labels(text) - {label}
    ids = {e["id"] for e in result.get("evidence", [])}
    listed = list(result.get("cited_evidence_ids") or [])
    prose = ID_IN_TEXT.findall(text)
    invalid = sorted({c for c in listed + prose if c not in ids})
    return {"agrees": bool(mentioned and not others), "label_mentioned": mentioned,
            "other_labels_asserted": sorted(others), "citations_valid": not invalid, "invalid_ids": invalid,
            "list_citations_valid": all(c in ids for c in listed), "prose_citations_valid": all(c in ids for c in prose),
            "cites_any": bool(listed or prose), "source": result.get("explanation_source")}


def fast_bootstrap_ci(gold: list[str], pred: list[str], n: int = 1000, seed: int = 0) -> list[float]:
    """95 % bootstrap interval of weighted-F1 in percent — same resampling as
    :func:`evals.metrics.bootstrap_ci` (same seed, same indices), vectorised with confusion counts."""
    if not gold or n <= 0:
        return [0.0, 0.0]
    idx = labels_index()
    g = np.array([idx[x] for x in gold])
    p = np.array([idx[x] for x in pred])
    k = len(LABELS)
    rng = np.random.default_rng(seed)
    scores = np.empty(n)
    for b in range(n):
        sel = rng.integers(0, len(g), len(g))
        cm = np.bincount(g[sel] * k + p[sel], minlength=k * k).reshape(k, k)
        tp = np.diag(cm).astype(float)
        support = cm.sum(1)
        predicted = cm.sum(0)
        denom = support + predicted
        f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
        scores[b] = (f1 * support).sum() / max(support.sum(), 1)
    lo, hi = np.percentile(scores, [2.5, 97.5])
    return [100 * float(lo), 100 * float(hi)]


def report_with_ci(gold: list[str], pred: list[str], confidence: list[float] | None = None,
                   bootstrap: int = 1000) -> dict[str, Any]:
    """Classification report with the weighted-F1 95 % CI from :func:`fast_bootstrap_ci`."""
    rep = classification_report(gold, pred, confidence=confidence, bootstrap=0)
    if bootstrap and gold:
        rep["weighted_f1_ci95"] = fast_bootstrap_ci(gold, pred, bootstrap)
    return rep


#: Margins at which a run's adjudication is re-scored from its records (the LLM's pick does not depend on it).
ADJUDICATION_THRESHOLDS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def adjudication_summary(records: list[dict[str, Any]], bootstrap: int = 0) -> dict[str, Any] | None:
    """How adjudication went in a run, and what smaller margins would have scored.

    Every record adjudicated at the run's margin M stores the fused label, the margin and the LLM's pick;
    for any t <= M the label "the pick where margin < t, else the fused label" is exactly what a run at
    margin t would emit, so one run gives the whole curve (W-F1 vs t, t = 0 is fusion alone).
    """
    adj = [r["result"].get("adjudication") for r in records]
    if not any(adj):
        return None
    run_margin = max(a["threshold"] for a in adj if a)
    gold = [r["gold"] for r in records]
    fused = [a["fused_label"] if a else r["label"] for a, r in zip(adj, records)]
    asked = [a for a in adj if a and a["status"] != "not_needed"]
    curve = []
    for t in (0.0, *sorted({t for t in ADJUDICATION_THRESHOLDS if t < run_margin} | {run_margin})):
        def within(a: dict[str, Any], t: float = t) -> bool:  # at the run's own margin: exactly the turns it asked about
            """Whether a run at margin ``t`` would have asked the LLM about ``a``."""
            return a["status"] != "not_needed" if t == run_margin else a["margin"] < t

        pred = [a["chosen"] if a and a["status"] == "applied" and within(a) else f for a, f in zip(adj, fused)]
        rep = report_with_ci(gold, pred, bootstrap=bootstrap)
        curve.append({"margin": t, "adjudicated": sum(1 for a in asked if within(a)),
                      "changed": sum(1 for p, f in zip(pred, fused) if p != f),
                      "weighted_f1": rep["weighted_f1"], "macro_f1": rep["macro_f1"], "accuracy": rep["accuracy"]})
    changed = [(a, r) for a, r in zip(adj, records) if a and a["changed"]]
    return {"margin": run_margin, "asked": len(asked),
            "applied": sum(a["status"] == "applied" for a in asked),
            "failed": sum(a["status"] == "failed" for a in asked),
            "changed": len(changed),
            "changed_to_correct": sum(r["label"] == r["gold"] for _, r in changed),
            "changed_from_correct": sum(a["fused_label"] == r["gold"] for a, r in changed),
            "picked_first_candidate": sum(a["status"] == "applied" and a["chosen"] == a["candidates"][0]
                                          for a in asked),
            "llm_ms_p50": percentile([a["latency_ms"] for a in asked], 50), "curve": curve}


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def labels_index() -> dict[str, int]:
    """Each MELD label's index in :data:`LABELS`."""
    return {lab: i for i, lab in enumerate(LABELS)}
