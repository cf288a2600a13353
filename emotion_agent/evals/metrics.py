"""Classification metrics over MELD's 7 labels (and the derived 3-class sentiment)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from emotion_agent.tools.evidence import LABELS, SENTIMENT


def weighted_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Support-weighted F1 over MELD's labels (0-1)."""
    return float(f1_score(gold, pred, labels=list(LABELS), average="weighted", zero_division=0))


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE over ``bins`` equal-width confidence bins (0-1)."""
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    if len(conf) == 0:
        return 0.0
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(ok[sel].mean() - conf[sel].mean())
    return float(ece)


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict[str, float]]:
    """Per confidence bin: its range, count, accuracy and mean confidence."""
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        out.append({"lo": float(lo), "hi": float(hi), "n": int(sel.sum()),
                    "accuracy": float(ok[sel].mean()) if sel.any() else 0.0,
                    "confidence": float(conf[sel].mean()) if sel.any() else 0.0})
    return out


def bootstrap_ci(gold: Sequence[str], pred: Sequence[str], n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of weighted-F1 (resampling utterances)."""
    g = np.asarray(gold)
    p = np.asarray(pred)
    if len(g) == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n):
        idx = rng.integers(0, len(g), len(g))
        scores.append(weighted_f1(g[idx], p[idx]))
    lo, hi = np.percentile(scores, [2.5, 97.5])
    return float(lo), float(hi)


def classification_report(gold: Sequence[str], pred: Sequence[str],
                          confidence: Sequence[float] | None = None, bootstrap: int = 1000) -> dict:
    """Everything the harness reports, as plain JSON-able data (F1 scores in percent)."""
    gold = list(gold)
    pred = list(pred)
    labels = list(LABELS)
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    report: dict = {
        "n": len(gold),
        "weighted_f1": 100 * weighted_f1(gold, pred),
        "macro_f1": 100 * float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": 100 * float(accuracy_score(gold, pred)) if gold else 0.0,
        "per_class": {lab: {"precision": 100 * float(p[i]), "recall": 100 * float(r[i]), "f1": 100 * float(f[i]),
                            "support": int(s[i])} for i, lab in enumerate(labels)},
        "confusion": {"labels": labels, "matrix": confusion_matrix(gold, pred, labels=labels).tolist()},
    }
    if bootstrap and gold:
        lo, hi = bootstrap_ci(gold, pred, n=bootstrap)
        report["weighted_f1_ci95"] = [100 * lo, 100 * hi]
    sg = [SENTIMENT[g] for g in gold]
    sp = [SENTIMENT[x] for x in pred]
    report["sentiment"] = {
        "weighted_f1": 100 * float(f1_score(sg, sp, average="weighted", zero_division=0)) if gold else 0.0,
        "accuracy": 100 * float(accuracy_score(sg, sp)) if gold else 0.0,
    }
    neutral = ["neutral"] * len(gold)
    report["always_neutral_weighted_f1"] = 100 * weighted_f1(gold, neutral) if gold else 0.0
    if confidence is not None:
        correct = [a == b for a, b in zip(gold, pred)]
        report["ece"] = 100 * expected_calibration_error(confidence, correct)
        report["reliability"] = reliability(confidence, correct)
    return report
