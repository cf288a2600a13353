import pytest

from agent.fusion import fuse
from tools.evidence import EmotionEvidence


def ev(modality, dist, conf, id_):
    return EmotionEvidence(id=id_, modality=modality, expert=f"{modality}_x", model_id="m", distribution=dist,
                           confidence=conf)


def test_single_expert_label_passes_through():
    f = fuse([ev("text", {"anger": 0.8, "neutral": 0.2}, 0.8, "t")])
    assert f.label == "anger" and f.contributions == {"text": 1.0}


def test_zero_confidence_evidence_is_ignored():
    f = fuse([ev("text", {"joy": 0.9, "neutral": 0.1}, 0.9, "t"), ev("vision", {"fear": 1.0}, 0.0, "v")])
    assert f.label == "joy" and "v" not in f.used


def test_confident_modalities_outvote_a_weak_one():
    f = fuse([ev("text", {"neutral": 0.55, "joy": 0.45}, 0.3, "t"),
              ev("audio", {"joy": 0.9, "neutral": 0.1}, 0.9, "a"),
              ev("vision", {"joy": 0.8, "neutral": 0.2}, 0.9, "v")])
    assert f.label == "joy"
    assert sum(f.contributions.values()) == pytest.approx(1.0, abs=1e-3)
    assert f.contributions["audio"] > f.contributions["text"]


def test_no_evidence_gives_zero_confidence_neutral_with_warning():
    f = fuse([])
    assert f.label == "neutral" and f.confidence == 0.0 and f.warnings


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError):
        fuse([], policy="nope")
