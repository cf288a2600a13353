"""Train the dialogue-level text model (online and offline GRUs) on cached MELD features; choose on dev.

    python -m emotion_agent.training.train_dialogue_model [--context 0] [--seeds 13,14,15] [--score-test]

Reads the features cached by ``cache_text_features`` (MELD train to fit, dev to choose the epoch; test only
with ``--score-test``, report only). For each mode (``online``: past turns only; ``offline``: past and future)
and seed, trains a :class:`~emotion_agent.tools.dialogue_model.DialogueGRU`, keeps its best dev epoch, and
reports the seed ensemble (mean of probabilities) beside the expert alone. Writes
``results/text_dialogue.json`` (W-F1, macro-F1 and fear/disgust/sadness F1 for every row, the mode named in
each row, seconds per epoch) and each mode's seed ensemble, with a softmax temperature fitted on dev, to
``<cache>/text-dialogue/text_dialogue_<mode>.safetensors`` (``--export``: also into the package's
``tools/weights/``, where the text expert's online and offline modes load it by default).
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
from emotion_agent.tools.dialogue_model import DialogueGRU, pad_dialogues, save_ensemble, speaker_cues
from emotion_agent.tools.dialogue_text import weights_name
from emotion_agent.tools.resources import WEIGHTS_DIR
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
        out.append({"dialogue": dia, "features": data["features"][idx], "logits": logits, "label": data["label"][idx],
                    "cues": speaker_cues([str(s) for s in data["speaker"][idx]], logits), "keys": data["keys"][idx],
                    "speakers": data["speaker"][idx]})
    return out


@torch.no_grad()
def predict_logits(model: DialogueGRU, dias: list[dict[str, np.ndarray]], batch: int = 64) -> np.ndarray:
    """Flat logits (in dialogue order) for every utterance."""
    model.eval()
    out = []
    for i in range(0, len(dias), batch):
        part = dias[i:i + batch]
        b = pad_dialogues(part)
        p = model(b["feats"], b["logits"], b["cues"], b["lengths"]).numpy()
        out.extend(p[j, :len(d["logits"])] for j, d in enumerate(part))
    model.train()
    return np.concatenate(out)


def predict(model: DialogueGRU, dias: list[dict[str, np.ndarray]], temperature: float = 1.0) -> np.ndarray:
    """Flat probabilities (in dialogue order) for every utterance."""
    return softmax(predict_logits(model, dias), temperature)


def fit_temperature(logits: list[np.ndarray], gold: np.ndarray) -> float:
    """The softmax temperature (one for the ensemble's members) with the lowest dev log-loss of their mean."""
    grid = np.round(np.arange(0.5, 3.01, 0.05), 2)
    nll = [-np.log(np.mean([softmax(lg, t) for lg in logits], 0)[np.arange(len(gold)), gold] + 1e-12).mean()
           for t in grid]
    return float(grid[int(np.argmin(nll))])


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
    loss_fn = nn.CrossEntropyLoss(weight=w / w.mean(), ignore_index=-100, label_smoothing=args.label_smoothing)
    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    y_dev = np.concatenate([d["label"] for d in dev])
    best, best_state, times = -1.0, None, []
    for _ in range(args.epochs):
        t0 = time.time()
        order = rng.permutation(len(train))
        for i in range(0, len(order), args.batch):
            b = pad_dialogues([train[k] for k in order[i:i + args.batch]])
            scale = torch.tensor([train[k].get("noise", 1.0) for k in order[i:i + args.batch]]).view(-1, 1, 1)
            noisy = b["logits"] + args.logit_noise * scale * torch.randn_like(b["logits"])
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


def train_dialogues(settings: Settings, args) -> tuple[list[dict[str, np.ndarray]], dict[str, int]]:
    """MELD train's dialogues with ``--context`` features; with ``--fill-train-from K``, the dialogues whose
    ``--context`` features are not cached (yet) come from the ctx K cache. Also the count from each."""
    try:
        main_ = by_dialogue(load_features(settings, args.context, "train"))
    except FileNotFoundError:
        if args.fill_train_from is None:
            raise
        main_ = []
    counts = {f"ctx{args.context}": len(main_)}
    if args.fill_train_from is not None and args.fill_train_from != args.context:
        have = {d["dialogue"] for d in main_}
        fill = [d for d in by_dialogue(load_features(settings, args.fill_train_from, "train")) if d["dialogue"] not in have]
        main_ += fill
        counts[f"ctx{args.fill_train_from}"] = len(fill)
    return main_, counts


def fit_mode(mode: str, data: dict[str, list], seeds: list[int], args) -> tuple[list[DialogueGRU], dict, float,
                                                                              list[float]]:
    """One mode's ensemble: its models, {split: (first model's, ensemble's) probabilities}, temperature, epoch times.

    Plain: one model per seed on MELD train, epoch chosen on dev. ``--dev-folds K``: dev is cut into K
    dialogue-disjoint folds; fold k's models train on train plus the other folds (no logit noise there: the
    expert never saw dev) and choose their epoch on fold k, whose dev rows are out-of-fold; the ensemble of all
    folds' models predicts test."""
    dev = data["dev"]
    if not args.dev_folds:
        fitted = [train_one(mode, seed, data["train"], dev, args) for seed in seeds]
        models = [m for m, _, _ in fitted]
        times = [t for _, _, ts in fitted for t in ts]
        for seed, (_, wf1, ts) in zip(seeds, fitted):
            print(f"{mode} seed {seed}: best dev W-F1 {wf1:.2f} ({np.mean(ts):.1f} s/epoch)")
        gold = np.concatenate([d["label"] for d in dev])
        temperature = fit_temperature([predict_logits(m, dev) for m in models], gold)
        probs = {}
        for split in data:
            if split != "train":
                p = [predict(m, data[split], temperature) for m in models]
                probs[split] = (p[0], np.mean(p, 0))
        return models, probs, temperature, times
    fold_of = np.random.default_rng(0).permutation(len(dev)) % args.dev_folds
    starts = np.cumsum([0] + [len(d["label"]) for d in dev])
    gold = np.concatenate([d["label"] for d in dev])
    oof = np.zeros((len(seeds), len(gold), len(LABELS)))
    models, times = [], []
    for k in range(args.dev_folds):
        held = [i for i in range(len(dev)) if fold_of[i] == k]
        rest = [{**dev[i], "noise": 0.0} for i in range(len(dev)) if fold_of[i] != k]
        for j, seed in enumerate(seeds):
            model, wf1, ts = train_one(mode, seed, data["train"] + rest * args.dev_weight, [dev[i] for i in held],
                                       args)
            print(f"{mode} fold {k} seed {seed}: best held-out W-F1 {wf1:.2f} ({np.mean(ts):.1f} s/epoch)")
            models.append(model)
            times.extend(ts)
            lg = predict_logits(model, [dev[i] for i in held])
            off = 0
            for i in held:
                n = starts[i + 1] - starts[i]
                oof[j, starts[i]:starts[i + 1]], off = lg[off:off + n], off + n
    temperature = fit_temperature(list(oof), gold)
    dev_p = [softmax(o, temperature) for o in oof]
    probs = {"dev": (dev_p[0], np.mean(dev_p, 0))}
    if "test" in data:
        p = [predict(m, data["test"], temperature) for m in models]
        probs["test"] = (p[0], np.mean(p, 0))
    return models, probs, temperature, times


def save_probs(path: Path, data: dict[str, list], probs: dict) -> None:
    """The ensemble's probabilities (dev: out-of-fold with ``--dev-folds``) and the gold labels per split, for
    choices made after training (``training/fit_class_bias``)."""
    arrays = {}
    for split, (_, ensemble) in probs.items():
        arrays[f"{split}_probs"] = ensemble
        arrays[f"{split}_gold"] = np.concatenate([d["label"] for d in data[split]])
        arrays[f"{split}_dialogue"] = np.concatenate([[d["dialogue"]] * len(d["label"]) for d in data[split]])
    np.savez(path, **arrays)


def cross_validate(dias: list[dict[str, np.ndarray]], folds: int, seeds: list[int], args) -> dict:
    """Dialogue-disjoint k-fold on one split: each fold's model trains on the other folds (epoch chosen on a
    tenth of them), and the expert alone and both modes are scored on the pooled out-of-fold predictions.

    A feasibility check while the train features are not cached; it never reads MELD test."""
    rng = np.random.default_rng(0)
    fold_of = rng.permutation(len(dias)) % folds
    gold = np.concatenate([d["label"] for d in dias])
    logits = np.concatenate([d["logits"] for d in dias])
    rows = [report_row(f"expert alone (ctx{args.context})", "utterance", gold,
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
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--tag", default="", help="Suffix of the results file (variants chosen on dev).")
    ap.add_argument("--export", action="store_true", help="Also write the weights into the package "
                    "(tools/weights/), where the text expert loads them by default.")
    ap.add_argument("--modes", default="online,offline")
    ap.add_argument("--no-features", action="store_true", help="Leave out the expert's 768-d features.")
    ap.add_argument("--fill-train-from", type=int, default=None, help="Train dialogues whose --context features are "
                    "not cached come from this context's cache (e.g. 0).")
    ap.add_argument("--dev-folds", type=int, default=0, help="Mix dev into training by K dialogue-disjoint folds "
                    "(see fit_mode); 0: train only.")
    ap.add_argument("--dev-weight", type=int, default=1, help="With --dev-folds: copies of the dev dialogues.")
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
    data = {s: by_dialogue(load_features(settings, args.context, s)) for s in splits if s != "train"}
    data["train"], train_sources = train_dialogues(settings, args)
    if args.no_features:  # the GRU reads the expert's logits and the speaker cues only (a 1-wide zero feature)
        data = {k: [{**d, "features": np.zeros((len(d["label"]), 1), np.float32)} for d in v] for k, v in data.items()}
    out_dir = Path(settings.cache_dir) / "text-dialogue"
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    result: dict = {"context_turns_in_features": args.context, "train_utterances": int(sum(len(d["label"]) for d in
                    data["train"])), "train_dialogues_by_features": train_sources, "args": vars(args),
                    "rows": {s: [] for s in splits if s != "train"}}
    for split in result["rows"]:
        gold = np.concatenate([d["label"] for d in data[split]])
        logits = np.concatenate([d["logits"] for d in data[split]])
        result["rows"][split].append(report_row(f"expert alone (ctx{args.context})", "utterance", gold,
                                                softmax(logits)))
    for mode in args.modes.split(","):
        t0 = time.time()
        models, probs, temperature, epoch_s = fit_mode(mode, data, seeds, args)
        result.setdefault("seconds_per_epoch", {})[mode] = round(float(np.mean(epoch_s)), 2)
        result.setdefault("train_seconds", {})[mode] = round(time.time() - t0, 1)
        result.setdefault("temperature", {})[mode] = temperature
        dev_row = None
        how = f", {args.dev_folds}-fold dev mix-in (dev rows out-of-fold)" if args.dev_folds else ""
        for split in result["rows"]:
            gold = np.concatenate([d["label"] for d in data[split]])
            first, ensemble = probs[split]
            result["rows"][split].append(report_row(f"dialogue GRU seed {seeds[0]}{how}", mode, gold, first))
            result["rows"][split].append(report_row(f"dialogue GRU x{len(models)} models{how}", mode, gold,
                                                    ensemble))
            if split == "dev":
                dev_row = result["rows"][split][-1]
        meta = {"context": str(args.context), "temperature": str(temperature), "seeds": args.seeds,
                "trained_on": f"MELD train ({result['train_utterances']} utterances, dialogues by features "
                              f"{train_sources})" + (
                    f" + MELD dev in {args.dev_folds} folds (epoch chosen on the held-out fold)" if args.dev_folds
                    else ", epoch chosen on dev"),
                "dev_weighted_f1": str(dev_row["weighted_f1"] if dev_row else ""),
                "args": json.dumps(vars(args))}
        path = out_dir / weights_name(mode)
        save_ensemble(path, models, meta)
        if args.export:
            save_ensemble(WEIGHTS_DIR / weights_name(mode), models, meta)
        print(f"{mode}: weights in {path} ({path.stat().st_size / 1e6:.2f} MB)")
        save_probs(out_dir / f"probs_ctx{args.context}{args.tag}_{mode}.npz", data, probs)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"text_dialogue_ctx{args.context}{args.tag}.json"
    path.write_text(json.dumps(result, indent=2))
    for split, rows in result["rows"].items():
        for r in rows:
            print(split, json.dumps(r))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
