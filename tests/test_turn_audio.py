"""One decode and one prosody computation per audio/video turn, shared by every audio expert."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import pytest

from emotion_agent.tools.base import TurnInput, TurnMemo
from emotion_agent.tools.settings import Settings

RAVDESS_CLIP = "speech/ravdess/03-01-05-02-01-01-17.flac"  # angry, "Kids are talking by the door"
MELD_VIDEO = "meld/media/train_dia1_utt0.mp4"


def test_memo_computes_once_across_copies_and_threads():
    turn = TurnInput(text="hi")
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 42

    copy = turn.model_copy(update={"transcript": "hello"})
    threads = [threading.Thread(target=lambda t=t: t.derived("k", compute)) for t in (turn, copy) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert turn.derived("k", compute) == 42 and len(calls) == 1
    assert TurnInput(text="hi").derived("k", lambda: 7) == 7  # a new turn starts empty


def test_memo_reraises_the_first_error():
    memo, calls = TurnMemo(), []

    def boom():
        calls.append(1)
        raise ValueError("bad clip")

    for _ in range(2):
        with pytest.raises(ValueError, match="bad clip"):
            memo.get("k", boom)
    assert len(calls) == 1


def _count_calls(monkeypatch, module_name: str, func_name: str) -> list[int]:
    """Wrap ``module.func`` in every loaded emotion_agent module that imported it; return the call log."""
    import importlib

    original = getattr(importlib.import_module(module_name), func_name)
    calls: list[int] = []

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    for name, mod in list(sys.modules.items()):
        if name.startswith("emotion_agent") and getattr(mod, func_name, None) is original:
            monkeypatch.setattr(mod, func_name, counting)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("relative", [RAVDESS_CLIP, MELD_VIDEO])
def test_one_decode_and_one_prosody_per_turn_through_the_agent(relative, tmp_path, monkeypatch):
    from emotion_agent import EmotionAgent, make_turn

    data = Settings.from_env().data_dir
    src = data / relative
    if not src.is_file():
        pytest.skip(f"{src} not found")
    clip = tmp_path / Path(relative).name  # a fresh path: no decode cached from another test
    shutil.copy(src, clip)
    settings = Settings.from_env(memory_dir=tmp_path / "mem", chroma_url=None, llm_url=None)
    agent = EmotionAgent(settings)
    import emotion_agent.tools.turn_audio  # noqa: F401 - loaded so its imports are counted too

    loads = _count_calls(monkeypatch, "emotion_agent.tools.media", "load_audio")
    measures = _count_calls(monkeypatch, "emotion_agent.tools.prosody", "prosody")
    kind = "video" if clip.suffix == ".mp4" else "audio"
    result = agent.analyze(make_turn(**{kind: str(clip)}), explain=False)
    experts = {e.expert for e in result.evidence}
    assert {"transcribe", "speech_emotion"} <= experts, experts
    assert len(loads) == 1 and len(measures) == 1, (len(loads), len(measures))
