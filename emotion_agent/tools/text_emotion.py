"""Text expert: emotion of an utterance from its words (and the dialogue so far).

Two models, chosen by ``settings.text_model``:

* ``mpnet-lora`` (default): all-mpnet-base-v2 fine-tuned with LoRA on MELD train, EmoBERTa-style input
  (past turns with speaker names, a separator, then "Speaker: utterance"); chosen on MELD dev
  (``python -m emotion_agent.training.train_text_finetune``). The adapter + head ship in the package
  (``tools/weights/text_mpnet_lora.safetensors``, a few MB); the base comes from the packaged asset or
  any folder / hub id in ``settings.text_base``.
* ``minilm-head``: a linear classifier over frozen MiniLM int8 embeddings of the utterance, a recency-
  weighted embedding of the previous turns and surface features (``training/train_text_expert.py``),
  applied in numpy.

``settings.text_mode`` says how the dialogue is read (the evidence's ``text_mode`` names it): ``online`` (the
default) and ``offline`` put the dialogue model (:mod:`tools.dialogue_text`) over the fine-tuned mpnet's
features of every turn, past turns only or past and future; ``utterance`` is the expert alone. Without the
dialogue model's weights (or with the MiniLM head) the expert runs alone, with a warning that says so.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np

from emotion_agent.tools.resources import WEIGHTS_DIR
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.base import Expert, ExpertError, TurnInput
from emotion_agent.tools.dialogue_text import (ConversationLog, DialogueModel, FeatureMemo, dialogue_distributions,
                                               shared_dialogue_model)
from emotion_agent.tools.embedding import MiniLMEmbedder, shared_embedder
from emotion_agent.tools.words import weighable
from emotion_agent.tools.evidence import LABELS, Cue, EmotionEvidence, WordWeight, new_id
from emotion_agent.tools.text_features import build_features, context_vector, non_english_share, readable_cues
from emotion_agent.tools.softmax import softmax

log = logging.getLogger(__name__)
DEFAULT_WEIGHTS = WEIGHTS_DIR / "text_emotion.npz"
DEFAULT_ADAPTER = WEIGHTS_DIR / "text_mpnet_lora.safetensors"
#: Longer utterances get no word attributions (one classifier pass per word).
MAX_ATTRIBUTION_WORDS = 48
#: At most this many words are weighed (the first content words and negations): on 2 cores one mpnet pass of a
#: turn with its context costs ~0.2-0.8 s, so a 22-word turn took 19 s before content words alone were weighed.
MAX_WEIGHED_WORDS = 12
_MPNET: dict[tuple[str, str], "MpnetTextModel"] = {}
_MPNET_LOCK = threading.Lock()


class MpnetTextModel:
    """The fine-tuned mpnet classifier (adapters merged), with its dev-fitted softmax temperature."""

    def __init__(self, base: str, adapter: Path):
        from emotion_agent.tools.mpnet_classifier import load_finetuned

        if not adapter.is_file():
            raise ExpertError(f"fine-tuned text adapter not found at {adapter}; train it with `python -m "
                              "emotion_agent.training.train_text_finetune --export`, set EMOTION_AGENT_TEXT_ADAPTER, "
                              "or use EMOTION_AGENT_TEXT_MODEL=minilm-head")
        self.tokenizer, self.model, self.meta = load_finetuned(base, adapter, len(LABELS))
        labels = self.meta.get("labels", ",".join(LABELS)).split(",")
        if labels != list(LABELS):
            raise ExpertError(f"{adapter}: label order {labels} differs from MELD's {list(LABELS)}")
        self.temperature = float(self.meta.get("temperature", 1.0))
        self.lock = threading.Lock()
        self.memo = FeatureMemo()

    def features(self, inputs: list[tuple[list[tuple[str | None, str]], str | None, str]]
                 ) -> tuple[np.ndarray, np.ndarray, int]:
        """Mean-pooled features and raw logits of each (past turns, speaker, words) input, from the memo or
        one batched pass for the missing ones; plus how many were encoded (the dialogue model's input)."""
        return self.memo.lookup(inputs, self._encode_features)

    def _encode_features(self, inputs: list[tuple[list[tuple[str | None, str]], str | None, str]]
                         ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from emotion_agent.tools.mpnet_classifier import collate, encode
        from emotion_agent.tools.whisper_encoder import torch_threads

        rows = [encode(self.tokenizer, [(s or "", t) for s, t in past], speaker, text, self.model.cfg.max_len)
                for past, speaker, text in inputs]
        with self.lock, torch_threads(), torch.inference_mode():
            pooled, logits = self.model.pooled_and_logits(**collate(rows, self.tokenizer.pad_token_id))
        return pooled.numpy().astype(np.float32), logits.numpy().astype(np.float32)

    def predict_proba(self, context: list[tuple[str | None, str]], speaker: str | None, text: str) -> np.ndarray:
        """Distribution over LABELS for ``text`` said by ``speaker`` after ``context`` (oldest first)."""
        return self.predict_many(context, speaker, [text])[0]

    def predict_many(self, context: list[tuple[str | None, str]], speaker: str | None,
                     texts: list[str]) -> np.ndarray:
        """Distributions for several versions of the current utterance in one batch (same context)."""
        import torch

        from emotion_agent.tools.mpnet_classifier import collate, encode
        from emotion_agent.tools.whisper_encoder import torch_threads

        past = [(s or "", t) for s, t in context]
        rows = [encode(self.tokenizer, past, speaker, t, self.model.cfg.max_len) for t in texts]
        with self.lock, torch_threads(), torch.inference_mode():
            logits = self.model(**collate(rows, self.tokenizer.pad_token_id)).numpy().astype(np.float64)
        return softmax(logits, self.temperature)


def shared_mpnet(base: str, adapter: Path, settings: Settings) -> MpnetTextModel:
    """One loaded model per (base, adapter) per process (experts, eval workers and the service share it)."""
    from emotion_agent.tools.assets import REGISTRY, AssetError, ensure
    from emotion_agent.tools.registry import import_asset_modules

    import_asset_modules()
    key = (base, str(adapter))
    with _MPNET_LOCK:
        if key not in _MPNET:
            if base in REGISTRY:
                try:
                    folder = str(ensure(base, settings, quiet=True))
                except AssetError as exc:
                    raise ExpertError(str(exc)) from None
            else:
                folder = base  # a local folder or a hub id (needs the network)
            _MPNET[key] = MpnetTextModel(folder, adapter)
        return _MPNET[key]


class TextClassifier:
    """The trained head: standardise → linear → softmax (temperature-scaled)."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise ExpertError(
                f"text expert weights not found at {path}; train them with "
                "`python -m emotion_agent.training.train_text_expert` or point EMOTION_AGENT_TEXT_WEIGHTS at a file"
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
        """Distribution over LABELS for feature rows (standardise, linear, temperature softmax)."""
        return softmax(((features - self.mean) / self.scale) @ self.coef.T + self.intercept, self.temperature)


class TextEmotionExpert(Expert):
    """Emotion of the words (fine-tuned mpnet with the dialogue as context, or the MiniLM head)."""
    name: ClassVar[str] = "text_emotion"
    modality = "text"
    description: ClassVar[str] = (
        "Emotion of the words said in this turn (given text, or the transcript when only audio was given), "
        "using the previous turns of the conversation as context. Returns a distribution over 7 emotions."
    )
    stage: ClassVar[int] = 1

    def __init__(self, settings: Settings | None = None, weights: Path | None = None,
                 embedder: MiniLMEmbedder | None = None, model: str | None = None):
        self.settings = settings or Settings.from_env()
        self.kind = model or self.settings.text_model
        if self.kind == "mpnet-lora" and self.settings.text_adapter is None and not DEFAULT_ADAPTER.is_file():
            self.kind = "minilm-head"  # this build ships no fine-tuned adapter: the MiniLM head is the text expert
        self.weights_path = Path(weights or self.settings.text_weights or DEFAULT_WEIGHTS)
        self.adapter_path = Path(self.settings.text_adapter or DEFAULT_ADAPTER)
        self._embedder = embedder
        self._clf: TextClassifier | None = None
        self.mode = self.settings.text_mode
        self.log = ConversationLog()
        self._dialogue: tuple[DialogueModel | None, str | None] | None = None

    @property
    def model_id(self) -> str:
        """Which text model runs."""
        if self.kind == "mpnet-lora":
            base = f"{self.settings.text_base} + LoRA ({self.adapter_path.name})"
            model = self.dialogue_model
            return f"{base} + {model.model_id}" if model is not None else base
        return f"minilm-l6-int8 + linear head ({self.weights_path.name})"

    @property
    def dialogue_model(self) -> DialogueModel | None:
        """The dialogue model of this expert's mode (None: utterance mode, the MiniLM head, or no weights)."""
        return self._dialogue_and_reason()[0]

    def _dialogue_and_reason(self) -> tuple[DialogueModel | None, str | None]:
        if self._dialogue is None:
            if self.mode == "utterance":
                self._dialogue = (None, None)
            elif self.kind != "mpnet-lora":
                self._dialogue = (None, f"the {self.mode} dialogue model needs the mpnet text expert, not "
                                        f"{self.kind}")
            else:
                self._dialogue = shared_dialogue_model(self.settings, self.mode)
            if self._dialogue[1]:
                log.warning("text mode %s unavailable: %s; the text expert runs alone", self.mode,
                            self._dialogue[1])
        return self._dialogue

    @property
    def text_mode(self) -> str:
        """The mode that labels turns: the setting's, or ``utterance`` when its dialogue model is missing."""
        return self.mode if self.dialogue_model is not None else "utterance"

    @property
    def fingerprint_path(self) -> Path:
        """The weights file that decides this expert's output (for caches)."""
        return self.adapter_path if self.kind == "mpnet-lora" else self.weights_path

    @property
    def context_turns(self) -> int | None:
        """How many previous turns this expert reads (None: every turn it is given, the dialogue modes)."""
        if self.dialogue_model is not None:
            return None
        if self.kind == "mpnet-lora":
            return int(self.mpnet.model.cfg.context_turns)
        return int(self.classifier.context_k)

    @property
    def mpnet(self) -> MpnetTextModel:
        """The fine-tuned model (loaded on first use)."""
        return shared_mpnet(self.settings.text_base, self.adapter_path, self.settings)

    @property
    def embedder(self) -> MiniLMEmbedder:
        """The MiniLM embedder (loaded on first use)."""
        if self._embedder is None:
            self._embedder = shared_embedder(settings=self.settings)
        return self._embedder

    @property
    def classifier(self) -> TextClassifier:
        """The MiniLM head's classifier (loaded on first use)."""
        if self._clf is None:
            self._clf = TextClassifier(self.weights_path)
        return self._clf

    def warmup(self) -> None:
        """Load the model now."""
        if self.kind == "mpnet-lora":
            self.mpnet.predict_proba([], None, "warm up")
            self.dialogue_model  # loads the dialogue model of this mode (or logs why there is none)
            return
        self.classifier
        self.embedder.embed(["warm up"])

    def accepts(self, turn: TurnInput) -> bool:
        """Whether the turn has words (text or a transcript)."""
        return turn.spoken_text() is not None

    def _distributions(self, turn: TurnInput, texts: list[str]) -> np.ndarray:
        """This expert's distributions for several versions of the turn's utterance (same context)."""
        if self.kind == "mpnet-lora" and self.dialogue_model is not None:
            return self._dialogue_view(turn, texts)[0]
        if self.kind == "mpnet-lora":
            model = self.mpnet
            k = model.model.cfg.context_turns
            return model.predict_many([(t.speaker, t.text) for t in turn.context[-k:]] if k else [],
                                      turn.speaker, texts)
        clf = self.classifier
        context = [t.text for t in turn.context[-clf.context_k:]] if clf.context_k else []
        embs = self.embedder.embed([*texts, *context])
        ctx = context_vector(embs[len(texts):] if context else None, self.embedder.dim)
        feats = np.stack([build_features(embs[i], ctx, t) for i, t in enumerate(texts)])
        return clf.predict_proba(feats)

    def _dialogue_view(self, turn: TurnInput, texts: list[str]) -> tuple[np.ndarray, dict[str, object]]:
        """The dialogue model's distributions for versions of this turn's words, and what it read."""
        model, mpnet = self.dialogue_model, self.mpnet
        assert model is not None
        future = [(t.speaker, t.text) for t in turn.future] if self.mode == "offline" else []
        return dialogue_distributions(model, self.log.past(turn), turn.speaker, texts, future,
                                      int(mpnet.model.cfg.context_turns), mpnet.features)

    def attributions(self, turn: TurnInput, label: str, max_words: int = MAX_ATTRIBUTION_WORDS) -> list[WordWeight]:
        """Occlusion over this expert's own classifier: how much ``label``'s probability drops when each word
        is removed (positive = the word pushed toward ``label``). Faithful by construction; one batched pass."""
        text = turn.spoken_text()
        if not text:
            return []
        words = text.split()
        if not words or len(words) > max_words:
            return []
        # only content words and negations are weighed (each costs one pass of the classifier; function words
        # are never quoted); the others get weight 0
        weigh = [i for i, w in enumerate(words) if weighable(w)][:MAX_WEIGHED_WORDS]
        variants = [text] + [" ".join(words[:i] + words[i + 1:]) or "." for i in weigh]
        probs = self._distributions(turn, variants)[:, LABELS.index(label)]
        drop = {i: float(probs[0] - probs[j + 1]) for j, i in enumerate(weigh)}
        return [WordWeight(word=w, weight=round(drop.get(i, 0.0), 4)) for i, w in enumerate(words)]

    def _analyze(self, turn: TurnInput) -> EmotionEvidence:
        text = turn.spoken_text()
        if text is None:
            raise ExpertError("no text or transcript to analyse")
        if not any(ch.isalpha() for ch in text):
            raise ExpertError("the text has no words (only punctuation, digits or symbols)")
        source = "text" if turn.text and turn.text.strip() else "transcript"
        dialogue_info: dict[str, object] = {}
        if self.kind == "mpnet-lora" and self.dialogue_model is not None:
            k = self.mpnet.model.cfg.context_turns
            context = [t.text for t in turn.context[-k:]] if k else []
            probs, dialogue_info = self._dialogue_view(turn, [text])
            proba = probs[0]
            self.log.record(turn, text)
        elif self.kind == "mpnet-lora":
            model = self.mpnet
            k = model.model.cfg.context_turns
            context = [t.text for t in turn.context[-k:]] if k else []
            proba = model.predict_proba([(t.speaker, t.text) for t in turn.context[-k:]] if k else [],
                                        turn.speaker, text)
        else:
            clf = self.classifier
            context = [t.text for t in turn.context[-clf.context_k:]] if clf.context_k else []
            embs = self.embedder.embed([text, *context])
            ctx = context_vector(embs[1:] if context else None, self.embedder.dim)
            proba = clf.predict_proba(build_features(embs[0], ctx, text)[None, :])[0]
        dist = {label: float(p) for label, p in zip(LABELS, proba)}
        warnings: list[str] = []
        reason = self._dialogue_and_reason()[1]
        if reason:
            warnings.append(f"text mode '{self.mode}' unavailable ({reason}); the text expert alone labelled this "
                            "turn (mode 'utterance')")
        confidence = float(proba.max())
        if non_english_share(text) > 0.3:
            warnings.append("text looks non-English; the text expert was trained on English (MELD)")
            confidence *= 0.3
        if len(text.split()) <= 1:
            confidence *= 0.7  # one word carries little
        cues = readable_cues(text)
        if context:
            cues.append(Cue(name="dialogue context used", value=f"{len(context)} previous turn(s)"))
        if dialogue_info:
            seen = f"{dialogue_info['past_turns']} past turn(s)"
            if self.mode == "offline":
                seen += f", {dialogue_info['future_turns']} later turn(s)"
            cues.append(Cue(name=f"dialogue model ({self.mode})", value=seen))
        return EmotionEvidence(
            id=new_id("text"), modality="text" if source == "text" else "transcript",
            expert=self.name, model_id=self.model_id, distribution=dist,
            confidence=min(max(confidence, 0.0), 1.0), cues=cues, warnings=warnings, text_mode=self.text_mode,
            extra={"source": source, "chars": len(text), "context_in_model": self.kind == "mpnet-lora",
                   **({"dialogue": dialogue_info} if dialogue_info else {})},
        )
