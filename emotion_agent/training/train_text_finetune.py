"""Fine-tune the text expert: all-mpnet-base-v2 + LoRA + linear head on MELD train, chosen on dev.

    python -m emotion_agent.training.train_text_finetune [--run-dir .cache/text-finetune] [--epochs 3]

Resumable: a checkpoint (adapters, head, optimizer, scheduler, RNG, position in the epoch) is written
atomically every ``--ckpt-every`` steps and at each epoch's end; rerunning the same command continues
where the last run stopped (a session or CI run can be cut at any time). Seeded. Each epoch logs dev
weighted-F1 to ``<run-dir>/log.jsonl``; the best epoch on dev is kept as ``best.safetensors`` (with a
softmax temperature fitted on dev) and ``--export`` copies it into the package's weights. MELD test is
only scored by ``--score-test``, never used for a choice.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from emotion_agent.evals.meld import Utterance, dialogues, load_split
from emotion_agent.evals.metrics import classification_report, weighted_f1
from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.tools.assets import ensure
from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.mpnet_classifier import AdapterConfig, EmotionClassifier, collate, encode, load_base
from emotion_agent.tools.resources import WEIGHTS_DIR
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.text_assets import MPNET

EXPORT_PATH = WEIGHTS_DIR / "text_mpnet_lora.safetensors"


def encode_split(utts: list[Utterance], tokenizer, cfg: AdapterConfig) -> list[tuple[list[int], list[int]]]:
    """(ids, pool mask) per utterance, with its dialogue's past turns as context."""
    index = {u.key: i for i, u in enumerate(utts)}
    out: list[tuple[list[int], list[int]] | None] = [None] * len(utts)
    for turns in dialogues(utts).values():
        for j, u in enumerate(turns):
            past = [(t.speaker, t.text) for t in turns[max(0, j - cfg.context_turns):j]]
            out[index[u.key]] = encode(tokenizer, past, u.speaker, u.text, cfg.max_len)
    return out  # type: ignore[return-value]


