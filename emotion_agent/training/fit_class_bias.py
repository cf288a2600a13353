"""Per-class log-probability biases on the dialogue model's output, fitted on MELD dev (never on test).

    python -m emotion_agent.training.fit_class_bias --probs <cache>/text-dialogue/probs_ctx3<tag>_online.npz \
        [--objective wf1|wf1+macro] [--score-test]

The probabilities come from ``train_dialogue_model`` (dev rows out-of-fold with ``--dev-folds``). A bias
vector ``b`` moves the label choice to ``argmax(p * exp(b))``: it can lift the minority classes (fear, disgust,
sadness) that the class-weighted loss still under-predicts. Fitted by coordinate ascent on a grid.

Whether it helps is judged honestly on dev by nested cross-validation: dev's dialogues are cut into folds, each
fold's rows get the bias fitted on the other folds, and the pooled rows are scored beside the unbiased ones.
Writes ``results/text_dialogue_bias_<tag>_<objective>.json``. (On the 12-model ctx3 ensembles the nested-CV rows
were below the unbiased ones (online and offline), so no bias ships: see docs/text_dialogue.md.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.training.train_dialogue_model import report_row

GRID = np.round(np.arange(-1.5, 1.51, 0.1), 2)


def score(probs: np.ndarray, gold: np.ndarray, bias: np.ndarray, objective: str) -> float:
    """The objective of the biased labels: W-F1, or the mean of W-F1 and macro-F1."""
    row = report_row("", "", gold, probs * np.exp(bias))
    return row["weighted_f1"] if objective == "wf1" else (row["weighted_f1"] + row["macro_f1"]) / 2


def fit_bias(probs: np.ndarray, gold: np.ndarray, objective: str, rounds: int = 3) -> np.ndarray:
    """Coordinate ascent over the grid, class by class; a change must raise the objective (ties keep 0)."""
    bias = np.zeros(probs.shape[1])
    best = score(probs, gold, bias, objective)
    for _ in range(rounds):
        moved = False
        for c in range(probs.shape[1]):
            for v in GRID:
                trial = bias.copy()
                trial[c] = v
                s = score(probs, gold, trial, objective)
                if s > best + 1e-9 or (abs(s - best) <= 1e-9 and abs(v) < abs(bias[c])):
                    moved = moved or v != bias[c]
                    best, bias = s, trial
        if not moved:
            break
    return bias


def nested_cv(probs: np.ndarray, gold: np.ndarray, dialogue: np.ndarray, objective: str, folds: int = 5
              ) -> np.ndarray:
    """Biased probabilities of every dev row, each fold's bias fitted on the other folds (dialogue-disjoint)."""
    dias = np.unique(dialogue)
    fold_of = dict(zip(dias, np.random.default_rng(0).permutation(len(dias)) % folds))
    fold = np.array([fold_of[d] for d in dialogue])
    out = probs.copy()
    for k in range(folds):
        held = fold == k
        bias = fit_bias(probs[~held], gold[~held], objective)
        out[held] = probs[held] * np.exp(bias)
    return out


def main() -> None:
    """Fit, judge by nested CV on dev, optionally report test once."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probs", type=Path, required=True, help="An npz written by train_dialogue_model.")
    ap.add_argument("--objective", default="wf1", choices=("wf1", "wf1+macro"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--score-test", action="store_true")
    args = ap.parse_args()
    z = np.load(args.probs)
    p, y, dia = z["dev_probs"], z["dev_gold"], z["dev_dialogue"]
    bias = fit_bias(p, y, args.objective)
    result = {"probs": args.probs.name, "objective": args.objective, "bias": [round(float(b), 2) for b in bias],
              "rows": {"dev": [report_row("no bias", "", y, p),
                               report_row(f"bias, nested {args.folds}-fold CV on dev", "", y,
                                          nested_cv(p, y, dia, args.objective, args.folds)),
                               report_row("bias fitted on all of dev (in-sample, optimistic)", "", y,
                                          p * np.exp(bias))]}}
    if args.score_test and "test_probs" in z:
        result["rows"]["test"] = [report_row("no bias", "", z["test_gold"], z["test_probs"]),
                                  report_row("bias fitted on dev", "", z["test_gold"], z["test_probs"] * np.exp(bias))]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    tag = args.probs.stem.removeprefix("probs_")
    out = RESULTS_DIR / f"text_dialogue_bias_{tag}_{args.objective.replace('+', '_')}.json"
    out.write_text(json.dumps(result, indent=2))
    print("bias", result["bias"])
    for split, rows in result["rows"].items():
        for r in rows:
            print(split, json.dumps(r))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
