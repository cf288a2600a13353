"""Whisper's short input window: loop trimming, the degenerate-output guard, and a real clip in both modes."""

from __future__ import annotations

import pytest

from emotion_agent.tools.short_window_asr import degenerate, max_tokens, trim_repeat
from emotion_agent.tools.transcribe import TranscribeExpert, wer
from emotion_agent.tools.base import TurnInput


def test_trim_repeat_cuts_a_restarted_sentence():
    assert trim_repeat("Dogs are sitting by the door. Dogs are sittin'") == ("Dogs are sitting by the door.", True)
    assert trim_repeat("Dogs are sitting by the door. Dogs") == ("Dogs are sitting by the door.", True)
    assert trim_repeat("I know. You are late.") == ("I know. You are late.", False)
    assert trim_repeat("No punctuation here") == ("No punctuation here", False)


def test_degenerate_output_is_named():
    assert degenerate("fine words", 5, max_tokens(3.0), 3.0) is None
    assert "budget" in degenerate("a b c", max_tokens(3.0), max_tokens(3.0), 3.0)
    assert "repeats" in degenerate("video " * 20, 5, 200, 30.0)
    assert "faster than anyone" in degenerate("one two three four five six seven eight", 8, 50, 1.0)


@pytest.mark.slow
def test_fast_and_accurate_modes_on_a_real_clip(data_dir, settings):
    clip = data_dir / "speech" / "ravdess" / "03-01-05-02-01-01-17.flac"  # "Kids are talking by the door"
    turn = TurnInput(audio_path=clip)
    fast = TranscribeExpert(settings.model_copy(update={"asr_mode": "fast"})).analyze(turn)
    accurate = TranscribeExpert(settings.model_copy(update={"asr_mode": "accurate"})).analyze(turn)
    assert fast.model_id.endswith(" fast") and not accurate.model_id.endswith(" fast")
    for ev in (fast, accurate):
        assert wer("Kids are talking by the door", ev.transcript.text) <= 0.34, ev.transcript.text
