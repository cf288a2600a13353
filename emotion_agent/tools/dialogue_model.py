"""A dialogue-level text model: a GRU over a dialogue's utterances, on top of the fine-tuned text expert.

Each utterance enters as the text expert's mean-pooled features (projected), its own logits, and speaker
cues: whether the speaker is the same as the previous turn's, whether this is the speaker's first turn, and
the expert's distribution on this speaker's previous turn and on the previous turn (emotion carry-over,
within and across speakers). Two modes:

- ``online``: a one-directional GRU, so a turn's label depends on its past turns only (live turns, chatbots);
- ``offline``: a bidirectional GRU, past and future turns (analysts and eval runs over whole dialogues).

The output is a residual on the expert's own logits, so an untrained or uninformative GRU reproduces the
expert. Trained by ``python -m emotion_agent.training.train_dialogue_model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from emotion_agent.tools.softmax import softmax

ContextMode = Literal["online", "offline"]
N_LABELS = 7
#: Speaker-cue width: same-as-previous, first turn of this speaker, previous turn's and own previous distribution.
CUE_DIM = 2 + 2 * N_LABELS


def speaker_cues(speakers: Sequence[str], logits: np.ndarray) -> np.ndarray:
    """Per-utterance speaker cues for one dialogue (see the module docstring); shape (T, CUE_DIM)."""
    probs = softmax(logits)
    cues = np.zeros((len(speakers), CUE_DIM), dtype=np.float32)
    last_of: dict[str, int] = {}
    for t, spk in enumerate(speakers):
        if t > 0:
            cues[t, 0] = float(speakers[t - 1] == spk)
            cues[t, 2:2 + N_LABELS] = probs[t - 1]
        if spk in last_of:
            cues[t, 2 + N_LABELS:] = probs[last_of[spk]]
        else:
            cues[t, 1] = 1.0
        last_of[spk] = t
    return cues


class DialogueGRU(nn.Module):
    """Residual GRU over utterance features; ``mode`` fixes whether future turns are seen."""

    def __init__(self, feat_dim: int = 768, proj: int = 128, hidden: int = 128, mode: ContextMode = "online",
                 dropout: float = 0.3):
        super().__init__()
        self.mode = mode
        self.feat_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(feat_dim, proj)
        in_dim = proj + N_LABELS + CUE_DIM
        self.gru = nn.GRU(in_dim, hidden, batch_first=True, bidirectional=(mode == "offline"))
        out_dim = hidden * (2 if mode == "offline" else 1)
        self.out_drop = nn.Dropout(dropout)
        self.head = nn.Linear(out_dim + in_dim, N_LABELS)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, feats: torch.Tensor, logits: torch.Tensor, cues: torch.Tensor,
                lengths: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, 7) for padded dialogues (B, T, ·); positions past ``lengths`` are ignored."""
        x = torch.cat([torch.relu(self.proj(self.feat_drop(feats))), logits, cues], dim=-1)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.gru(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        return logits + self.head(self.out_drop(torch.cat([h, x], dim=-1)))


def pad_dialogues(dias: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack per-dialogue arrays (features, logits, cues[, label]) into padded tensors plus lengths."""
    T = max(len(d["logits"]) for d in dias)
    B = len(dias)
    F = dias[0]["features"].shape[1]
    out = {"feats": torch.zeros(B, T, F), "logits": torch.zeros(B, T, N_LABELS), "cues": torch.zeros(B, T, CUE_DIM),
           "lengths": torch.tensor([len(d["logits"]) for d in dias]), "label": torch.full((B, T), -100)}
    for i, d in enumerate(dias):
        n = len(d["logits"])
        out["feats"][i, :n] = torch.from_numpy(d["features"])
        out["logits"][i, :n] = torch.from_numpy(d["logits"])
        out["cues"][i, :n] = torch.from_numpy(d["cues"])
        if "label" in d:
            out["label"][i, :n] = torch.from_numpy(d["label"].astype(np.int64))
    return out


def save_ensemble(path: Path, models: Sequence[DialogueGRU], meta: dict[str, str], half: bool = True) -> None:
    """The seed ensemble of one mode as one ``safetensors`` file (float16 by default: a few MB), with its
    shapes and provenance in the header."""
    from safetensors.torch import save_file

    m0 = models[0]
    header = {"mode": m0.mode, "seeds_in_file": str(len(models)), "feat_dim": str(m0.proj.in_features),
              "proj": str(m0.proj.out_features), "hidden": str(m0.gru.hidden_size), **meta}
    tensors = {f"m{i}.{k}": (v.half() if half else v).contiguous() for i, m in enumerate(models)
               for k, v in m.state_dict().items()}
    save_file(tensors, str(path), metadata=header)
    path.chmod(0o644)  # package data: readable by everyone


def load_ensemble(path: Path) -> tuple[list[DialogueGRU], dict[str, str]]:
    """The models and header written by :func:`save_ensemble`, in eval mode (float32)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
    state = load_file(str(path))
    mode = meta.get("mode")
    if mode not in ("online", "offline"):
        raise ValueError(f"{path}: not a dialogue-model file (mode {mode!r})")
    models = []
    for i in range(int(meta["seeds_in_file"])):
        m = DialogueGRU(feat_dim=int(meta["feat_dim"]), proj=int(meta["proj"]), hidden=int(meta["hidden"]),
                        mode=mode)  # type: ignore[arg-type]
        m.load_state_dict({k.split(".", 1)[1]: v.float() for k, v in state.items() if k.startswith(f"m{i}.")})
        models.append(m.eval())
    return models, meta
