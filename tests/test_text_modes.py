"""The text expert's modes on real MELD dialogues with the real models: online never reads later turns, offline
does, the mode reaches the evidence and the fused result, and missing dialogue weights fall back with a warning.
Plus the small pieces (conversation log, feature memo, --context values, dialogue files) as units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotion_agent.tools.base import PriorTurn, TurnInput
from emotion_agent.tools.dialogue_text import ConversationLog, FeatureMemo, dialogue_inputs, find_weights


def _dialogue(data_dir: Path, nth: int = 0, min_turns: int = 6):
    """The ``nth`` MELD dev dialogue with at least ``min_turns`` turns (tests use different ones: the loaded
    model's feature memo is shared by the process)."""
    from emotion_agent.evals.meld import dialogues, load_split

    return [d for _, d in sorted(dialogues(load_split("dev", data_dir)).items()) if len(d) >= min_turns][nth]


def _turn(dia, i: int, *, future: bool = True, cid: str | None = "meld-dev") -> TurnInput:
    return TurnInput(text=dia[i].text, speaker=dia[i].speaker, conversation_id=cid, turn_index=i,
                     context=[PriorTurn(speaker=u.speaker, text=u.text) for u in dia[:i]],
                     future=[PriorTurn(speaker=u.speaker, text=u.text) for u in dia[i + 1:]] if future else [])


def _expert(settings, mode: str, **kw):
    from emotion_agent.tools.text_emotion import TextEmotionExpert

    return TextEmotionExpert(settings.replace(text_mode=mode, **kw))


def _needs_weights(settings, mode: str) -> None:
    if find_weights(settings, mode) is None:
        pytest.fail(f"no {mode} dialogue weights shipped (emotion_agent/tools/weights/text_dialogue_{mode}"
                    ".safetensors)")


@pytest.mark.slow
def test_online_never_reads_later_turns_offline_does(settings, data_dir):
    dia = _dialogue(data_dir)
    _needs_weights(settings, "online")
    online = _expert(settings, "online")
    # the whole dialogue goes through the expert first, so its conversation log holds the later turns too
    for i in range(len(dia)):
        online.analyze(_turn(dia, i))
    again = online.analyze(_turn(dia, 2))  # re-analysed with later turns logged and given as future
    changed = _turn(dia, 2).model_copy(update={"future": [PriorTurn(speaker="X", text="I am so scared!")] * 3})
    fresh = _expert(settings, "online").analyze(_turn(dia, 2, future=False, cid=None))
    assert again.text_mode == "online" and again.extra["dialogue"]["past_turns"] == 2
    assert again.extra["dialogue"]["future_turns"] == 0
    assert again.distribution == pytest.approx(online.analyze(changed).distribution, abs=1e-9)
    assert again.distribution == pytest.approx(fresh.distribution, abs=1e-5)
    _needs_weights(settings, "offline")
    offline = _expert(settings, "offline")
    a, b = offline.analyze(_turn(dia, 2)), offline.analyze(changed)
    assert a.text_mode == "offline" and a.extra["dialogue"]["future_turns"] == len(dia) - 3
    assert not np.allclose(list(a.distribution.values()), list(b.distribution.values()), atol=1e-4)


@pytest.mark.slow
def test_online_reads_the_whole_past_from_its_log_when_memory_gives_the_last_three(settings, data_dir):
    dia = _dialogue(data_dir, nth=1)
    _needs_weights(settings, "online")
    expert = _expert(settings, "online")
    for i in range(5):  # memory hands the expert the last 3 turns, as the graph's recall does
        t = _turn(dia, i, future=False)
        ev = expert.analyze(t.model_copy(update={"context": t.context[-3:]}))
    assert ev.extra["dialogue"]["past_turns"] == 4
    assert ev.extra["dialogue"]["encoded_turns"] == 1  # the past turns' features were kept: one pass per turn
    full = _expert(settings, "online").analyze(_turn(dia, 4, future=False, cid=None))
    assert ev.distribution == pytest.approx(full.distribution, abs=1e-5)


@pytest.mark.slow
def test_the_mode_reaches_the_fused_result_and_the_default_is_online(settings, data_dir):
    from emotion_agent.agent.inputs import make_turn
    from emotion_agent.agent.runtime import EmotionAgent

    dia = _dialogue(data_dir, nth=2)
    _needs_weights(settings, "online")
    assert settings.text_mode == "online"
    agent = EmotionAgent(settings, memory=True)
    for u in dia[:3]:
        result = agent.analyze(make_turn(text=u.text, speaker=u.speaker, conversation_id="modes-1",
                                         settings=settings), explain=False)
    text_ev = next(e for e in result.evidence if e.expert == "text_emotion")
    assert result.text_mode == "online" == text_ev.text_mode
    assert text_ev.extra["dialogue"]["past_turns"] == 2
    assert "dialogue GRU online" in text_ev.model_id
    dumped = result.model_dump(mode="json")
    assert dumped["text_mode"] == "online" and dumped["evidence"][0]["text_mode"] == "online"


@pytest.mark.slow
def test_missing_weights_fall_back_to_the_expert_alone_with_a_warning(settings, data_dir, tmp_path, caplog):
    dia = _dialogue(data_dir, nth=3)
    with caplog.at_level("WARNING"):
        missing = _expert(settings, "online", text_dialogue_weights=tmp_path / "nowhere").analyze(_turn(dia, 3))
    alone = _expert(settings, "utterance").analyze(_turn(dia, 3))
    assert missing.text_mode == "utterance" and alone.text_mode == "utterance"
    assert any("unavailable" in w and "nowhere" in w for w in missing.warnings)
    assert any("text mode online unavailable" in r.getMessage() for r in caplog.records)
    assert missing.distribution == pytest.approx(alone.distribution, abs=1e-9)
    assert "dialogue GRU" not in missing.model_id and not alone.warnings


def test_conversation_log_extends_matching_context_and_never_returns_later_turns():
    log = ConversationLog()
    turns = [("A", "hi"), ("B", "hello"), ("A", "how are you"), ("B", "fine"), ("A", "good")]
    for i, (s, t) in enumerate(turns):
        log.record(TurnInput(text=t, speaker=s, conversation_id="c", turn_index=i), t)
    ctx = [PriorTurn(speaker=s, text=t) for s, t in turns[1:3]]
    assert log.past(TurnInput(text="x", conversation_id="c", turn_index=3, context=ctx)) == turns[:3]
    other = [PriorTurn(speaker="B", text="something else"), ctx[1]]  # memory disagrees: trust the given context
    assert log.past(TurnInput(text="x", conversation_id="c", turn_index=3, context=other)) == \
        [("B", "something else"), turns[2]]
    assert log.past(TurnInput(text="x", conversation_id="c", turn_index=3)) == []  # no context given: none
    assert log.past(TurnInput(text="x", conversation_id="d", turn_index=3, context=ctx)) == turns[1:3]


def test_feature_memo_computes_each_input_once():
    calls: list[int] = []

    def compute(inputs):
        calls.append(len(inputs))
        return np.ones((len(inputs), 4)) * len(calls), np.zeros((len(inputs), 7))

    memo = FeatureMemo(capacity=10)
    rows = dialogue_inputs([("A", "hi"), ("B", "yo"), ("A", "hi")], k=3)
    assert rows[2] == ([("A", "hi"), ("B", "yo")], "A", "hi")
    _, _, n = memo.lookup(rows, compute)
    f, _, m = memo.lookup(rows[:2] + [([], "C", "new")], compute)
    assert (n, m, calls) == (3, 1, [3, 1]) and f[2, 0] == 2.0 and f[0, 0] == 1.0


def test_context_values_and_dialogue_files():
    from emotion_agent.cli.batch import with_dialogue
    from emotion_agent.evals.meld_config import RunConfigError, context_setting

    assert context_setting("online") == (3, "online") and context_setting("offline") == (3, "offline")
    assert context_setting("0") == (0, "utterance") and context_setting(5) == (5, "utterance")
    with pytest.raises(RunConfigError):
        context_setting("sideways")
    items = [("row 2", {"text": "hi", "conversation_id": "c", "speaker": "A"}),
             ("row 3", {"audio": "a.wav", "conversation_id": "c"}),
             ("row 4", {"text": "yo", "conversation_id": "c", "speaker": "B"}),
             ("row 5", {"text": "alone"}), ("row 6", "not JSON")]
    off = dict(with_dialogue(items, "offline"))
    assert off["row 2"]["_context"] == [] and off["row 2"]["_future"] == [("B", "yo")]
    assert off["row 4"]["_context"] == [("A", "hi")] and off["row 4"]["_future"] == []
    assert "_context" not in off["row 3"] and "_context" not in off["row 5"] and off["row 6"] == "not JSON"
    on = dict(with_dialogue(items, "online"))
    assert "_future" not in on["row 2"] and on["row 4"]["_context"] == [("A", "hi")]
