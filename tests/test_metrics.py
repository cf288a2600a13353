"""Metrics of the harness: the scipy bootstrap CI of weighted-F1 and the sklearn reliability curve."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_agent.evals.metrics import (bootstrap_ci, classification_report, expected_calibration_error,
                                         label_codes, reliability, weighted_f1, weighted_f1_from_codes)
from emotion_agent.tools.evidence import LABELS

GOLD = ["neutral", "neutral", "joy", "joy", "anger", "sadness"]
PRED = ["neutral", "joy", "joy", "joy", "neutral", "sadness"]
# By hand: neutral F1 = 2·1/(2+2) = 0.5 (support 2), joy 2·2/(2+3) = 0.8 (2), anger 0 (1), sadness 1 (1)
# → weighted F1 = (2·0.5 + 2·0.8 + 0 + 1·1) / 6 = 0.6.
HAND_WF1 = 0.6


def test_weighted_f1_from_confusion_counts_matches_hand_and_sklearn():
    assert weighted_f1_from_codes(label_codes(GOLD), label_codes(PRED)) == pytest.approx(HAND_WF1)
    assert weighted_f1(GOLD, PRED) == pytest.approx(HAND_WF1)
    # a batch of resamples (rows), and a prediction outside LABELS (counted as wrong, like sklearn's labels=)
    rng = np.random.default_rng(3)
    g = rng.choice(LABELS, size=(5, 40))
    p = np.where(rng.random((5, 40)) < 0.6, g, rng.choice([*LABELS, "other"], size=(5, 40)))
    got = weighted_f1_from_codes(np.stack([label_codes(r) for r in g]), np.stack([label_codes(r) for r in p]))
    assert got == pytest.approx([weighted_f1(list(a), list(b)) for a, b in zip(g, p)])


def test_bootstrap_ci_contains_the_point_estimate_and_is_deterministic():
    gold, pred = GOLD * 20, PRED * 20  # 120 utterances, weighted F1 still 0.6
    lo, hi = bootstrap_ci(gold, pred, n=1000, seed=0)
    assert 0.0 <= lo < HAND_WF1 < hi <= 1.0
    assert hi - lo < 0.3
    assert bootstrap_ci(gold, pred, n=1000, seed=0) == (lo, hi)
    assert bootstrap_ci(gold, pred, n=1000, seed=1) != (lo, hi)
    rep = classification_report(gold, pred, bootstrap=1000)  # percent, same seed
    assert rep["weighted_f1"] == pytest.approx(100 * HAND_WF1)
    assert rep["weighted_f1_ci95"] == pytest.approx([100 * lo, 100 * hi])


def test_bootstrap_ci_degenerate_inputs():
    assert bootstrap_ci([], []) == (0.0, 0.0)
    assert bootstrap_ci(["joy"], ["joy"]) == (1.0, 1.0)
    assert bootstrap_ci(GOLD, PRED, n=0) == (0.0, 0.0)


def test_reliability_bins_match_hand_binning_and_ece():
    conf = [0.0, 0.05, 0.1, 0.15, 0.55, 0.6, 0.95, 1.0]
    ok = [False, True, False, True, True, False, True, True]
    curve = reliability(conf, ok)
    assert [b["n"] for b in curve] == [3, 1, 0, 0, 0, 2, 0, 0, 0, 2]  # bins are (lo, hi], 0 in the first
    assert curve[0]["accuracy"] == pytest.approx(1 / 3) and curve[0]["confidence"] == pytest.approx(0.05)
    assert curve[5]["accuracy"] == pytest.approx(0.5) and curve[5]["confidence"] == pytest.approx(0.575)
    assert curve[2] == {"lo": 0.2, "hi": pytest.approx(0.3), "n": 0, "accuracy": 0.0, "confidence": 0.0}
    hand = (3 * abs(1 / 3 - 0.05) + 1 * abs(1 - 0.15) + 2 * abs(0.5 - 0.575) + 2 * abs(1 - 0.975)) / 8
    assert expected_calibration_error(curve) == pytest.approx(hand)
    assert expected_calibration_error(reliability([], [])) == 0.0
