"""Train the speech-emotion head (``tools/weights/speech_head.npz``) on ../shared/data/speech.

Features per clip (computed by the same code the expert runs, :func:`tools.speech_emotion.clip_features`):
mean / std-pooled Whisper encoder states of the clip's own frames (selected layers, pooled over the
speech-active frames) + prosody (:mod:`tools.prosody`). Data: RAVDESS actors 1–20 + EmoDB, only rows with a
MELD emotion. Evaluation is speaker-independent: 5 folds, each holding out 4 RAVDESS actors and 2 EmoDB
speakers. Results → ``results/speech_head.json``; then the final head is trained on everything.

    python -m emotion_agent.training.train_speech_head                 # extract (cached), evaluate, write the head
    python -m emotion_agent.training.train_speech_head --model whisper-tiny.en --no-save   # compare encoders
"""

from __future__ import annotations

import os

# one BLAS/OpenMP thread: on the shared 2-core machine lbfgs ran ~4x faster than with 2 spinning threads
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.tools.resources import WEIGHTS_DIR
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.softmax import softmax

RESULTS = RESULTS_DIR


def load_rows(data_dir: Path) -> list[dict]:
    """Rows of ``speech/labels.csv`` whose emotion is a MELD label."""
    rows = []
    with (data_dir / "speech" / "labels.csv").open(encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["emotion"] in LABELS:
                rows.append(r)
    return rows


def extract(rows: list[dict], data_dir: Path, model: str, settings: Settings) -> dict[str, np.ndarray]:
    """All-layer pooled encoder features + prosody for every row, cached in <cache>/speech_feats_<model>.npz."""
    from emotion_agent.tools.media import decode
    from emotion_agent.tools.prosody import prosody
    from emotion_agent.tools.speech_emotion import clip_encoder_pools
    from emotion_agent.tools.whisper_encoder import shared_whisper

    cache = settings.cache_dir / f"speech_feats_{model}.npz"
    paths = [r["path"] for r in rows]
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if list(data["paths"]) == paths:
            return {k: data[k] for k in data.files}
    sw = shared_whisper(model, settings, need_decoder=False)
    enc, pros = [], []
    t0 = time.time()
    for i, r in enumerate(rows):
        audio = decode(data_dir / "speech" / r["path"], want_frames=False).audio
        p = prosody(audio)
        enc.append(clip_encoder_pools(sw, audio, p))
        pros.append(p.features)
        if i % 100 == 0:
            print(f"  {i}/{len(rows)} clips, {time.time() - t0:.0f} s", flush=True)
    out = {"paths": np.array(paths), "enc": np.stack(enc).astype(np.float32), "prosody": np.stack(pros)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def folds(rows: list[dict], k: int = 5) -> list[np.ndarray]:
    """Fold id per row: RAVDESS actors and EmoDB speakers are spread over k folds (speaker-disjoint)."""
    fold = np.zeros(len(rows), dtype=int)
    for corpus in ("ravdess", "emodb"):
        speakers = sorted({r["speaker"] for r in rows if r["corpus"] == corpus})
        assign = {s: i % k for i, s in enumerate(speakers)}
        for j, r in enumerate(rows):
            if r["corpus"] == corpus:
                fold[j] = assign[r["speaker"]]
    return fold


def build(data: dict[str, np.ndarray], layers: list[int], n_layers: int, pools: tuple[str, ...],
          with_prosody: bool = True) -> np.ndarray:
    """Feature matrix: the selected encoder pools of ``layers`` (+ prosody)."""
    from emotion_agent.tools.speech_emotion import select_pools

    x = select_pools(data["enc"], layers, n_layers, pools)
    if with_prosody:
        x = np.concatenate([x, data["prosody"]], axis=1)
    return x


def fit_lr(x: np.ndarray, y: np.ndarray, c: float):
    """Standardise ``x`` and fit a class-balanced logistic regression; (scaler, classifier)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=c, max_iter=1000, class_weight="balanced")
    clf.fit(scaler.transform(x), y)
    return scaler, clf


def evaluate(x, y, fold, corpus, c):
    """Per-corpus accuracy, macro-F1 and confusion over the folds, and out-of-fold probabilities."""
    from sklearn.metrics import confusion_matrix, f1_score

    pred = np.zeros_like(y)
    proba = np.zeros((len(y), len(LABELS)))
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        scaler, clf = fit_lr(x[tr], y[tr], c)
        p = np.zeros((te.sum(), len(LABELS)))
        p[:, clf.classes_] = clf.predict_proba(scaler.transform(x[te]))
        proba[te] = p
        pred[te] = p.argmax(1)
    res = {}
    for name, m in (("ravdess", corpus == "ravdess"), ("emodb", corpus == "emodb"), ("all", np.ones_like(y, bool))):
        labels_present = sorted(set(y[m]))
        res[name] = {
            "n": int(m.sum()),
            "accuracy": round(float((pred[m] == y[m]).mean()), 4),
            "macro_f1": round(float(f1_score(y[m], pred[m], average="macro", labels=labels_present)), 4),
            "confusion": confusion_matrix(y[m], pred[m], labels=list(range(len(LABELS)))).tolist(),
        }
    return res, proba


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The softmax temperature that minimises the negative log-likelihood of out-of-fold probabilities
    (Guo et al. 2017): calibration on held-out speakers, never on the clips a head was trained on."""
    from scipy.optimize import minimize_scalar

    def nll(t: float) -> float:
        return float(-np.log(np.clip(scaled(proba, t)[np.arange(len(y)), y], 1e-300, 1.0)).mean())

    return float(minimize_scalar(nll, bounds=(0.25, 10.0), method="bounded").x)


def scaled(proba: np.ndarray, t: float) -> np.ndarray:
    """Probabilities re-softmaxed at temperature ``t``."""
    return softmax(np.log(np.clip(proba, 1e-12, 1.0)), t)


#: Variants compared on 2026-11-25 (Whisper-base, same folds; RAVDESS / EmoDB held-out accuracy).
VARIANTS_MEASURED = [
    {"layers": [5], "pools": ["mean_all"], "prosody": False, "C": 0.05, "ravdess_acc": 0.690, "emodb_acc": 0.714},
    {"layers": [3, 5], "pools": ["mean_active"], "prosody": True, "C": 0.01, "ravdess_acc": 0.743, "emodb_acc": 0.819},
    {"layers": [3, 5], "pools": ["mean_active", "std_active"], "prosody": True, "C": 0.01, "ravdess_acc": 0.734,
     "emodb_acc": 0.811},
    {"layers": [2, 3, 4, 5], "pools": ["mean_active"], "prosody": True, "C": 0.01, "ravdess_acc": 0.768,
     "emodb_acc": 0.868},
    {"layers": [2, 3, 4, 5], "pools": ["mean_active"], "prosody": True, "C": 0.003, "ravdess_acc": 0.761,
     "emodb_acc": 0.859},
    {"layers": [0, 1, 2, 3, 4, 5], "pools": ["mean_active"], "prosody": True, "C": 0.01, "ravdess_acc": 0.778,
     "emodb_acc": 0.879},
    {"layers": [1, 2, 3, 4, 5], "pools": ["mean_active"], "prosody": True, "C": 0.01, "ravdess_acc": 0.780,
     "emodb_acc": 0.888},
    {"layers": [1, 2, 3, 4, 5], "pools": ["mean_active"], "prosody": True, "C": 0.02, "ravdess_acc": 0.783,
     "emodb_acc": 0.886},
    {"layers": [1, 2, 3, 4, 5], "pools": ["mean_active"], "prosody": True, "C": 0.05, "ravdess_acc": 0.773,
     "emodb_acc": 0.886},
    {"layers": [1, 2, 3, 4, 5], "pools": ["mean_active", "mean_all"], "prosody": True, "C": 0.01,
     "ravdess_acc": 0.781, "emodb_acc": 0.890},
]

MELD_GOLD = {  # from the MELD CSVs (see benchmarks/bench_audio.py for how the probably_test clips were matched)
    "train_dia1_utt0.wav": "surprise", "train_dia1038_utt17.wav": "joy", "probably_test_dia0_utt0.wav": "surprise",
    "probably_test_dia100_utt1.wav": "neutral", "probably_test_dia100_utt5.wav": "sadness",
    "probably_test_dia101_utt0.wav": "joy",
}


def meld_clip_predictions(settings: Settings) -> list[dict]:
    """What the freshly written head says on the real MELD clips (TV dialogue, not acted lab speech)."""
    from emotion_agent.tools.base import TurnInput
    from emotion_agent.tools.speech_emotion import SpeechEmotionExpert, _HEADS

    _HEADS.clear()
    expert = SpeechEmotionExpert(settings.__class__.from_env(speech_model="whisper-head"))
    rows = []
    for name, gold in MELD_GOLD.items():
        ev = expert.analyze(TurnInput(audio_path=settings.data_dir / "meld" / "media" / name))
        top3 = sorted(ev.distribution.items(), key=lambda kv: -kv[1])[:3]
        rows.append({"clip": name, "gold": gold, "predicted": ev.label, "confidence": round(ev.confidence, 3),
                     "top3": [[k, round(v, 3)] for k, v in top3], "warnings": ev.warnings})
    return rows


def save_head(path: Path, x: np.ndarray, y: np.ndarray, c: float, model: str, layers: list[int],
              pools: tuple[str, ...], n_layers: int, trained_on: str, cv_accuracy: float | None,
              temperature: float = 1.0) -> None:
    """Fit the logistic head on (x, y) and write it in the .npz format the speech expert loads."""
    scaler, clf = fit_lr(x, y, c)
    coef = np.zeros((len(LABELS), x.shape[1]), dtype=np.float32)
    icpt = np.full(len(LABELS), -30.0, dtype=np.float32)
    coef[clf.classes_] = clf.coef_
    icpt[clf.classes_] = clf.intercept_
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"cv_ravdess_accuracy": np.array(cv_accuracy)} if cv_accuracy is not None else {}
    np.savez_compressed(
        path, mean=scaler.mean_.astype(np.float32), scale=scaler.scale_.astype(np.float32), coef=coef,
        intercept=icpt, labels=np.array(LABELS), encoder=np.array(model), layers=np.array(layers, dtype=np.int32),
        pools=np.array(pools), n_layers=np.array(n_layers), prosody=np.array(True), trained_on=np.array(trained_on),
        temperature=np.array(temperature, dtype=np.float32), **extra)


def write_fold_heads(folder: Path, rows: list[dict], x: np.ndarray, y: np.ndarray, fold: np.ndarray, c: float,
                     model: str, layers: list[int], pools: tuple[str, ...], n_layers: int,
                     temperature: float = 1.0) -> None:
    """``fold<k>.npz`` trained without fold k's speakers, and ``folds.json`` mapping each speaker to its fold."""
    speakers: dict[str, int] = {}
    for r, f in zip(rows, fold):
        speakers[f"{r['corpus']}:{r['speaker']}"] = int(f)
    for f in sorted(set(int(v) for v in fold)):
        held = sorted(s for s, k in speakers.items() if k == f)
        save_head(folder / f"fold{f}.npz", x[fold != f], y[fold != f], c, model, layers, pools, n_layers,
                  f"RAVDESS + EmoDB without {', '.join(held)}", None, temperature)
    (folder / "folds.json").write_text(json.dumps(speakers, indent=1))
    print(f"wrote {len(set(fold))} fold heads to {folder}")


def main(argv: list[str] | None = None) -> None:
    """Extract features, evaluate on speaker-disjoint folds, write the head and its results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--layers", default="1,2,3,4,5", help="comma-separated encoder layers (0 = first block)")
    ap.add_argument("--pools", default="mean_active")
    ap.add_argument("--C", type=float, default=0.02, help="inverse L2 strength (0: pick among 0.005-0.05 by CV)")
    ap.add_argument("--search", action="store_true", help="compare layer/pool variants (slow)")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--fold-heads", type=Path, default=None,
                    help="Write one head per speaker-disjoint fold (trained without that fold's speakers) into this "
                         "folder, for the leave-speakers-out agent eval (emotion-agent eval speech), then stop.")
    ap.add_argument("--oof", type=Path, default=None,
                    help="Also write every clip's out-of-fold (held-out speaker), temperature-scaled voice "
                         "distribution to this JSON, for learning the fusion (training/train_modality_weights.py).")
    args = ap.parse_args(argv)

    settings = Settings.from_env()
    rows = load_rows(settings.data_dir)
    y = np.array([LABELS.index(r["emotion"]) for r in rows])
    corpus = np.array([r["corpus"] for r in rows])
    fold = folds(rows)
    print(f"{len(rows)} clips ({(corpus == 'ravdess').sum()} RAVDESS, {(corpus == 'emodb').sum()} EmoDB)")
    data = extract(rows, settings.data_dir, args.model, settings)
    n_layers = int(data["enc"].shape[1])
    layers = [int(v) for v in args.layers.split(",")] if args.layers else [n_layers // 2, n_layers - 1]
    pools = tuple(args.pools.split(","))

    search = []
    if args.search:
        variants = [
            ([n_layers - 1], ("mean_all",), False),
            ([n_layers - 1], ("mean_all",), True),
            ([n_layers // 2, n_layers - 1], ("mean_all",), True),
            ([n_layers // 2, n_layers - 1], ("mean_active",), True),
            ([n_layers // 2, n_layers - 1], ("mean_active", "std_active"), True),
            (list(range(1, n_layers)), ("mean_active", "std_active"), True),
        ]
        for lay, po, pr in variants:
            for c in (0.01, 0.05):
                x = build(data, lay, n_layers, po, pr)
                res, _ = evaluate(x, y, fold, corpus, c)
                line = {"layers": lay, "pools": po, "prosody": pr, "C": c,
                        "ravdess_acc": res["ravdess"]["accuracy"], "ravdess_f1": res["ravdess"]["macro_f1"],
                        "emodb_acc": res["emodb"]["accuracy"]}
                print(line, flush=True)
                search.append(line)
    x = build(data, layers, n_layers, pools)
    best_c, best = args.C, None
    oof = np.zeros((len(y), len(LABELS)))
    for c in ([args.C] if args.C else [0.005, 0.01, 0.02, 0.05]):
        res, proba = evaluate(x, y, fold, corpus, c)
        print(f"C={c}: RAVDESS acc {res['ravdess']['accuracy']:.3f} F1 {res['ravdess']['macro_f1']:.3f}; "
              f"EmoDB acc {res['emodb']['accuracy']:.3f}", flush=True)
        if best is None or res["ravdess"]["accuracy"] > best["ravdess"]["accuracy"]:
            best_c, best, oof = c, res, proba
    temperature = fit_temperature(oof, y)
    print(f"temperature {temperature:.3f} (fitted on out-of-fold probabilities)")
    if args.oof:
        args.oof.parent.mkdir(parents=True, exist_ok=True)
        cal = scaled(oof, temperature)
        args.oof.write_text(json.dumps({
            "temperature": temperature, "model": args.model, "C": best_c,
            "clips": [{"path": r["path"], "corpus": r["corpus"], "speaker": f"{r['corpus']}:{r['speaker']}",
                       "fold": int(f), "gold": r["emotion"],
                       "distribution": {lab: round(float(v), 5) for lab, v in zip(LABELS, pr)}}
                      for r, f, pr in zip(rows, fold, cal)]}))
        print(f"wrote out-of-fold voice distributions of {len(rows)} clips to {args.oof}")
    out = {
        "model": args.model, "temperature": round(temperature, 4), "layers": layers, "pools": list(pools), "prosody": True, "C": best_c,
        "protocol": "5 folds, speaker-disjoint (4 RAVDESS actors + 2 EmoDB speakers held out per fold); "
                    "trained on RAVDESS+EmoDB of the other folds; RAVDESS 'calm' counted as neutral",
        "labels": list(LABELS), "results": best, "search": search or VARIANTS_MEASURED,
    }
    if args.fold_heads:
        write_fold_heads(args.fold_heads, rows, x, y, fold, best_c, args.model, layers, pools, n_layers, temperature)
        return
    if not args.no_save:
        head = WEIGHTS_DIR / "speech_head.npz"
        save_head(head, x, y, best_c, args.model, layers, pools, n_layers,
                  f"RAVDESS actors 1-20 + EmoDB, {len(rows)} clips", best["ravdess"]["accuracy"], temperature)
        print(f"wrote {head} ({head.stat().st_size / 1e3:.0f} kB)")
    if not args.no_save:
        out["meld_clips"] = meld_clip_predictions(settings)
        for r in out["meld_clips"]:
            print(f"  MELD {r['clip']}: gold {r['gold']}, predicted {r['predicted']} ({r['confidence']:.2f})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "speech_head.json" if not args.no_save else f"speech_head_{args.model}.json"
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: best[k]["accuracy"] for k in best}))


if __name__ == "__main__":
    main()
