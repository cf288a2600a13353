"""Classification metrics over MELD's 7 labels (and the derived 3-class sentiment)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from emotion_agent.tools.evidence import LABELS, SENTIMENT


def weighted_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Support-weighted F1 over MELD's labels (0-1)."""
    return float(f1_score(gold, pred, labels=list(LABELS), average="weighted", zero_division=0))


def label_codes(values: Sequence[str]) -> np.ndarray:
    """Each label's index in :data:`LABELS` (anything else: ``len(LABELS)``, counted as wrong everywhere)."""
    index = {lab: i for i, lab in enumerate(LABELS)}
    return np.array([index.get(v, len(LABELS)) for v in values], dtype=np.int64)


def weighted_f1_from_codes(gold: np.ndarray, pred: np.ndarray, axis: int = -1) -> np.ndarray:
    """Support-weighted F1 (0-1) of label codes along ``axis``, from confusion counts: one value per
    row of a batch of resamples — the same number as :func:`weighted_f1` on the labels."""
    g = np.moveaxis(np.asarray(gold), axis, -1)
    p = np.moveaxis(np.asarray(pred), axis, -1)
    lead, n = g.shape[:-1], g.shape[-1]
    g, p = g.reshape(-1, n), p.reshape(-1, n)
    k = len(LABELS) + 1  # the last code: a prediction outside LABELS
    rows = np.arange(len(g))[:, None]
    cm = np.bincount(((rows * k + g) * k + p).ravel(), minlength=len(g) * k * k).reshape(len(g), k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2)[:, :-1].astype(float)
    support = cm.sum(2)[:, :-1]
    denom = support + cm.sum(1)[:, :-1]
    f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    return ((f1 * support).sum(1) / np.maximum(support.sum(1), 1)).reshape(lead)


def bootstrap_ci(gold: Sequence[str], pred: Sequence[str], n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval (0-1) of weighted-F1: :func:`scipy.stats.bootstrap`, percentile method, resampling
    (gold, pred) pairs — utterances — ``n`` times with a fixed ``seed``, vectorised over confusion counts."""
    if len(gold) == 0 or n <= 0:
        return (0.0, 0.0)
    g, p = label_codes(gold), label_codes(pred)
    if len(g) < 2:  # one utterance: every resample is the same
        point = float(weighted_f1_from_codes(g, p))
        return (point, point)
    res = stats.bootstrap((g, p), weighted_f1_from_codes, paired=True, vectorized=True, n_resamples=n,
                          batch=250, method="percentile", confidence_level=0.95, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict[str, float]]:
    """Reliability curve from :func:`sklearn.calibration.calibration_curve` (``bins`` equal-width bins, each
    ``(lo, hi]``, the first also holding 0): per bin its range, count, accuracy and mean confidence."""
    conf = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    ok = np.asarray(correct, dtype=int)
    edges = np.linspace(0, 1, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=bins)  # calibration_curve's own binning
    accuracy, mean_conf = np.zeros(bins), np.zeros(bins)
    if len(conf):
        accuracy[counts > 0], mean_conf[counts > 0] = calibration_curve(ok, conf, n_bins=bins, strategy="uniform")
    return [{"lo": float(lo), "hi": float(hi), "n": int(c), "accuracy": float(a), "confidence": float(m)}
            for lo, hi, c, a, m in zip(edges[:-1], edges[1:], counts, accuracy, mean_conf)]


def expected_calibration_error(curve: list[dict[str, float]]) -> float:
    """ECE (0-1) of a :func:`reliability` curve: the count-weighted gap between accuracy and mean confidence."""
    total = sum(b["n"] for b in curve)
    return float(sum(b["n"] / total * abs(b["accuracy"] - b["confidence"]) for b in curve)) if total else 0.0


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
        curve = reliability(confidence, correct)
        report["ece"] = 100 * expected_calibration_error(curve)
        report["reliability"] = curve
    return report
