"""Features of an utterance for the text expert: MiniLM embeddings, context, surface cues.

Kept apart from the expert so training (``training/train_text_expert.py``) and inference build
exactly the same feature vector.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from emotion_agent.tools.evidence import Cue

LEXICON_PATH = Path(__file__).parent / "weights" / "emotion_lexicon.json"
_WORD = re.compile(r"[a-z']+")
SURFACE_NAMES = ("exclamations", "questions", "shouting", "length", "ellipsis", "negation")


@lru_cache(maxsize=1)
def lexicon() -> dict[str, list[str]]:
    """Small hand-written cue lexicon (label → words/phrases). Used for readable cues only."""
    return json.loads(LEXICON_PATH.read_text(encoding="utf-8"))


def surface_features(text: str) -> np.ndarray:
    """A few scaled surface features (punctuation, shouting, length, negation)."""
    letters = [c for c in text if c.isalpha()]
    upper = sum(c.isupper() for c in letters) / max(len(letters), 1)
    words = _WORD.findall(text.lower())
    return np.array([
        min(text.count("!"), 3) / 3.0,
        min(text.count("?"), 3) / 3.0,
        float(upper > 0.6 and len(letters) >= 4),
        min(len(words), 40) / 40.0,
        float("..." in text or "…" in text),
        float(any(w in {"no", "not", "never", "don't", "can't", "won't", "didn't", "isn't"} for w in words)),
    ], dtype=np.float32)


def context_vector(context_embeddings: np.ndarray | None, dim: int) -> np.ndarray:
    """Recency-weighted mean of previous utterances' embeddings (zeros when none)."""
    if context_embeddings is None or len(context_embeddings) == 0:
        return np.zeros(dim, dtype=np.float32)
    w = 0.5 ** np.arange(len(context_embeddings))[::-1]  # newest weight 1, older halves
    v = (context_embeddings * w[:, None]).sum(0) / w.sum()
    return v.astype(np.float32)


def build_features(utt_emb: np.ndarray, ctx_vec: np.ndarray, text: str) -> np.ndarray:
    """The head's feature row: utterance embedding, context vector and surface cues."""
    return np.concatenate([utt_emb, ctx_vec, surface_features(text)]).astype(np.float32)


def readable_cues(text: str) -> list[Cue]:
    """Cues an analyst can check by reading the text."""
    cues: list[Cue] = []
    if (n := text.count("!")) > 0:
        cues.append(Cue(name="exclamation marks", value=n))
    if (n := text.count("?")) > 0:
        cues.append(Cue(name="question marks", value=n))
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 4 and sum(c.isupper() for c in letters) / len(letters) > 0.6:
        cues.append(Cue(name="shouting (mostly capitals)"))
    if "..." in text or "…" in text:
        cues.append(Cue(name="trailing off (ellipsis)"))
    low = " " + " ".join(_WORD.findall(text.lower())) + " "
    for label, phrases in lexicon().items():
        hits = [p for p in phrases if f" {p} " in low]
        if hits:
            cues.append(Cue(name=f"{label} words", value=", ".join(f"'{h}'" for h in hits[:3])))
    return cues


def non_english_share(text: str) -> float:
    """Share of letters outside basic Latin (a cheap hint that the text is not English)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(not ("a" <= c.lower() <= "z") for c in letters) / len(letters)
