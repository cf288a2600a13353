"""A fine-tuned text-emotion classifier: all-mpnet-base-v2 + LoRA adapters + a linear head.

Input is EmoBERTa-style: the past turns of the dialogue with speaker names, a separator, then
``"Speaker: current utterance"``. The current utterance's tokens are mean-pooled (attention still
sees the context) and a linear head gives MELD's 7 logits. Only the LoRA matrices and the head are
trained (``python -m emotion_agent.training.train_text_finetune``), so what ships is a few MB of
``safetensors``; the 438 MB base comes from the ``all-mpnet-base-v2`` asset or any local folder /
hub id that ``transformers`` can load. At load time the adapters are merged into the base weights,
so inference costs exactly one mpnet forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

#: Linear layers of each mpnet block that get a LoRA adapter.
LORA_TARGETS = ("attn.q", "attn.k", "attn.v", "attn.o", "intermediate.dense", "output.dense")


class LoRALinear(nn.Module):
    """``base(x) + (x A^T B^T) * alpha / r``, with the base frozen; ``merged()`` folds it back into one Linear."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.r = r
        self.scale = alpha / r
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        for p in self.base.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen projection plus the low-rank update."""
        return self.base(x) + (self.dropout(x) @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        """A plain Linear whose weight includes the adapter."""
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
        return self.base


def _lora_modules(encoder: nn.Module) -> list[tuple[str, nn.Module, str]]:
    out = []
    for name, module in encoder.named_modules():
        for target in LORA_TARGETS:
            parent_name, _, child = target.rpartition(".")
            if name.endswith(parent_name) and ".layer." in f".{name}" and isinstance(getattr(module, child, None),
                                                                                     nn.Linear):
                out.append((f"{name}.{child}", module, child))
    return out


@dataclass(frozen=True)
class AdapterConfig:
    """Shape of the trained adapter; stored next to the weights."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    context_turns: int = 3
    max_len: int = 128

    def to_meta(self) -> dict[str, str]:
        """As string metadata for a safetensors header."""
        return {k: str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> "AdapterConfig":
        """Back from safetensors metadata."""
        return cls(r=int(meta["r"]), alpha=float(meta["alpha"]), dropout=float(meta.get("dropout", 0.0)),
                   context_turns=int(meta["context_turns"]), max_len=int(meta["max_len"]))


class EmotionClassifier(nn.Module):
    """mpnet encoder (LoRA-adapted) → mean of the current utterance's tokens → dropout → linear (7)."""

    def __init__(self, encoder: nn.Module, n_labels: int, cfg: AdapterConfig, *, with_lora: bool = True):
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        if with_lora:
            for _, parent, child in _lora_modules(self.encoder):
                setattr(parent, child, LoRALinear(getattr(parent, child), cfg.r, cfg.alpha, cfg.dropout))
        hidden = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(hidden, n_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        """Logits for a padded batch; ``pool_mask`` marks the current utterance's tokens."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = pool_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))

    def pooled_and_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          pool_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean-pooled current-utterance states (the head's input, no dropout) and the head's logits: what
        the dialogue model reads for each utterance (eval mode gives the same logits as :meth:`forward`)."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = pool_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)
        return pooled, self.head(pooled)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Only what training changed: LoRA matrices and the head."""
        return {k: v.detach().clone() for k, v in self.state_dict().items() if "lora_" in k or k.startswith("head.")}

    def merge_lora(self) -> None:
        """Fold every adapter into its base Linear (inference: one plain mpnet pass)."""
        for name, module in list(self.encoder.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, LoRALinear):
                    setattr(module, child_name, child.merged())


def encode(tokenizer: Any, context: Sequence[tuple[str, str]], speaker: str | None, text: str,
           max_len: int) -> tuple[list[int], list[int]]:
    """Token ids and the pooling mask for one turn: ``<s> past </s></s> Speaker: text </s>``.

    Past turns are (speaker, text), oldest first; the most recent ones are kept when the budget is short,
    and the current utterance is truncated only when it alone exceeds ``max_len``.
    """
    cur = f"{speaker}: {text}" if speaker else text
    cur_ids = tokenizer(cur, add_special_tokens=False)["input_ids"][: max_len - 4]
    budget = max_len - len(cur_ids) - 4
    past_ids: list[int] = []
    for spk, utt in reversed(list(context)):
        ids = tokenizer(f"{spk}: {utt}" if spk else utt, add_special_tokens=False)["input_ids"]
        if len(ids) + len(past_ids) > budget:
            break
        past_ids = ids + past_ids
    bos, eos = tokenizer.cls_token_id, tokenizer.sep_token_id
    if past_ids:
        ids = [bos, *past_ids, eos, eos, *cur_ids, eos]
        mask = [0] * (len(past_ids) + 3) + [1] * len(cur_ids) + [0]
    else:
        ids = [bos, *cur_ids, eos]
        mask = [0] + [1] * len(cur_ids) + [0]
    return ids, mask


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch of (ids, pool mask) to its longest row."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    pool = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, mask) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        pool[i, : len(mask)] = torch.tensor(mask)
    return {"input_ids": input_ids, "attention_mask": attention, "pool_mask": pool}


def load_base(base: str | Path) -> tuple[Any, nn.Module]:
    """Tokenizer and encoder from a local folder (or a hub id, where the network allows)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar on every CLI call
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    encoder = AutoModel.from_pretrained(str(base))
    return tokenizer, encoder


def load_finetuned(base: str | Path, adapter: Path, n_labels: int) -> tuple[Any, EmotionClassifier, dict[str, str]]:
    """The trained classifier, adapters merged, in eval mode; plus the adapter file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(adapter), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
    cfg = AdapterConfig.from_meta(meta)
    tokenizer, encoder = load_base(base)
    model = EmotionClassifier(encoder, n_labels, cfg)
    state = load_file(str(adapter))
    missing = [k for k in model.trainable_state() if k not in state]
    if missing:
        raise ValueError(f"{adapter}: adapter file lacks {len(missing)} tensors (e.g. {missing[0]})")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    model.merge_lora()
    model.eval()
    return tokenizer, model, meta
