"""Text expert: emotion of an utterance from its words (and the dialogue so far).

A linear classifier over MiniLM sentence embeddings of the utterance, a recency-weighted
embedding of the previous turns and a few surface features; trained on MELD train, tuned
on dev (``python -m emotion_agent.evals.train_text_expert``). Weights are a small ``.npz`` in
``tools/weights/`` (or a user path), applied in numpy — no pickle, no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from emotion_agent.tools.resources import WEIGHTS_DIR
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.base import Expert, ExpertError, TurnInput
from emotion_agent.tools.embedding import MiniLMEmbedder, shared_embedder
from emotion_agent.tools.evidence import LABELS, Cue, EmotionEvidence, new_id
from emotion_agent.tools.text_features import build_features, context_vector, non_english_share, readable_cues

DEFAULT_WEIGHTS = WEIGHTS_DIR / "text_emotion.npz"


class TextClassifier:
    """The trained head: standardise → linear → softmax (temperature-scaled)."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise ExpertError(
                f"text expert weights not found at {path}; train them with "
                "`python -m emotion_agent.evals.train_text_expert` or point EMOTION_AGENT_TEXT_WEIGHTS at a file"
            )
        data = np.load(path, allow_pickle=False)
        self.mean = data["mean"]
        self.scale = data["scale"]
        self.coef = data["coef"]
        self.intercept = data["intercept"]
        self.temperature = float(data["temperature"]) if "temperature" in data else 1.0
        self.context_k = int(data["context_k"]) if "context_k" in data else 0
        labels = [str(x) for x in data["labels"]]
        if labels != list(LABELS):
            raise ExpertError(f"{path}: label order {labels} differs from MELD's {list(LABELS)}")
        self.meta = {k: str(data[k]) for k in ("trained_on", "dev_weighted_f1") if k in data}

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.scale) @ self.coef.T + self.intercept
        z = z / self.temperature
        z -= z.max(axis=-1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=-1, keepdims=True)


class TextEmotionExpert(Expert):
    name: ClassVar[str] = "text_emotion"
    modality = "text"
    description: ClassVar[str] = (
        "Emotion of the words said in this turn (given text, or the transcript when only audio was given), "
        "using the previous turns of the conversation as context. Returns a distribution over 7 emotions."
    )
    stage: ClassVar[int] = 1

    def __init__(self, settings: Settings | None = None, weights: Path | None = None,
                 embedder: MiniLMEmbedder | None = None):
        self.settings = settings or Settings.from_env()
        self.weights_path = Path(weights or self.settings.text_weights or DEFAULT_WEIGHTS)
        self._embedder = embedder
        self._clf: TextClassifier | None = None

    @property
    def model_id(self) -> str:
        return f"minilm-l6-int8 + linear head ({self.weights_path.name})"

    @property
    def embedder(self) -> MiniLMEmbedder:
        if self._embedder is None:
            self._embedder = shared_embedder(settings=self.settings)
        return self._embedder

    @property
    def classifier(self) -> TextClassifier:
        if self._clf is None:
            self._clf = TextClassifier(self.weights_path)
        return self._clf

    def warmup(self) -> None:
        self.classifier
        self.embedder.embed(["warm up"])

    def accepts(self, turn: TurnInput) -> bool:
        return turn.spoken_text() is not None

    def _analyze(self, turn: TurnInput) -> EmotionEvidence:
        text = turn.spoken_text()
        if text is None:
            raise ExpertError("no text or transcript to analyse")
        if not any(ch.isalpha() for ch in text):
            raise ExpertError("the text has no words (only punctuation, digits or symbols)")
        source = "text" if turn.text and turn.text.strip() else "transcript"
        clf = self.classifier
        context = [t.text for t in turn.context[-clf.context_k:]] if clf.context_k else []
        embs = self.embedder.embed([text, *context])
        ctx = context_vector(embs[1:] if context else None, self.embedder.dim)
        proba = clf.predict_proba(build_features(embs[0], ctx, text)[None, :])[0]
        dist = {label: float(p) for label, p in zip(LABELS, proba)}
        warnings: list[str] = []
        confidence = float(proba.max())
        if non_english_share(text) > 0.3:
            warnings.append("text looks non-English; the text expert was trained on English (MELD)")
            confidence *= 0.3
        if len(text.split()) <= 1:
            confidence *= 0.7  # one word carries little
        cues = readable_cues(text)
        if context:
            cues.append(Cue(name="dialogue context used", value=f"{len(context)} previous turn(s)"))
        return EmotionEvidence(
            id=new_id("text"), modality="text" if source == "text" else "transcript",
            expert=self.name, model_id=self.model_id, distribution=dist,
            confidence=min(max(confidence, 0.0), 1.0), cues=cues, warnings=warnings,
            extra={"source": source, "chars": len(text)},
        )
