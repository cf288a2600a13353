"""The dialogue model at run time: what the text expert's ``online`` and ``offline`` modes need.

- :class:`DialogueModel`: the trained seed ensemble of one mode (``text_dialogue_<mode>.safetensors``), found
  in ``settings.text_dialogue_weights`` (a folder or a file), else in the package, else in
  ``<cache>/text-dialogue`` (where ``training/train_dialogue_model`` writes); :func:`shared_dialogue_model`
  returns it, or None with the reason when no file is there (the expert then runs alone and says so).
- :class:`FeatureMemo`: each utterance's mpnet features and logits, keyed by exactly what the expert reads
  (its past turns, speaker, words), so the turns of a dialogue are encoded once: a live turn costs one mpnet
  pass plus a GRU run over the features already there.
- :class:`ConversationLog`: the turns each conversation had in this process, by turn index. Memory hands
  the expert only its last few turns; when they match the log's tail, the log gives the whole past.

Online mode reads the past only (the log holds turns with a smaller index; future turns are never given);
offline mode adds ``turn.future``, the dialogue's later turns, known when a whole dialogue is analysed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.resources import WEIGHTS_DIR
from emotion_agent.tools.settings import Settings

log = logging.getLogger(__name__)

#: A turn as the expert reads it: (speaker, words).
Turn = tuple[str | None, str]
#: At most this many past turns enter the dialogue model (MELD's longest dialogue has 24 turns).
MAX_PAST_TURNS = 64
_MODELS: dict[tuple[str, str], "DialogueModel"] = {}
_MODELS_LOCK = threading.Lock()


def weights_name(mode: str) -> str:
    """The file name of one mode's weights."""
    return f"text_dialogue_{mode}.safetensors"


def weights_candidates(settings: Settings, mode: str) -> list[Path]:
    """Where one mode's weights are looked for, in order."""
    user = settings.text_dialogue_weights
    if user is not None:
        return [user if user.suffix == ".safetensors" else user / weights_name(mode)]
    return [WEIGHTS_DIR / weights_name(mode), Path(settings.cache_dir) / "text-dialogue" / weights_name(mode)]


def find_weights(settings: Settings, mode: str) -> Path | None:
    """The first weights file of ``mode`` that exists, or None."""
    return next((p for p in weights_candidates(settings, mode) if p.is_file()), None)


class DialogueModel:
    """A seed ensemble of dialogue GRUs of one mode: mean of their temperature-scaled probabilities."""

    def __init__(self, path: Path, mode: str):
        from emotion_agent.tools.dialogue_model import load_ensemble

        self.models, self.meta = load_ensemble(path)
        if self.meta.get("mode") != mode:
            raise ValueError(f"{path} holds the {self.meta.get('mode')} dialogue model, not the {mode} one")
        self.path, self.mode = path, mode
        self.temperature = float(self.meta.get("temperature", 1.0))
        self.sha = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
        self.lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """What runs: mode, ensemble size, file and a content hash (caches key on it)."""
        return f"dialogue GRU {self.mode} x{len(self.models)} ({self.path.name}, {self.sha})"

    def predict(self, feats: np.ndarray, logits: np.ndarray, speakers: Sequence[str | None]) -> np.ndarray:
        """Probabilities (B, T, 7) for B versions of one dialogue: ``feats`` (B, T, F), ``logits`` (B, T, 7)."""
        import torch

        from emotion_agent.tools.dialogue_model import speaker_cues
        from emotion_agent.tools.whisper_encoder import torch_threads

        if self.models[0].proj.in_features == 1:  # trained on the expert's logits and speaker cues only
            feats = np.zeros((*logits.shape[:2], 1), np.float32)
        names = [s or "" for s in speakers]
        cues = np.stack([speaker_cues(names, lg) for lg in logits])
        b, t = logits.shape[:2]
        args = (torch.from_numpy(feats.astype(np.float32)), torch.from_numpy(logits.astype(np.float32)),
                torch.from_numpy(cues), torch.full((b,), t, dtype=torch.long))
        with self.lock, torch_threads(), torch.inference_mode():
            probs = [torch.softmax(m(*args) / self.temperature, -1) for m in self.models]
        return torch.stack(probs).mean(0).numpy().astype(np.float64)


def shared_dialogue_model(settings: Settings, mode: str) -> tuple[DialogueModel | None, str | None]:
    """One loaded model per weights file per process, or (None, why) when there is none to load."""
    path = find_weights(settings, mode)
    if path is None:
        where = " or ".join(str(p) for p in weights_candidates(settings, mode))
        return None, (f"no {mode} dialogue-model weights at {where} (train them with `python -m "
                      "emotion_agent.training.train_dialogue_model` or set EMOTION_AGENT_TEXT_DIALOGUE_WEIGHTS)")
    key = (str(path), mode)
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                _MODELS[key] = DialogueModel(path, mode)
            except (ValueError, KeyError, OSError) as exc:
                return None, f"the {mode} dialogue-model weights at {path} could not be read ({exc})"
        return _MODELS[key], None


