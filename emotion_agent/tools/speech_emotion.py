"""Speech-emotion expert: how something was said (voice), as a distribution over MELD's 7 emotions.

Backends (``Settings.speech_model``):

- ``whisper-head`` (default, offline, real): the packaged Whisper encoder (:mod:`tools.whisper_encoder`, loaded
  once per process) runs over the clip's own speech span (no 30 s padding); hidden states of a middle and the
  last layer are mean/std-pooled over the speech-active frames, prosody (:mod:`tools.prosody`: pitch level and
  range, energy, voicing, tempo) is appended, and a linear softmax head trained by
  ``python -m emotion_agent.training.train_speech_head`` on RAVDESS + EmoDB (``tools/weights/speech_head.npz``, applied in numpy,
  no pickle) gives the distribution.
- any other value: a Hugging Face audio-classification checkpoint (Wav2vec2 / HuBERT / WavLM ...) by local path
  or hub id through ``transformers.AutoModelForAudioClassification``; its labels are mapped to MELD's 7 by a
  configurable mapping (:data:`DEFAULT_LABEL_MAP`, the ``label_map`` argument, or the environment variable
  ``EMOTION_AGENT_SPEECH_LABEL_MAP`` holding JSON or a path to a JSON file). MELD labels the checkpoint lacks
  get no mass and the evidence says so.

Silence gives low-confidence uniform evidence with a warning (never a guess); empty, unreadable, non-audio
or over-long (``Settings.max_audio_s``) files raise :class:`~tools.base.ExpertError`.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emotion_agent.tools.resources import WEIGHTS_DIR
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.base import Expert, ExpertError, TurnInput
from emotion_agent.tools.evidence import LABELS, Cue, EmotionEvidence, new_id, uniform
from emotion_agent.tools.media import SAMPLE_RATE
from emotion_agent.tools.prosody import Prosody, readable_cues
from emotion_agent.tools.turn_audio import turn_audio
from emotion_agent.tools.softmax import softmax

DEFAULT_WEIGHTS = WEIGHTS_DIR / "speech_head.npz"
MIN_SPEECH_S = 0.3
#: The head was trained on acted lab speech (RAVDESS, EmoDB); on TV dialogue (MELD clips) it was right on 2 of 6
#: clips with top probabilities of 0.5-0.8, so its confidence is halved: fusion should not over-trust it.
ACTED_DOMAIN_FACTOR = 0.5

#: Common speech-emotion label names → MELD labels (None: no MELD counterpart, mass dropped).
DEFAULT_LABEL_MAP: dict[str, str | None] = {
    "neutral": "neutral", "neu": "neutral", "calm": "neutral", "n": "neutral",
    "happy": "joy", "hap": "joy", "happiness": "joy", "joy": "joy", "excited": "joy", "exc": "joy", "h": "joy",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise", "su": "surprise",
    "angry": "anger", "ang": "anger", "anger": "anger", "a": "anger",
    "sad": "sadness", "sadness": "sadness", "s": "sadness",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust", "d": "disgust",
    "fear": "fear", "fearful": "fear", "fea": "fear", "f": "fear",
    "boredom": None, "bored": None, "frustrated": None, "fru": None, "other": None, "oth": None, "unk": None,
    "contempt": None,
}

_HF: dict[str, tuple[Any, Any]] = {}
_HF_LOCK = threading.Lock()
_HEADS: dict[str, "SpeechHead"] = {}

POOLS = ("mean_all", "mean_active", "std_active")


def all_layer_pools(states, prosody) -> np.ndarray:
    """(n_layers, 3, d): mean over all frames, mean and std over speech-active frames, per layer."""
    mask = prosody.active_mask(states.frame_s) if prosody is not None else None
    if mask is not None and getattr(states, "offset_frames", 0):
        mask = mask[states.offset_frames:]
    out = []
    for i in range(len(states.layers)):
        h = states.layers[i]
        m = None
        if mask is not None:
            m = np.zeros(len(h), bool)
            m[: min(len(h), len(mask))] = mask[: len(h)]
            if m.sum() < 2:
                m = None
        ha = h[m] if m is not None else h
        out.append(np.stack([h.mean(0), ha.mean(0), ha.std(0)]))
    return np.stack(out).astype(np.float32)


def select_pools(enc: np.ndarray, layers: list[int], n_layers: int, pools: tuple[str, ...]) -> np.ndarray:
    """Flatten the chosen (layer, pool) blocks of ``all_layer_pools`` output(s) into one feature vector."""
    enc = enc[None] if enc.ndim == 3 else enc
    idx = [POOLS.index(p) for p in pools]
    return np.concatenate([enc[:, li, pi] for li in layers for pi in idx], axis=1)


def clip_encoder_pools(sw, audio: np.ndarray, pros) -> np.ndarray:
    """Encode the clip's speech span once and pool every layer (shared by training and the expert)."""
    from emotion_agent.tools.whisper_encoder import SR, speech_span

    span = speech_span(audio, pros.active)
    states = sw.encode_layers(span)
    # align the 10 ms activity mask with the span's start
    offset = 0
    if span is not audio and pros.active is not None:
        idx = np.nonzero(pros.active)[0]
        start = max(0, int(idx[0] * (SR // 100) - 0.15 * SR))
        offset = int(round(start / SR / states.frame_s))
    states.offset_frames = offset
    return all_layer_pools(states, pros)


class SpeechHead:
    """The trained head: standardise → linear → softmax; knows which encoder/layers/pools it was trained on."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise ExpertError(f"speech-emotion head not found at {path}; train it with "
                              "`python -m emotion_agent.training.train_speech_head`")
        d = np.load(path, allow_pickle=False)
        labels = [str(x) for x in d["labels"]]
        if labels != list(LABELS):
            raise ExpertError(f"{path}: label order {labels} differs from MELD's {list(LABELS)}")
        self.mean, self.scale = d["mean"].astype(np.float32), d["scale"].astype(np.float32)
        self.coef, self.intercept = d["coef"].astype(np.float32), d["intercept"].astype(np.float32)
        self.encoder = str(d["encoder"])
        self.layers = [int(v) for v in d["layers"]]
        self.pools = tuple(str(v) for v in d["pools"])
        self.n_layers = int(d["n_layers"])
        self.temperature = float(d["temperature"]) if "temperature" in d else 1.0
        self.trained_on = str(d["trained_on"]) if "trained_on" in d else "?"
        self.cv_accuracy = float(d["cv_ravdess_accuracy"]) if "cv_ravdess_accuracy" in d else None

    def features(self, pools: np.ndarray, pros: Prosody) -> np.ndarray:
        """The head's input: its selected encoder pools followed by the prosody features."""
        return np.concatenate([select_pools(pools, self.layers, self.n_layers, self.pools)[0], pros.features])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities over LABELS: standardise, linear layer, softmax with temperature."""
        return softmax(((x - self.mean) / self.scale) @ self.coef.T + self.intercept, self.temperature)


def load_head(path: Path) -> SpeechHead:
    """The :class:`SpeechHead` at ``path``, loaded once per process."""
    key = str(Path(path).resolve())
    if key not in _HEADS:
        _HEADS[key] = SpeechHead(Path(path))
    return _HEADS[key]


def label_map_from_env() -> dict[str, str | None] | None:
    """Label map from ``EMOTION_AGENT_SPEECH_LABEL_MAP`` (JSON or a JSON file); None if unset."""
    raw = os.environ.get("EMOTION_AGENT_SPEECH_LABEL_MAP")
    if not raw:
        return None
    try:
        text = Path(raw).read_text() if not raw.lstrip().startswith("{") else raw
        mapping = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ExpertError(f"EMOTION_AGENT_SPEECH_LABEL_MAP is not valid JSON or a JSON file: {exc}") from None
    bad = {v for v in mapping.values() if v is not None and v not in LABELS}
    if bad:
        raise ExpertError(f"EMOTION_AGENT_SPEECH_LABEL_MAP maps to unknown labels {sorted(bad)}")
    return mapping


def _hf_model(spec: str):
    with _HF_LOCK:
        if spec not in _HF:
            from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

            local = Path(spec).expanduser().exists()
            try:
                fe = AutoFeatureExtractor.from_pretrained(spec, local_files_only=local)
                model = AutoModelForAudioClassification.from_pretrained(spec, local_files_only=local).eval()
            except Exception as exc:  # noqa: BLE001 - user-facing configuration error
                raise ExpertError(f"cannot load audio-classification checkpoint '{spec}': "
                                  f"{type(exc).__name__}: {str(exc)[:200]}") from None
            _HF[spec] = (fe, model)
        return _HF[spec]


def _confidence_reading(p: float) -> str:
    return "clear" if p >= 0.6 else "moderate" if p >= 0.35 else "weak"


class SpeechEmotionExpert(Expert):
    """Emotion in the voice: Whisper encoder + prosody into a trained head, or an HF model."""

    name: ClassVar[str] = "speech_emotion"
    modality = "audio"
    description: ClassVar[str] = (
        "Emotion in the voice of this turn's audio or video (tone, pitch, loudness, tempo), independent of the "
        "words. Returns a distribution over 7 emotions plus prosodic cues."
    )
    stage: ClassVar[int] = 0

    def __init__(self, settings: Settings | None = None, weights: Path | None = None,
                 label_map: dict[str, str | None] | None = None):
        self.settings = settings or Settings.from_env()
        self.spec = self.settings.speech_model
        self.backend = "whisper-head" if self.spec in ("whisper-head", "", None) else "hf"
        self.weights_path = Path(weights) if weights else DEFAULT_WEIGHTS
        self._label_map = label_map

    @property
    def label_map(self) -> dict[str, str | None]:
        """Model labels to MELD labels: defaults, then the environment's, then the given map."""
        mapping = dict(DEFAULT_LABEL_MAP)
        mapping.update({k.lower(): v for k, v in (label_map_from_env() or {}).items()})
        mapping.update({k.lower(): v for k, v in (self._label_map or {}).items()})
        return mapping

    @property
    def head(self) -> SpeechHead:
        """The trained speech head (loaded once per process)."""
        return load_head(self.weights_path)

    @property
    def model_id(self) -> str:
        """The HF checkpoint, or the encoder and head file behind the readings."""
        if self.backend == "hf":
            return f"hf-audio-classification:{self.spec}"
        try:
            return f"{self.head.encoder} encoder + speech head ({self.weights_path.name})"
        except ExpertError:
            return f"whisper encoder + speech head ({self.weights_path.name})"

    def warmup(self) -> None:
        """Load the HF checkpoint, or the Whisper encoder the head was trained on."""
        if self.backend == "hf":
            _hf_model(self.spec)
        else:
            from emotion_agent.tools.whisper_encoder import shared_whisper

            shared_whisper(self.head.encoder, self.settings, need_decoder=False)

    def accepts(self, turn: TurnInput) -> bool:
        """Whether the turn has audio (a file or a video's track)."""
        return turn.has_audio()

    def _analyze(self, turn: TurnInput) -> EmotionEvidence:
        shared = turn_audio(turn, self.settings.max_audio_s)
        path, audio, duration, pros = shared.path, shared.audio, shared.duration_s, shared.prosody
        cues = [Cue(name=n, value=v, detail=d) for n, v, d in readable_cues(pros)]
        extra: dict[str, Any] = {"duration_s": round(duration, 2), "backend": self.backend,
                                 "prosody": pros.as_dict()}
        if pros.silent:
            return EmotionEvidence(
                id=new_id("speech"), modality="audio", expert=self.name, model_id=self.model_id,
                distribution=uniform(), label="neutral", confidence=0.0, cues=cues,
                warnings=[f"no speech: {path.name} is silent; no emotion can be read from the voice"], extra=extra)
        vad = shared.speech
        assert vad is not None  # computed for every clip that is not silent
        extra["speech_s"] = vad.speech_s
        if not vad.has_speech:
            return EmotionEvidence(
                id=new_id("speech"), modality="audio", expert=self.name, model_id=self.model_id,
                distribution=uniform(), label="neutral", confidence=0.0, cues=cues,
                warnings=[f"no speech detected in {path.name} (tone, music, noise or silence?); "
                          "no emotion can be read from the voice"], extra=extra, no_speech=True)
        warnings: list[str] = []
        if self.backend == "hf":
            dist, conf, more = self._run_hf(audio)
            warnings += more
        else:
            dist, conf = self._run_head(audio, pros, extra)
        if pros.active_s < MIN_SPEECH_S * 2:
            warnings.append(f"very little speech ({pros.active_s:.1f} s): the voice reading is unreliable")
            conf *= 0.5
        top = sorted(dist.items(), key=lambda kv: -kv[1])
        cues.insert(0, Cue(name="voice sounds", value=top[0][0],
                           detail=f"p={top[0][1]:.2f}, {_confidence_reading(top[0][1])}; next {top[1][0]} "
                                  f"{top[1][1]:.2f}"))
        return EmotionEvidence(
            id=new_id("speech"), modality="audio", expert=self.name, model_id=self.model_id, distribution=dist,
            confidence=float(min(max(conf, 0.0), 1.0)), cues=cues, warnings=warnings, extra=extra)

    def _run_head(self, audio: np.ndarray, pros: Prosody, extra: dict[str, Any]) -> tuple[dict[str, float], float]:
        from emotion_agent.tools.whisper_encoder import shared_whisper

        head = self.head
        try:
            sw = shared_whisper(head.encoder, self.settings, need_decoder=False)
        except Exception as exc:  # noqa: BLE001 - missing packaged model → clear message
            raise ExpertError(f"speech-emotion encoder '{head.encoder}' unavailable: {exc}") from None
        pools = clip_encoder_pools(sw, audio, pros)
        proba = head.predict_proba(head.features(pools, pros)[None, :])[0]
        extra["trained_on"] = head.trained_on
        if head.cv_accuracy is not None:
            extra["speaker_independent_accuracy"] = head.cv_accuracy
        extra["confidence_note"] = (f"top probability {proba.max():.2f} x {ACTED_DOMAIN_FACTOR} "
                                    "(head trained on acted speech; weaker on natural dialogue)")
        return {label: float(p) for label, p in zip(LABELS, proba)}, float(proba.max()) * ACTED_DOMAIN_FACTOR

    def _run_hf(self, audio: np.ndarray) -> tuple[dict[str, float], float, list[str]]:
        import torch

        fe, model = _hf_model(self.spec)
        sr = int(getattr(fe, "sampling_rate", SAMPLE_RATE) or SAMPLE_RATE)
        if sr != SAMPLE_RATE:
            import soxr

            audio = soxr.resample(audio, SAMPLE_RATE, sr).astype(np.float32)
        inputs = fe(audio, sampling_rate=sr, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**inputs).logits[0].float()
        probs = torch.softmax(logits, dim=-1).numpy()
        id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
        mapping = self.label_map
        dist = {label: 0.0 for label in LABELS}
        dropped, unmapped, no_counterpart = 0.0, [], []
        for i, p in enumerate(probs):
            name = id2label.get(i, f"LABEL_{i}")
            target = mapping.get(name.lower(), "__missing__")
            if target in LABELS:
                dist[target] += float(p)
            else:
                dropped += float(p)
                (unmapped if target == "__missing__" else no_counterpart).append(name)
        covered = {mapping.get(n.lower()) for n in id2label.values()} & set(LABELS)
        warnings: list[str] = []
        lacking = [lab for lab in LABELS if lab not in covered]
        if lacking:
            warnings.append(f"checkpoint has no class for {', '.join(lacking)}: those get no probability")
        if unmapped:
            warnings.append(f"checkpoint classes {', '.join(unmapped)} are not mapped to MELD labels "
                            "(set EMOTION_AGENT_SPEECH_LABEL_MAP); their probability was dropped")
        if no_counterpart:
            warnings.append(f"checkpoint classes {', '.join(no_counterpart)} have no MELD counterpart; "
                            "their probability was dropped")
        if dropped > 0:
            extra_note = f"{dropped:.2f} of the checkpoint's probability fell on classes without a MELD label"
            warnings.append(extra_note)
        kept = sum(dist.values())
        if kept <= 1e-9:
            raise ExpertError(f"none of the checkpoint's classes ({', '.join(id2label.values())}) map to MELD labels")
        dist = {k: v / kept for k, v in dist.items()}
        return dist, float(max(dist.values()) * kept), warnings
