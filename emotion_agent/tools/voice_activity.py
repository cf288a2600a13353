"""Is anyone speaking? Silero VAD (shipped inside faster-whisper) over 16 kHz mono audio.

Run before transcription and the speech-emotion head: tones, music, noise and silence have no
speech, so neither the transcript nor the voice may carry a label for them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
#: Less detected speech than this (seconds) counts as "no speech".
MIN_SPEECH_S = 0.25

_LOCK = threading.Lock()
_CACHE: "OrderedDict[str, SpeechPresence]" = OrderedDict()
_CACHE_MAX = 64


@dataclass(frozen=True)
class SpeechPresence:
    """How much of a clip is speech, by Silero VAD."""

    speech_s: float
    duration_s: float
    segments: int
    available: bool = True

    @property
    def has_speech(self) -> bool:
        """At least :data:`MIN_SPEECH_S` of speech (always true when the VAD is unavailable)."""
        return not self.available or self.speech_s >= MIN_SPEECH_S

    @property
    def ratio(self) -> float:
        """Share of the clip that is speech."""
        return self.speech_s / self.duration_s if self.duration_s > 0 else 0.0


def speech_presence(audio: np.ndarray) -> SpeechPresence:
    """Speech seconds in ``audio`` (16 kHz mono float32); cached by content, so two experts pay once."""
    key = hashlib.blake2b(np.ascontiguousarray(audio, dtype=np.float32).tobytes(), digest_size=16).hexdigest()
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    duration = len(audio) / SAMPLE_RATE
    try:
        from emotion_agent.tools.openmp import import_ctranslate2

        import_ctranslate2()  # faster_whisper imports ctranslate2: load it with passive OpenMP threads
        from faster_whisper.vad import VadOptions, get_speech_timestamps
    except ImportError:  # no VAD installed: say nothing about speech rather than guess
        return SpeechPresence(speech_s=duration, duration_s=duration, segments=0, available=False)
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    x = np.ascontiguousarray(audio / peak if peak > 0 else audio, dtype=np.float32)  # VAD is level-sensitive
    spans = get_speech_timestamps(x, VadOptions(threshold=0.5, min_speech_duration_ms=150), sampling_rate=SAMPLE_RATE)
    speech = sum(s["end"] - s["start"] for s in spans) / SAMPLE_RATE
    out = SpeechPresence(speech_s=round(speech, 3), duration_s=round(duration, 3), segments=len(spans))
    with _LOCK:
        _CACHE[key] = out
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return out
