"""faster-whisper's thread count follows EMOTION_AGENT_ASR_THREADS (a Ray actor sets its CPU share)."""

import os

from emotion_agent.tools.transcribe import cpu_threads


def test_asr_threads_follow_the_pinned_share(monkeypatch):
    monkeypatch.setenv("EMOTION_AGENT_ASR_THREADS", "1")
    assert cpu_threads() == 1
    monkeypatch.setenv("EMOTION_AGENT_ASR_THREADS", "3")
    assert cpu_threads() == 3


def test_asr_threads_default_to_the_cpu_count(monkeypatch):
    monkeypatch.delenv("EMOTION_AGENT_ASR_THREADS", raising=False)
    assert cpu_threads() == max(1, min(os.cpu_count() or 1, 4))
    monkeypatch.setenv("EMOTION_AGENT_ASR_THREADS", "zero")  # not a count: ignored
    assert cpu_threads() == max(1, min(os.cpu_count() or 1, 4))
