"""Train the dialogue-level text model (online and offline GRUs) on cached MELD features; choose on dev.

    python -m emotion_agent.training.train_dialogue_model [--context 0] [--seeds 13,14,15] [--score-test]

Reads the features cached by ``cache_text_features`` (MELD train to fit, dev to choose the epoch; test only
with ``--score-test``, report only). For each mode (``online``: past turns only; ``offline``: past and future)
and seed, trains a :class:`~emotion_agent.tools.dialogue_model.DialogueGRU`, keeps its best dev epoch, and
reports the seed ensemble (mean of probabilities) beside the expert alone. Writes
``results/text_dialogue.json`` (W-F1, macro-F1 and fear/disgust/sadness F1 for every row, the mode named in
each row, seconds per epoch) and the weights to ``<cache>/text-dialogue/<mode>-ctx<K>.pt``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emotion_agent.evals.metrics import classification_report
from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.tools.dialogue_model import DialogueGRU, pad_dialogues, speaker_cues
from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.softmax import softmax
from emotion_agent.training.cache_text_features import load_features

MINORITY = ("fear", "disgust", "sadness")


def by_dialogue(data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Split a split's flat arrays into dialogues in turn order, with speaker cues computed."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, d in enumerate(data["dialogue"]):
        groups[int(d)].append(i)
    out = []
    for dia in sorted(groups):
        idx = sorted(groups[dia], key=lambda i: int(data["position"][i]))
        logits = data["logits"][idx]
        out.append({"features": data["features"][idx], "logits": logits, "label": data["label"][idx],
                    "cues": speaker_cues([str(s) for s in data["speaker"][idx]], logits), "keys": data["keys"][idx]})
    return out


@torch.no_grad()
def predict(model: DialogueGRU, dias: list[dict[str, np.ndarray]], batch: int = 64) -> np.ndarray:
    """Flat probabilities (in dialogue order) for every utterance."""
    model.eval()
    out = []
    for i in range(0, len(dias), batch):
        part = dias[i:i + batch]
        b = pad_dialogues(part)
        p = torch.softmax(model(b["feats"], b["logits"], b["cues"], b["lengths"]), -1).numpy()
        out.extend(p[j, :len(d["logits"])] for j, d in enumerate(part))
    model.train()
    return np.concatenate(out)


def report_row(name: str, mode: str, gold: np.ndarray, probs: np.ndarray) -> dict:
    """W-F1, macro-F1, accuracy and the minority classes' F1 for one row of the table."""
    rep = classification_report([LABELS[g] for g in gold], [LABELS[p] for p in probs.argmax(1)], bootstrap=0)
    return {"model": name, "mode": mode, "weighted_f1": round(rep["weighted_f1"], 2),
            "macro_f1": round(rep["macro_f1"], 2), "accuracy": round(rep["accuracy"], 2),
            **{f"{c}_f1": round(rep["per_class"][c]["f1"], 2) for c in MINORITY}}


