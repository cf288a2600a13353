"""Utterances from a live audio stream: Silero VAD (faster-whisper's bundled model) run chunk by chunk.

:class:`StreamingVad` keeps Silero's recurrent state and its 64-sample context between chunks, so the
speech probabilities of a stream fed in pieces are the ones the whole clip gets in one call (checked in
the tests). :class:`UtteranceSegmenter` turns those probabilities into utterances, with the hysteresis of
faster-whisper's ``get_speech_timestamps`` (speech starts at ``threshold``, stops below ``threshold - 0.15``):

* an utterance starts at the first speech window (with ``pad_ms`` of audio before it),
* it ends after ``end_silence_ms`` of silence (its audio keeps ``pad_ms`` after the last speech),
* it is cut when it reaches ``max_utterance_s`` (the next one starts at once if the speech goes on),
* one shorter than ``min_speech_ms`` of speech is dropped (a click, a cough).

No model download: the ONNX file ships inside the faster-whisper wheel. One ONNX session is shared by
every stream (its state is passed in and out, so streams never mix).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000
WINDOW = 512  # samples per Silero decision (32 ms)
CONTEXT = 64  # samples of the previous window the model sees


def vad_session():
    """The shared Silero ONNX session (faster-whisper caches the model: loaded once per process)."""
    from emotion_agent.tools.openmp import import_ctranslate2

    import_ctranslate2()  # before faster-whisper loads it: OpenMP threads that sleep when idle
    from faster_whisper.vad import get_vad_model

    return get_vad_model().session


class StreamingVad:
    """Silero speech probabilities for audio fed in chunks of any size (one per 512-sample window)."""

    def __init__(self) -> None:
        self._session = vad_session()
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._rest = np.zeros(0, dtype=np.float32)

    def feed(self, audio: np.ndarray) -> np.ndarray:
        """Probabilities of the complete windows now available (the remainder waits for the next chunk)."""
        x = np.concatenate([self._rest, np.asarray(audio, dtype=np.float32)])
        n = len(x) // WINDOW
        self._rest = x[n * WINDOW:]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        windows = x[: n * WINDOW].reshape(n, WINDOW)
        contexts = np.concatenate([self._context[None], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1))
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)


@dataclass
class Utterance:
    """One utterance cut from the stream: its audio and where it lies in the stream (seconds)."""

    index: int
    audio: np.ndarray
    start_s: float
    #: where the speech stopped (the last speech window's end), before the trailing pad and silence
    speech_end_s: float
    #: why it ended: ``silence``, ``max_length`` (forced cut) or ``end_of_stream``
    reason: str


@dataclass
class SegmenterConfig:
    """Segmentation knobs (the service fills them from ``Settings``)."""

    threshold: float = 0.5
    end_silence_ms: int = 500
    min_speech_ms: int = 250
    pad_ms: int = 200
    max_utterance_s: float = 15.0


@dataclass
class UtteranceSegmenter:
    """Cuts a 16 kHz float32 stream into :class:`Utterance` s with :class:`StreamingVad`."""

    config: SegmenterConfig = field(default_factory=SegmenterConfig)
    vad: StreamingVad = field(default_factory=StreamingVad)

    def __post_init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)  # fed audio not yet judged by the VAD (< 1 window)
        self._judged = 0  # samples judged so far (stream position of the next window)
        self._pre = np.zeros(0, dtype=np.float32)  # recent audio kept for the leading pad
        self._buf: list[np.ndarray] = []  # the open utterance's audio
        self._start = 0  # stream sample where the open utterance starts
        self._last_speech = 0  # stream sample where its last speech window ended
        self._speech_samples = 0
        self._silence = 0
        self._active = False
        self._count = 0

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is open."""
        return self._active

    @property
    def open_index(self) -> int:
        """The index the open (or next) utterance gets."""
        return self._count

    @property
    def open_audio(self) -> np.ndarray:
        """The open utterance's audio so far (empty when none is open): what a partial transcript reads."""
        return np.concatenate(self._buf) if self._active and self._buf else np.zeros(0, dtype=np.float32)

    @property
    def open_speech_s(self) -> float:
        """Seconds of speech in the open utterance."""
        return self._speech_samples / SAMPLE_RATE if self._active else 0.0

    def feed(self, audio: np.ndarray) -> list[Utterance]:
        """Feed audio; the utterances that ended inside it (usually none or one)."""
        x = np.asarray(audio, dtype=np.float32)
        probs = self.vad.feed(x)
        self._pending = np.concatenate([self._pending, x])
        done: list[Utterance] = []
        cfg = self.config
        neg = max(cfg.threshold - 0.15, 0.01)
        pad = int(cfg.pad_ms * SAMPLE_RATE / 1000)
        for p in probs:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            pos = self._judged
            self._judged += WINDOW
            if not self._active:
                if p >= cfg.threshold:
                    self._active, self._buf = True, [self._pre[-pad:] if pad else self._pre[:0], window]
                    self._start = pos - len(self._buf[0])
                    self._last_speech, self._speech_samples, self._silence = pos + WINDOW, WINDOW, 0
                else:
                    self._pre = np.concatenate([self._pre, window])[-max(pad, 1):]
                continue
            self._buf.append(window)
            if p >= cfg.threshold or (p >= neg and self._silence == 0):
                self._last_speech, self._silence = pos + WINDOW, 0
                self._speech_samples += WINDOW
            else:
                self._silence += WINDOW
            if self._silence * 1000 >= cfg.end_silence_ms * SAMPLE_RATE:
                done.extend(self._close("silence", keep_after=pad))
            elif self._judged - self._start >= cfg.max_utterance_s * SAMPLE_RATE:
                done.extend(self._close("max_length", keep_after=None))
        return done

    def flush(self) -> list[Utterance]:
        """End of stream: the open utterance (if it holds enough speech), cut where the audio stops."""
        if not self._active:
            return []
        if len(self._pending):
            self._buf.append(self._pending)
            self._pending = np.zeros(0, dtype=np.float32)
        return self._close("end_of_stream", keep_after=None)

    def _close(self, reason: str, keep_after: int | None) -> list[Utterance]:
        audio = np.concatenate(self._buf)
        if keep_after is not None:  # drop the trailing silence beyond the pad
            audio = audio[: max(0, self._last_speech - self._start + keep_after)]
        speech_ms = self._speech_samples * 1000 / SAMPLE_RATE
        out: list[Utterance] = []
        if speech_ms >= self.config.min_speech_ms:
            out.append(Utterance(index=self._count, audio=audio, start_s=self._start / SAMPLE_RATE,
                                 speech_end_s=self._last_speech / SAMPLE_RATE, reason=reason))
            self._count += 1
        self._active, self._buf, self._speech_samples, self._silence = False, [], 0, 0
        self._pre = audio[-1:][:0]
        return out
