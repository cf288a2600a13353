"""Cache the fine-tuned text expert's utterance features for every MELD utterance (resumable).

    python -m emotion_agent.training.cache_text_features [--context 0|3] [--splits dev,test,train]

Each utterance is encoded exactly as the live text expert encodes it (``mpnet_classifier.encode``, with
``--context`` past turns of its dialogue) and one forward pass of the fine-tuned mpnet (adapters merged)
gives the mean-pooled 768-d vector under the classification head plus the head's 7 logits. Dialogues are
processed in chunks; each chunk is written atomically as ``<cache>/text-features/ctx<K>/<split>/part-NNNN.npz``
(keys, dialogue ids, positions, speakers, features, logits), so a cut loses at most one chunk and a rerun
skips what is there. The dialogue-level model (``train_dialogue_model``) trains on these files.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from emotion_agent.evals.meld import Utterance, dialogues, load_split
from emotion_agent.tools.assets import ensure
from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.mpnet_classifier import collate, encode, load_finetuned
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.text_assets import MPNET

ADAPTER = Path(__file__).resolve().parents[1] / "tools" / "weights" / "text_mpnet_lora.safetensors"


def feature_dir(settings: Settings, context: int) -> Path:
    """Where the features of one context setting live (under the configurable cache folder)."""
    return Path(settings.cache_dir) / "text-features" / f"ctx{context}"


@torch.inference_mode()
def pooled_and_logits(model, rows, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pooled current-utterance states (the head's input) and the head's logits, one batch."""
    pooled, logits = model.pooled_and_logits(**collate(rows, pad_id))
    return pooled.numpy().astype(np.float32), logits.numpy().astype(np.float32)


def atomic_savez(path: Path, **arrays) -> None:
    """np.savez to a temporary file, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp.npz")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def cache_split(split: str, utts: list[Utterance], out: Path, tokenizer, model, context: int,
                chunk: int, batch: int) -> int:
    """Encode every dialogue of ``split`` into chunk files under ``out``; returns utterances newly encoded."""
    out.mkdir(parents=True, exist_ok=True)
    dias = sorted(dialogues(utts).items())
    chunks = [dias[i:i + chunk] for i in range(0, len(dias), chunk)]
    done_new = 0
    bar = tqdm(total=len(utts), desc=f"{split} ctx{context}", unit="utt")
    for ci, part in enumerate(chunks):
        path = out / f"part-{ci:04d}.npz"
        n = sum(len(t) for _, t in part)
        if path.is_file():
            bar.update(n)
            continue
        flat: list[Utterance] = []
        rows = []
        for _, turns in part:
            for j, u in enumerate(turns):
                past = [(t.speaker, t.text) for t in turns[max(0, j - context):j]] if context else []
                rows.append(encode(tokenizer, past, u.speaker, u.text, model.cfg.max_len))
                flat.append(u)
        feats = np.zeros((len(rows), int(model.encoder.config.hidden_size)), dtype=np.float32)
        logits = np.zeros((len(rows), len(LABELS)), dtype=np.float32)
        order = sorted(range(len(rows)), key=lambda k: len(rows[k][0]))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            feats[idx], logits[idx] = pooled_and_logits(model, [rows[k] for k in idx], tokenizer.pad_token_id)
            bar.update(len(idx))
        atomic_savez(path, keys=np.array([u.key for u in flat]), dialogue=np.array([u.dialogue_id for u in flat]),
                     position=np.array([u.position for u in flat]), speaker=np.array([u.speaker for u in flat]),
                     label=np.array([LABELS.index(u.emotion) for u in flat]), features=feats, logits=logits)
        done_new += len(flat)
    bar.close()
    return done_new


def load_features(settings: Settings, context: int, split: str) -> dict[str, np.ndarray]:
    """All cached chunks of one split, concatenated (raises when none exist)."""
    parts = sorted((feature_dir(settings, context) / split).glob("part-*.npz"))
    if not parts:
        raise FileNotFoundError(f"no cached features for {split} ctx{context}: run "
                                f"python -m emotion_agent.training.cache_text_features --context {context}")
    loaded = [dict(np.load(p)) for p in parts]
    return {k: np.concatenate([d[k] for d in loaded]) for k in loaded[0]}


def main() -> None:
    """Cache features for the requested splits, resuming from what is on disk."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--context", type=int, default=0, help="Past turns in each utterance's input (0 or 3).")
    ap.add_argument("--splits", default="dev,test,train")
    ap.add_argument("--chunk", type=int, default=20, help="Dialogues per chunk file.")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = Settings.from_env()
    base = str(ensure(MPNET.name, settings))
    tokenizer, model, _ = load_finetuned(base, ADAPTER, len(LABELS))
    for split in args.splits.split(","):
        t0 = time.time()
        utts = load_split(split, settings.require_data_dir())
        n = cache_split(split, utts, feature_dir(settings, args.context) / split, tokenizer, model, args.context,
                        args.chunk, args.batch)
        dt = time.time() - t0
        print(f"{split} ctx{args.context}: {n} utterances encoded in {dt:.0f} s "
              f"({n / max(dt, 1e-9):.1f} utt/s, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
