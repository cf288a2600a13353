"""Train the learned late fusion on MELD train, tune on dev, score on test.

    python -m emotion_agent.training.train_fusion [--out tools/weights/fusion_learned.npz] [--folds 5]

Inputs of the fusion (see :func:`agent.fusion.fusion_features`): the text expert's distribution for
the utterance and the *predicted* distributions of the previous K utterances of the dialogue
(recency-weighted), the number of previous turns, whether the text label repeats the previous
turn's, and (feature set v2) whether the speaker changed, the same speaker's latest turn in the
window and the position in the dialogue. Gold labels of earlier turns are never used.

Train-set text predictions would be optimistic (the text head was fitted on train), so they are
**cross-fitted**: the text head is refitted with its chosen hyper-parameters (C, alpha, temperature
from ``results/text_expert.json``) on 4/5 of the train dialogues and predicts the held-out
fifth (dialogue-grouped folds). Dev and test use the shipped text head, exactly as the agent does.
The fusion is multinomial logistic regression with class weights (n/n_c)^alpha; (K, C, alpha) are
chosen by dev weighted-F1. Test is only scored.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from emotion_agent.evals.paths import RESULTS_DIR, SOURCE_DIR
from emotion_agent.tools.settings import Settings
from emotion_agent.agent.fusion import FEATURE_VERSION, LEARNED_WEIGHTS, LearnedFusionModel, fusion_features
from emotion_agent.evals.meld import Utterance, dialogues, load_split
from emotion_agent.evals.metrics import classification_report, weighted_f1
from emotion_agent.training.train_text_expert import class_weights, embed_split, featurize
from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.text_emotion import DEFAULT_WEIGHTS, TextClassifier
from emotion_agent.tools.softmax import softmax


def text_hparams() -> dict:
    """The text head's chosen hyper-parameters from ``text_expert.json`` (defaults if absent)."""
    path = RESULTS_DIR / "text_expert.json"
    if path.is_file():
        return json.loads(path.read_text())["chosen"]
    return {"C": 0.2, "alpha": 0.25, "temperature": 1.0}


def crossfit_text(feats: np.ndarray, y: np.ndarray, groups: np.ndarray, hp: dict, folds: int) -> np.ndarray:
    """Out-of-fold text-expert distributions on train (dialogue-grouped folds)."""
    out = np.zeros((len(y), len(LABELS)))
    for tr, te in tqdm(list(GroupKFold(n_splits=folds).split(feats, y, groups)), desc="cross-fitting text head"):
        sc = StandardScaler().fit(feats[tr])
        clf = LogisticRegression(C=hp["C"], max_iter=300)
        clf.fit(sc.transform(feats[tr]), y[tr], sample_weight=class_weights(y[tr], hp["alpha"]))
        out[te] = softmax(clf.decision_function(sc.transform(feats[te])), hp.get("temperature", 1.0))
    return out


