"""Train the text expert's head on MELD train, tune on dev, report dev and test.

    python -m emotion_agent.training.train_text_expert [--out tools/weights/text_emotion.npz]

Features: MiniLM embedding of the utterance, recency-weighted embedding of the previous K
turns of the dialogue, surface features. Model: multinomial logistic regression with
class-imbalance weights (n/n_c)^alpha; (C, alpha, K) chosen by dev weighted-F1; softmax
temperature fitted on dev. MELD test is only scored, never used for a choice.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.tools.settings import Settings
from emotion_agent.evals.meld import Utterance, dialogues, load_split
from emotion_agent.evals.metrics import classification_report, weighted_f1
from emotion_agent.tools.embedding import shared_embedder
from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.text_emotion import DEFAULT_WEIGHTS
from emotion_agent.tools.text_features import build_features, context_vector


def embed_split(utts: list[Utterance], settings: Settings, split: str) -> np.ndarray:
    """MiniLM embeddings of a split's utterances, cached under ``cache_dir/features``."""
    cache = settings.cache_dir / "features" / f"minilm_meld_{split}.npy"
    if cache.is_file():
        arr = np.load(cache)
        if len(arr) == len(utts):
            return arr
    emb = shared_embedder(settings=settings)
    out = np.zeros((len(utts), emb.dim), dtype=np.float32)
    bs = 64
    for i in tqdm(range(0, len(utts), bs), desc=f"embedding MELD {split}", unit="batch"):
        out[i:i + bs] = emb.embed([u.text for u in utts[i:i + bs]])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def featurize(utts: list[Utterance], embs: np.ndarray, k: int) -> np.ndarray:
    """Text-head features per utterance: embedding, previous-``k``-turn context, surface cues."""
    index = {u.key: i for i, u in enumerate(utts)}
    feats = np.zeros((len(utts), embs.shape[1] * 2 + 6), dtype=np.float32)
    for turns in dialogues(utts).values():
        for j, u in enumerate(turns):
            prev = [index[t.key] for t in turns[max(0, j - k):j]] if k else []
            ctx = context_vector(embs[prev] if prev else None, embs.shape[1])
            feats[index[u.key]] = build_features(embs[index[u.key]], ctx, u.text)
    return feats


def class_weights(y: np.ndarray, alpha: float) -> np.ndarray:
    """Per-sample class-imbalance weights ``(n / (K n_c)) ** alpha``."""
    counts = np.bincount(y, minlength=len(LABELS)).astype(float)
    w = (len(y) / (len(LABELS) * np.maximum(counts, 1))) ** alpha
    return w[y]


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The softmax temperature in [0.5, 3] minimising the NLL of ``logits`` on ``y``."""
    best_t, best_nll = 1.0, np.inf
    for t in np.linspace(0.5, 3.0, 26):
        z = logits / t
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        nll = -logp[np.arange(len(y)), y].mean()
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def main(argv: list[str] | None = None) -> None:
    """Grid-search the text head on dev, write its weights and the dev/test report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="where to write the .npz weights")
    ap.add_argument("--report", type=Path, default=RESULTS_DIR / "text_expert.json")
    args = ap.parse_args(argv)
    settings = Settings.from_env()
    t0 = time.time()
    splits = {s: load_split(s, settings.data_dir) for s in ("train", "dev", "test")}
    embs = {s: embed_split(u, settings, s) for s, u in splits.items()}
    y = {s: np.array([LABELS.index(u.emotion) for u in splits[s]]) for s in splits}

    best: dict = {"wf1": -1.0}
    grid = [(k, c, a) for k in (0, 1, 3) for c in (0.05, 0.2, 1.0) for a in (0.0, 0.25, 0.5)]
    feats_cache: dict[tuple[str, int], np.ndarray] = {}
    for k, c, a in tqdm(grid, desc="grid (K, C, alpha) on dev"):
        for s in ("train", "dev"):
            feats_cache.setdefault((s, k), featurize(splits[s], embs[s], k))
        scaler = StandardScaler().fit(feats_cache[("train", k)])
        clf = LogisticRegression(C=c, max_iter=300)
        clf.fit(scaler.transform(feats_cache[("train", k)]), y["train"], sample_weight=class_weights(y["train"], a))
        pred = clf.predict(scaler.transform(feats_cache[("dev", k)]))
        wf1 = weighted_f1([LABELS[i] for i in y["dev"]], [LABELS[i] for i in pred])
        if wf1 > best["wf1"]:
            best = {"wf1": wf1, "k": k, "C": c, "alpha": a, "clf": clf, "scaler": scaler}
    k, clf, scaler = best["k"], best["clf"], best["scaler"]
    dev_logits = clf.decision_function(scaler.transform(feats_cache[("dev", k)]))
    temperature = fit_temperature(dev_logits, y["dev"])

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, mean=scaler.mean_.astype(np.float32), scale=scaler.scale_.astype(np.float32),
        coef=clf.coef_.astype(np.float32), intercept=clf.intercept_.astype(np.float32),
        temperature=np.float32(temperature), context_k=np.int64(k), labels=np.array(LABELS),
        trained_on=np.array("MELD train"), dev_weighted_f1=np.array(f"{100 * best['wf1']:.1f}"),
    )
    # Score through the same inference class the agent uses.
    from emotion_agent.tools.text_emotion import TextClassifier

    head = TextClassifier(args.out)
    results: dict = {"chosen": {"context_k": k, "C": best["C"], "alpha": best["alpha"], "temperature": temperature}}
    for s in ("dev", "test"):
        feats = featurize(splits[s], embs[s], k)
        proba = head.predict_proba(feats)
        pred = [LABELS[i] for i in proba.argmax(1)]
        gold = [u.emotion for u in splits[s]]
        rep = classification_report(gold, pred, confidence=proba.max(1).tolist())
        results[s] = {key: rep[key] for key in ("n", "weighted_f1", "weighted_f1_ci95", "macro_f1", "accuracy",
                                                 "ece", "always_neutral_weighted_f1", "per_class")}
        print(f"{s}: weighted-F1 {rep['weighted_f1']:.1f} (95% CI {rep['weighted_f1_ci95'][0]:.1f}-"
              f"{rep['weighted_f1_ci95'][1]:.1f}), macro-F1 {rep['macro_f1']:.1f}, accuracy {rep['accuracy']:.1f}, "
              f"always-neutral {rep['always_neutral_weighted_f1']:.1f}")
    results["seconds"] = round(time.time() - t0, 1)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(results, indent=2))
    print(f"chosen K={k} C={best['C']} alpha={best['alpha']} T={temperature:.2f}; weights → {args.out}; "
          f"report → {args.report}")


if __name__ == "__main__":
    main()