def train_one(mode: str, seed: int, train: list, dev: list, args) -> tuple[DialogueGRU, float, list[float]]:
    """One seeded model; returns it at its best dev W-F1 epoch, that score, and the seconds of each epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = DialogueGRU(feat_dim=train[0]["features"].shape[1], mode=mode, dropout=args.dropout)
    y = np.concatenate([d["label"] for d in train])
    counts = np.bincount(y, minlength=len(LABELS)).astype(float)
    w = torch.tensor((counts.sum() / np.maximum(counts, 1)) ** args.class_weight_power, dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=w / w.mean(), ignore_index=-100)
    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    y_dev = np.concatenate([d["label"] for d in dev])
    best, best_state, times = -1.0, None, []
    for _ in range(args.epochs):
        t0 = time.time()
        order = rng.permutation(len(train))
        for i in range(0, len(order), args.batch):
            b = pad_dialogues([train[k] for k in order[i:i + args.batch]])
            noisy = b["logits"] + args.logit_noise * torch.randn_like(b["logits"])
            out = model(b["feats"], noisy, b["cues"], b["lengths"])
            loss = loss_fn(out.reshape(-1, len(LABELS)), b["label"].reshape(-1))
            optim.zero_grad()
            loss.backward()
            optim.step()
        times.append(time.time() - t0)
        wf1 = report_row("", mode, y_dev, predict(model, dev))["weighted_f1"]
        if wf1 > best:
            best, best_state = wf1, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, best, times


def cross_validate(dias: list[dict[str, np.ndarray]], folds: int, seeds: list[int], args) -> dict:
    """Dialogue-disjoint k-fold on one split: each fold's model trains on the other folds (epoch chosen on a
    tenth of them), and the expert alone and both modes are scored on the pooled out-of-fold predictions.

    A feasibility check while the train features are not cached; it never reads MELD test."""
    rng = np.random.default_rng(0)
    fold_of = rng.permutation(len(dias)) % folds
    gold = np.concatenate([d["label"] for d in dias])
    logits = np.concatenate([d["logits"] for d in dias])
    rows = [report_row(f"expert alone (ctx{args.context})", "online", gold,
                       softmax(logits))]
    for mode in ("online", "offline"):
        oof = [None] * len(dias)
        for k in range(folds):
            test_idx = [i for i in range(len(dias)) if fold_of[i] == k]
            rest = [i for i in range(len(dias)) if fold_of[i] != k]
            val, fit = rest[: max(1, len(rest) // 10)], rest[max(1, len(rest) // 10):]
            probs = []
            for seed in seeds:
                model, _, _ = train_one(mode, seed, [dias[i] for i in fit], [dias[i] for i in val], args)
                probs.append(predict(model, [dias[i] for i in test_idx]))
            p = np.mean(probs, 0)
            off = 0
            for i in test_idx:
                n = len(dias[i]["label"])
                oof[i], off = p[off:off + n], off + n
        rows.append(report_row(f"dialogue GRU x{len(seeds)} seeds, {folds}-fold CV", mode, gold, np.concatenate(oof)))
    return {"rows": rows, "folds": folds, "utterances": int(len(gold))}


def main() -> None:
    """Train both modes over the seeds, report dev (and optionally test), save the weights."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--context", type=int, default=0, help="Which cached features (past turns in the input).")
    ap.add_argument("--seeds", default="13,14,15")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=16, help="Dialogues per step.")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--logit-noise", type=float, default=1.0, help="Gaussian noise on the expert's train logits "
                    "(they are over-confident on the expert's own training data).")
    ap.add_argument("--class-weight-power", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--score-test", action="store_true")
    ap.add_argument("--cv-on", default=None, help="Instead: dialogue-disjoint k-fold CV on this split (dev only).")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = Settings.from_env()
    if args.cv_on:
        if args.cv_on == "test":
            raise SystemExit("cross-validation on MELD test is not allowed: test is for reporting only")
        cv = cross_validate(by_dialogue(load_features(settings, args.context, args.cv_on)), args.folds,
                            [int(s) for s in args.seeds.split(",")], args)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"text_dialogue_cv_{args.cv_on}_ctx{args.context}.json"
        path.write_text(json.dumps({**cv, "split": args.cv_on, "args": vars(args)}, indent=2))
        for r in cv["rows"]:
            print(json.dumps(r))
        print(f"wrote {path}")
        return
    splits = ["train", "dev"] + (["test"] if args.score_test else [])
    data = {s: by_dialogue(load_features(settings, args.context, s)) for s in splits}
    out_dir = Path(settings.cache_dir) / "text-dialogue"
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    result: dict = {"context_turns_in_features": args.context, "train_utterances": int(sum(len(d["label"]) for d in
                    data["train"])), "args": vars(args), "rows": {s: [] for s in splits if s != "train"}}
    for split in result["rows"]:
        gold = np.concatenate([d["label"] for d in data[split]])
        logits = np.concatenate([d["logits"] for d in data[split]])
        result["rows"][split].append(report_row(f"expert alone (ctx{args.context})", "online", gold,
                                                softmax(logits)))
    for mode in ("online", "offline"):
        models, epoch_s = [], []
        for seed in seeds:
            model, dev_wf1, times = train_one(mode, seed, data["train"], data["dev"], args)
            models.append(model)
            epoch_s.extend(times)
            print(f"{mode} seed {seed}: best dev W-F1 {dev_wf1:.2f} ({np.mean(times):.1f} s/epoch)")
        torch.save({"mode": mode, "context": args.context, "states": [m.state_dict() for m in models]},
                   out_dir / f"{mode}-ctx{args.context}.pt")
        result.setdefault("seconds_per_epoch", {})[mode] = round(float(np.mean(epoch_s)), 2)
        for split in result["rows"]:
            gold = np.concatenate([d["label"] for d in data[split]])
            probs = [predict(m, data[split]) for m in models]
            result["rows"][split].append(report_row(f"dialogue GRU seed {seeds[0]}", mode, gold, probs[0]))
            result["rows"][split].append(report_row(f"dialogue GRU x{len(seeds)} seeds", mode, gold,
                                                    np.mean(probs, 0)))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"text_dialogue_ctx{args.context}.json"
    path.write_text(json.dumps(result, indent=2))
    for split, rows in result["rows"].items():
        for r in rows:
            print(split, json.dumps(r))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
