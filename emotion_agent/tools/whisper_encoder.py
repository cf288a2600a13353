"""One Whisper model per process, shared by the audio experts.

The packaged Whisper weights are CT2 files; :mod:`tools.whisper_convert` turns them (once, cached) into an
openai-whisper ``.pt`` checkpoint, loaded here into ``whisper.model.Whisper`` (torch, CPU) **once per model
spec** (module-level cache). That one model object serves:

- the speech-emotion head: :meth:`SharedWhisper.encode_layers` runs the encoder over the clip's **own**
  frames (no 30 s zero padding: positional embeddings are sliced to the clip's length), returns the
  hidden states of every layer, and caches the result per clip (LRU keyed by the audio bytes), so a
  second caller on the same clip pays nothing;
- the ``whisper`` (openai-whisper) ASR backend of :mod:`tools.transcribe` (same ``model`` object, no
  second copy of the weights).

Why the faster-whisper ASR path does not reuse these encoder states: Whisper's decoder was trained on
30 s windows. Fed the encoder output of the clip's own frames (whisper.cpp's "audio_ctx" trick) it loops
("Hey! Hey! Hey! ..."; measured on the MELD clips, both tiny.en and base), so ASR keeps the padded
30 s window while the emotion head uses the cheap own-frame pass (~5-10x fewer frames for a 4 s clip).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from emotion_agent.tools.settings import Settings

SR = 16_000
N_FRAMES_MAX = 3000  # one Whisper window: 30 s of 10 ms mel frames
#: torch intra-op threads while the Whisper encoder/decoder runs. 1 by default: on the shared 2-core machine
#: (load 6-10) a 4 s base encoder pass took 1.2 CPU-s / ~4 s wall with 2 threads (OpenMP spin-waiting)
#: against 0.2 CPU-s / ~1 s with 1 thread. Override with EMOTION_AGENT_AUDIO_TORCH_THREADS.
TORCH_THREADS = int(os.environ.get("EMOTION_AGENT_AUDIO_TORCH_THREADS", "1") or 1)


@contextlib.contextmanager
def torch_threads(n: int = TORCH_THREADS) -> Iterator[None]:
    """Run a block with ``n`` torch threads, restoring the process setting afterwards."""
    import torch

    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and n != before:
            torch.set_num_threads(before)

_MODELS: dict[str, "SharedWhisper"] = {}
_LOCK = threading.Lock()


@dataclass
class EncoderStates:
    """Hidden states of every encoder layer (index 0 = after block 1; last = after ``ln_post``)."""

    layers: list[np.ndarray]  # each (T, d), float32; T = encoder frames (20 ms each)
    frame_s: float = 0.02
    offset_frames: int = 0    # where frame 0 lies in the caller's clip (set by callers that cut the clip)

    def pooled(self, layer: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) over frames, optionally only the frames where ``mask`` is true."""
        h = self.layers[layer]
        if mask is not None and mask.sum() >= 2:
            h = h[mask[: len(h)]] if len(mask) >= len(h) else h[np.pad(mask, (0, len(h) - len(mask)))]
        return h.mean(axis=0), h.std(axis=0)


class SharedWhisper:
    """An openai-whisper model (torch, CPU) converted from the packaged CT2 weights, loaded once."""

    def __init__(self, spec: str, settings: Settings | None = None, threads: int | None = None,
                 need_decoder: bool = True):
        import torch

        from emotion_agent.tools.whisper_convert import converted_checkpoint, load_openai_whisper

        self.spec = spec
        self.settings = settings or Settings.from_env()
        self.checkpoint = converted_checkpoint(spec, self.settings)
        if threads:
            torch.set_num_threads(threads)
        self.model = load_openai_whisper(self.checkpoint)
        self.has_decoder = need_decoder
        if not need_decoder:  # the emotion head needs only the encoder: free the decoder (~185 MB for base)
            self.model.decoder = None
        self.dims = self.model.dims
        self.n_layers = self.dims.n_audio_layer
        self._cache: OrderedDict[tuple, EncoderStates] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def is_multilingual(self) -> bool:
        """Whether the model has Whisper's multilingual vocabulary (not an ``.en`` model)."""
        return self.dims.n_vocab >= 51865

    def log_mel(self, audio: np.ndarray):
        """Log-mel spectrogram of 16 kHz ``audio`` with the model's number of mel bins."""
        import torch
        import whisper

        return whisper.log_mel_spectrogram(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
                                           n_mels=self.dims.n_mels)

    def encode_layers(self, audio: np.ndarray) -> EncoderStates:
        """Encoder states of every layer over the clip's own frames (30 s windows for longer clips).

        Callers pass the speech span of the clip (see :func:`speech_span`), not a padded window.
        """
        key = (hashlib.blake2b(np.ascontiguousarray(audio, dtype=np.float32).tobytes(), digest_size=16).digest(),)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        mel = self.log_mel(audio)  # (n_mels, T)
        outs: list[list[np.ndarray]] = []
        for start in range(0, max(mel.shape[1], 1), N_FRAMES_MAX):
            chunk = mel[:, start:start + N_FRAMES_MAX]
            if chunk.shape[1] < 2:
                continue
            outs.append(self._encode_chunk(chunk))
        if not outs:
            raise ValueError("audio too short to encode")
        layers = [np.concatenate([o[i] for o in outs], axis=0) for i in range(len(outs[0]))]
        states = EncoderStates(layers)
        with self._lock:
            self._cache[key] = states
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        return states

    def _encode_chunk(self, mel) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        enc = self.model.encoder
        n = mel.shape[1] - (mel.shape[1] % 2)  # conv2 has stride 2
        x = mel[None, :, :n]
        with torch.inference_mode(), torch_threads():
            h = F.gelu(enc.conv1(x))
            h = F.gelu(enc.conv2(h)).permute(0, 2, 1)
            h = h + enc.positional_embedding[: h.shape[1]]
            layers = []
            for i, block in enumerate(enc.blocks):
                h = block(h)
                layers.append(enc.ln_post(h) if i == len(enc.blocks) - 1 else h)
        return [t[0].float().numpy() for t in layers]


def speech_span(audio: np.ndarray, active: np.ndarray | None, margin_s: float = 0.15) -> np.ndarray:
    """The clip cut to its speech-active span (10 ms ``active`` frames from :mod:`tools.prosody`) ± a margin.

    Leading/trailing silence carries no emotion and costs encoder time (RAVDESS clips have ~1 s at each end).
    """
    if active is None or not active.any():
        return audio
    idx = np.nonzero(active)[0]
    hop = SR // 100
    a = max(0, int(idx[0] * hop - margin_s * SR))
    b = min(len(audio), int((idx[-1] + 1) * hop + 400 + margin_s * SR))
    return audio[a:b] if b - a >= SR // 5 else audio


def shared_whisper(spec: str, settings: Settings | None = None, need_decoder: bool = True) -> SharedWhisper:
    """The process-wide :class:`SharedWhisper` for ``spec`` (registry name, CT2 folder or ``.pt``).

    ``need_decoder=False`` (speech-emotion head) loads the encoder only; a later caller that needs the decoder
    (the openai-whisper ASR backend) replaces it with the full model, which then serves both.
    """
    with _LOCK:
        model = _MODELS.get(spec)
        if model is None or (need_decoder and not model.has_decoder):
            model = SharedWhisper(spec, settings, need_decoder=need_decoder)
            _MODELS[spec] = model
        return model