def length_batches(lengths: list[int], batch: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (sorted inside chunks of 50 batches): less padding, same randomness."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch * 50
    batches: list[list[int]] = []
    for i in range(0, len(order), chunk):
        part = sorted(order[i:i + chunk], key=lambda k: lengths[k])
        batches.extend(part[j:j + batch] for j in range(0, len(part), batch))
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def predict_logits(model: EmotionClassifier, rows, pad_id: int, batch: int = 64) -> np.ndarray:
    """Logits for every row (eval mode, length-sorted batches)."""
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    out = np.zeros((len(rows), len(LABELS)), dtype=np.float32)
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        out[idx] = model(**collate([rows[k] for k in idx], pad_id)).numpy()
    model.train()
    return out


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Softmax temperature minimising dev NLL (grid search; monotone, so the argmax never changes)."""
    best, best_t = float("inf"), 1.0
    for t in np.linspace(0.5, 4.0, 71):
        z = logits / t
        z = z - z.max(1, keepdims=True)
        nll = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean()
        if nll < best:
            best, best_t = nll, float(t)
    return best_t


def atomic_torch_save(obj: object, path: Path) -> None:
    """Write to a temporary file, fsync, then rename: a cut never leaves a half checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_adapter(model: EmotionClassifier, path: Path, meta: dict[str, str]) -> None:
    """The trainable tensors (fp16) with the adapter config and provenance as safetensors metadata."""
    from safetensors.torch import save_file

    state = {k: v.half().contiguous() for k, v in model.trainable_state().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={**model.cfg.to_meta(), **meta})
    os.replace(tmp, path)


def main() -> None:
    """Train (or resume) the LoRA text expert; log dev W-F1 per epoch; keep the best."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path(".cache/text-finetune"))
    ap.add_argument("--base", default=None, help="Base encoder folder or hub id (default: the packaged mpnet).")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--context", type=int, default=3, help="Past turns given as context.")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--class-weight-power", type=float, default=0.5, help="Loss weight (n/n_c)^p per class.")
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--max-steps", type=int, default=None, help="Stop after this many steps in this run (tests).")
    ap.add_argument("--limit", type=int, default=None, help="Train on the first N utterances only (tests).")
    ap.add_argument("--export", action="store_true", help="Copy best.safetensors into the package weights.")
    ap.add_argument("--score-test", action="store_true", help="Score the best adapter on MELD test (report only).")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    settings = Settings.from_env()
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = AdapterConfig(r=args.lora_r, alpha=2.0 * args.lora_r, context_turns=args.context, max_len=args.max_len)
    base = args.base or str(ensure(MPNET.name, settings))

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    tokenizer, encoder = load_base(base)
    model = EmotionClassifier(encoder, len(LABELS), cfg)
    model.train()
    pad_id = tokenizer.pad_token_id

    train = load_split("train", settings.require_data_dir())
    dev = load_split("dev", settings.data_dir)
    train_rows = encode_split(train, tokenizer, cfg)
    dev_rows = encode_split(dev, tokenizer, cfg)
    if args.limit:
        train, train_rows = train[: args.limit], train_rows[: args.limit]
    y_train = np.array([LABELS.index(u.emotion) for u in train])
    y_dev = np.array([LABELS.index(u.emotion) for u in dev])
    counts = np.bincount(y_train, minlength=len(LABELS)).astype(float)
    weights = torch.tensor((counts.sum() / np.maximum(counts, 1)) ** args.class_weight_power, dtype=torch.float32)
    weights = weights / weights.mean()
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)

    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps_per_epoch = (len(train_rows) + args.batch - 1) // args.batch
    total = steps_per_epoch * args.epochs
    warmup = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup)))

    ckpt_path = run_dir / "checkpoint.pt"
    state = {"epoch": 0, "batch_index": 0, "step": 0, "best_dev_wf1": -1.0}
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"], strict=False)
        optim.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        state = ck["state"]
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed from {ckpt_path}: epoch {state['epoch']}, batch {state['batch_index']}, step {state['step']}")
    (run_dir / "config.json").write_text(json.dumps({**vars(args), "run_dir": str(run_dir), "base": base,
                                                     "adapter": cfg.to_meta()}, default=str, indent=2))

    def checkpoint() -> None:
        """Write a resumable checkpoint (model, optimiser, scheduler, position)."""
        atomic_torch_save({"model": model.trainable_state(), "optim": optim.state_dict(),
                           "sched": sched.state_dict(), "state": state, "torch_rng": torch.get_rng_state()},
                          ckpt_path)

    steps_this_run = 0
    lengths = [len(ids) for ids, _ in train_rows]
    while state["epoch"] < args.epochs:
        epoch = state["epoch"]
        batches = length_batches(lengths, args.batch, random.Random(args.seed * 1000 + epoch))
        bar = tqdm(total=len(batches), initial=state["batch_index"], desc=f"epoch {epoch + 1}/{args.epochs}",
                   unit="step")
        t0 = time.time()
        while state["batch_index"] < len(batches):
            idx = batches[state["batch_index"]]
            logits = model(**collate([train_rows[k] for k in idx], pad_id))
            loss = loss_fn(logits, torch.tensor(y_train[idx]))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            state["batch_index"] += 1
            state["step"] += 1
            steps_this_run += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", s_per_step=f"{(time.time() - t0) / max(1, bar.n - bar.initial or 1):.2f}")
            if state["step"] % args.ckpt_every == 0:
                checkpoint()
            if args.max_steps and steps_this_run >= args.max_steps:
                checkpoint()
                print(f"stopped after {steps_this_run} steps (--max-steps); rerun to continue")
                return
        bar.close()
        dev_logits = predict_logits(model, dev_rows, pad_id)
        dev_pred = dev_logits.argmax(1)
        wf1 = weighted_f1([LABELS[i] for i in y_dev], [LABELS[i] for i in dev_pred])
        entry = {"epoch": epoch + 1, "step": state["step"], "dev_weighted_f1": wf1,
                 "epoch_wall_s": round(time.time() - t0, 1), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if wf1 > state["best_dev_wf1"]:
            state["best_dev_wf1"] = wf1
            temp = fit_temperature(dev_logits, y_dev)
            save_adapter(model, run_dir / "best.safetensors",
                         {"temperature": f"{temp:.4f}", "dev_weighted_f1": f"{wf1:.2f}", "epoch": str(epoch + 1),
                          "trained_on": "MELD train", "base": "all-mpnet-base-v2", "labels": ",".join(LABELS)})
            entry["best"] = True
            entry["temperature"] = temp
        with (run_dir / "log.jsonl").open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
        print(json.dumps(entry))
        state["epoch"] += 1
        state["batch_index"] = 0
        checkpoint()

    best = run_dir / "best.safetensors"
    if args.export and best.is_file():
        shutil.copyfile(best, EXPORT_PATH)
        print(f"exported {best} -> {EXPORT_PATH}")
    if args.score_test and best.is_file():
        score_test(best, base, settings, tokenizer)


def score_test(adapter: Path, base: str, settings: Settings, tokenizer) -> None:
    """Report-only score of an adapter on MELD test (and dev), written to results/text_finetune.json."""
    from emotion_agent.tools.mpnet_classifier import load_finetuned

    _, model, meta = load_finetuned(base, adapter, len(LABELS))
    cfg = model.cfg
    report = {"adapter_meta": meta}
    for split in ("dev", "test"):
        utts = load_split(split, settings.data_dir)
        rows = encode_split(utts, tokenizer, cfg)
        pred = predict_logits(model, rows, tokenizer.pad_token_id).argmax(1)
        report[split] = classification_report([u.emotion for u in utts], [LABELS[i] for i in pred])
        print(split, json.dumps({k: v for k, v in report[split].items() if not isinstance(v, dict)}))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "text_finetune.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