def dialogue_inputs(turns: Sequence[Turn], k: int) -> list[tuple[list[Turn], str | None, str]]:
    """What the expert reads for each turn of a dialogue: its ``k`` previous turns, its speaker and words."""
    return [(list(turns[max(0, j - k):j]) if k else [], spk, text) for j, (spk, text) in enumerate(turns)]


class FeatureMemo:
    """A bounded LRU of (features, logits) per expert input; thread-safe."""

    def __init__(self, capacity: int = 8192):
        self.capacity = capacity
        self._data: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(past: Sequence[Turn], speaker: str | None, text: str) -> str:
        """Hash of one expert input."""
        return hashlib.sha1(json.dumps([list(past), speaker, text]).encode()).hexdigest()

    def lookup(self, inputs: Sequence[tuple[list[Turn], str | None, str]],
               compute: Callable[[list[tuple[list[Turn], str | None, str]]], tuple[np.ndarray, np.ndarray]]
               ) -> tuple[np.ndarray, np.ndarray, int]:
        """Features and logits of every input (rows in order), computing the missing ones in one ``compute``
        call; also returns how many were computed."""
        keys = [self.key(*x) for x in inputs]
        with self._lock:
            found = {k: self._data[k] for k in keys if k in self._data}
            for k in found:
                self._data.move_to_end(k)
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            feats, logits = compute([inputs[first[k]] for k in missing])
            new = {k: (feats[i], logits[i]) for i, k in enumerate(missing)}
            found.update(new)
            with self._lock:
                self._data.update(new)
                while len(self._data) > self.capacity:
                    self._data.popitem(last=False)
        return (np.stack([found[k][0] for k in keys]), np.stack([found[k][1] for k in keys]), len(missing))


class ConversationLog:
    """Each conversation's turns seen by this process, by turn index (bounded LRU); thread-safe."""

    def __init__(self, conversations: int = 1024, turns: int = 512):
        self.max_conversations, self.max_turns = conversations, turns
        self._data: OrderedDict[str, dict[int, Turn]] = OrderedDict()
        self._lock = threading.Lock()

    def past(self, turn: TurnInput) -> list[Turn]:
        """The turn's past: the log's turns before ``turn_index`` when their tail is the context the turn was
        given (memory's last few turns), else the given context. Never a turn at or after ``turn_index``."""
        given: list[Turn] = [(t.speaker, t.text) for t in turn.context]
        if not given or turn.conversation_id is None or turn.turn_index is None:
            return given
        with self._lock:
            entries = dict(self._data.get(turn.conversation_id, {}))
        known = [entries[i] for i in sorted(entries) if i < turn.turn_index]
        if len(known) > len(given) and known[len(known) - len(given):] == given:
            return known
        return given

    def record(self, turn: TurnInput, text: str) -> None:
        """Remember the turn (by its index) for the conversation's later turns."""
        if turn.conversation_id is None or turn.turn_index is None:
            return
        with self._lock:
            entries = self._data.setdefault(turn.conversation_id, {})
            self._data.move_to_end(turn.conversation_id)
            entries[turn.turn_index] = (turn.speaker, text)
            while len(entries) > self.max_turns:
                del entries[min(entries)]
            while len(self._data) > self.max_conversations:
                self._data.popitem(last=False)


def dialogue_distributions(model: DialogueModel, past: list[Turn], speaker: str | None, texts: list[str],
                           future: list[Turn], k: int, features: Callable[..., tuple[np.ndarray, np.ndarray, int]]
                           ) -> tuple[np.ndarray, dict[str, Any]]:
    """The dialogue model's distributions at the current turn for several versions of its words (``texts[0]``
    is the real one; the others are attribution variants: only the current turn changes), and what was read.

    ``features(inputs)`` gives the expert's features and logits per input (see :meth:`FeatureMemo.lookup`)."""
    past = past[-MAX_PAST_TURNS:]
    seq = [*past, (speaker, texts[0]), *future]
    pos = len(past)
    inputs = dialogue_inputs(seq, k)
    variants = [(inputs[pos][0], speaker, t) for t in texts[1:]]
    feats, logits, encoded = features(inputs + variants)
    n = len(seq)
    f = np.repeat(feats[None, :n], len(texts), 0)
    lg = np.repeat(logits[None, :n], len(texts), 0)
    f[1:, pos], lg[1:, pos] = feats[n:], logits[n:]
    probs = model.predict(f, lg, [s for s, _ in seq])[:, pos]
    return probs, {"past_turns": len(past), "future_turns": len(future), "encoded_turns": encoded}
