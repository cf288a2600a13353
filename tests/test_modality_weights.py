"""The fusion-parameter search (training/train_modality_weights.py) on small synthetic co-occurring readings."""

from emotion_agent.agent.fusion import weighted_fusion
from emotion_agent.training.train_modality_weights import Clip, _ev, balanced, search
from emotion_agent.tools.evidence import LABELS, TranscriptInfo


def clip(i: int, corpus: str, gold: str, words: dict, voice: dict, reliable: bool = True) -> Clip:
    asr = _ev("transcript", "transcribe", {"neutral": 1.0}, 0.0, transcript=TranscriptInfo(reliable=reliable))
    return Clip(f"c{i}", corpus, i % 2, gold, [asr, _ev("transcript", "text_emotion", words, max(words.values())),
                                               _ev("audio", "speech_emotion", voice, max(voice.values()) * 0.5)])


def test_search_learns_that_a_sure_voice_beats_carrier_words_and_garbled_transcripts_count_little():
    carrier = {"neutral": 0.55, "joy": 0.15, "surprise": 0.1, "anger": 0.1, "sadness": 0.1}
    garbled_joy = {"joy": 0.8, "neutral": 0.2}
    clips = []
    for i, gold in enumerate(["anger", "sadness", "fear", "joy"] * 5):
        clips.append(clip(i, "acted", gold, carrier, {gold: 0.55, "neutral": 0.45}))
        unsure_voice = {k: 0.1 for k in LABELS} | {"neutral": 0.2, gold: 0.3}  # sums to 1 for gold != neutral
        clips.append(clip(100 + i, "foreign", gold, garbled_joy, unsure_voice, reliable=False))
    params, (acc, _) = search(clips, vision=0.5)
    assert acc == 1.0, params
    hand_acc, _ = balanced(clips, params.__class__())
    assert hand_acc < 1.0  # the hand-set values lose some of these: the search has something to learn
    assert all(weighted_fusion(c.evidence, params=params).label == c.gold for c in clips)