def fusion_matrix(utts: list[Utterance], proba: np.ndarray, k: int, version: int = FEATURE_VERSION) -> np.ndarray:
    """One feature row per utterance, built turn by turn exactly as the agent sees the dialogue."""
    index = {u.key: i for i, u in enumerate(utts)}
    rows = np.zeros((len(utts), len(fusion_features(np.full(7, 1 / 7), [], max(k, 1), version=version))))
    for turns in dialogues(utts).values():
        for j, u in enumerate(turns):
            window = turns[max(0, j - k):j] if k else []
            rows[index[u.key]] = fusion_features(proba[index[u.key]], [proba[index[t.key]] for t in window], k,
                                                 prev_speakers=[t.speaker for t in window], speaker=u.speaker,
                                                 position=u.position, version=version)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Train the learned fusion, write its weights and the dev/test report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=LEARNED_WEIGHTS)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--ks", default="1,2,3", help="context sizes to try (0 = no conversation features)")
    ap.add_argument("--feature-version", type=int, default=FEATURE_VERSION, choices=(1, 2),
                    help="1: predicted distributions of previous turns only; 2: + speaker change, the same "
                         "speaker's last turn, dialogue position")
    ap.add_argument("--report", type=Path, default=RESULTS_DIR / "meld_fusion.json")
    args = ap.parse_args(argv)
    t0 = time.time()
    settings = Settings.from_env()
    head = TextClassifier(Path(settings.text_weights or DEFAULT_WEIGHTS))
    hp = text_hparams()
    splits = {s: load_split(s, settings.data_dir) for s in ("train", "dev", "test")}
    y = {s: np.array([LABELS.index(u.emotion) for u in splits[s]]) for s in splits}
    feats = {s: featurize(splits[s], embed_split(splits[s], settings, s), head.context_k) for s in splits}
    groups = np.array([u.dialogue_id for u in splits["train"]])
    # Out-of-fold predictions are cached per (text weights, hyper-parameters, folds): reruns are quick.
    import hashlib

    tag = hashlib.sha256((Path(settings.text_weights or DEFAULT_WEIGHTS).read_bytes()
                          + json.dumps(hp, sort_keys=True).encode() + str(args.folds).encode())).hexdigest()[:12]
    oof_path = settings.cache_dir / "features" / f"text_oof_train_{tag}.npy"
    if oof_path.is_file():
        proba = {"train": np.load(oof_path)}
    else:
        proba = {"train": crossfit_text(feats["train"], y["train"], groups, hp, args.folds)}
        oof_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(oof_path, proba["train"])
    for s in ("dev", "test"):
        proba[s] = head.predict_proba(feats[s])
    text_only = {s: 100 * weighted_f1([LABELS[i] for i in y[s]], [LABELS[i] for i in proba[s].argmax(1)])
                 for s in proba}
    print("text expert alone W-F1: " + ", ".join(f"{s} {v:.1f}" for s, v in text_only.items())
          + " (train is cross-fitted)")

    best: dict = {"wf1": -1.0}
    grid = [(k, c, a) for k in [int(x) for x in args.ks.split(",")] for c in (0.01, 0.1, 1.0) for a in (0.0, 0.25, 0.5, 0.75)]
    mats: dict[tuple[str, int], np.ndarray] = {}
    for k, c, a in tqdm(grid, desc="grid (K, C, alpha) on dev"):
        for s in ("train", "dev"):
            if (s, k) not in mats:
                mats[(s, k)] = fusion_matrix(splits[s], proba[s], k, args.feature_version)
        sc = StandardScaler().fit(mats[("train", k)])
        clf = LogisticRegression(C=c, max_iter=1000)
        clf.fit(sc.transform(mats[("train", k)]), y["train"], sample_weight=class_weights(y["train"], a))
        pred = clf.predict(sc.transform(mats[("dev", k)]))
        wf1 = 100 * weighted_f1([LABELS[i] for i in y["dev"]], [LABELS[i] for i in pred])
        if wf1 > best["wf1"]:
            best = {"wf1": wf1, "k": k, "C": c, "alpha": a, "clf": clf, "scaler": sc}
    k, clf, sc = best["k"], best["clf"], best["scaler"]
    # Temperature on dev (NLL): class weighting skews the probabilities; this fixes calibration, not labels.
    from emotion_agent.training.train_text_expert import fit_temperature

    temperature = fit_temperature(clf.decision_function(sc.transform(mats[("dev", k)])), y["dev"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, mean=sc.mean_, scale=sc.scale_, coef=clf.coef_, intercept=clf.intercept_,
        temperature=np.float64(temperature),
        context_k=np.int64(k), labels=np.array(LABELS), kind=np.array("logreg"),
        feature_version=np.int64(args.feature_version),
        trained_on=np.array(f"MELD train ({args.folds}-fold cross-fitted text predictions)"),
        dev_weighted_f1=np.array(f"{best['wf1']:.1f}"),
    )
    model = LearnedFusionModel(args.out)  # score through the inference class the agent uses
    results: dict = {"chosen": {"context_k": k, "C": best["C"], "alpha": best["alpha"], "temperature": temperature,
                                "feature_version": args.feature_version},
                     "text_expert_hparams": hp, "text_only_weighted_f1": text_only, "fit": "train (cross-fitted)",
                     "tuned_on": "dev", "weights": str(args.out.relative_to(SOURCE_DIR.parent))
                     if args.out.is_relative_to(SOURCE_DIR.parent) else str(args.out)}
    for s in ("dev", "test"):
        p = model.predict_proba(fusion_matrix(splits[s], proba[s], k, args.feature_version))
        gold = [u.emotion for u in splits[s]]
        rep = classification_report(gold, [LABELS[i] for i in p.argmax(1)], confidence=p.max(1).tolist())
        results[s] = {key: rep[key] for key in ("n", "weighted_f1", "weighted_f1_ci95", "macro_f1", "accuracy", "ece")}
        print(f"learned fusion {s}: W-F1 {rep['weighted_f1']:.1f} (95% CI {rep['weighted_f1_ci95'][0]:.1f}-"
              f"{rep['weighted_f1_ci95'][1]:.1f}), macro-F1 {rep['macro_f1']:.1f}, acc {rep['accuracy']:.1f}, "
              f"ECE {rep['ece']:.1f}  [text alone {text_only[s]:.1f}]")
    results["seconds"] = round(time.time() - t0, 1)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(results, indent=2))
    print(f"chosen K={k} C={best['C']} alpha={best['alpha']} T={temperature:.2f}; weights → {args.out}; report → {args.report}")


if __name__ == "__main__":
    main()
