"""One decode and one prosody computation per audio or video turn, shared by every expert.

The transcription and speech-emotion experts both need the turn's 16 kHz mono audio, its prosody
(:mod:`tools.prosody`) and whether anyone speaks (:mod:`tools.voice_activity`). :func:`turn_audio`
computes them once per turn and keeps the typed :class:`TurnAudio` on the turn (``TurnInput.derived``),
so experts running in parallel get the same object: one ``load_audio`` and one ``prosody`` per turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion_agent.tools.base import ExpertError, TurnInput
from emotion_agent.tools.media import load_audio
from emotion_agent.tools.prosody import Prosody, prosody
from emotion_agent.tools.voice_activity import SpeechPresence, speech_presence


@dataclass(frozen=True)
class TurnAudio:
    """A turn's decoded audio with what every audio expert derives from it."""

    path: Path
    audio: np.ndarray          # float32, mono, 16 kHz
    duration_s: float
    prosody: Prosody
    #: Silero VAD speech presence; None when the clip is silent (nothing to detect).
    speech: SpeechPresence | None


def _compute(path: Path, max_seconds: float) -> TurnAudio:
    audio, duration = load_audio(path, max_seconds, "analyse")
    pros = prosody(audio)
    vad = None if pros.silent else speech_presence(audio)
    return TurnAudio(path=path, audio=audio, duration_s=duration, prosody=pros, speech=vad)


def turn_audio(turn: TurnInput, max_seconds: float) -> TurnAudio:
    """The turn's audio (its audio file, else its video's track), decoded and measured once per turn."""
    source = turn.audio_path or turn.video_path
    if source is None:
        raise ExpertError("this turn has no audio")
    path = Path(source)
    return turn.derived(("turn_audio", str(path), float(max_seconds)), lambda: _compute(path, max_seconds))
