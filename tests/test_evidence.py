import pytest
from pydantic import ValidationError

from emotion_agent.tools.evidence import LABELS, EmotionEvidence, FusedResult, normalize


def make(dist, **kw):
    return EmotionEvidence(id=kw.pop("id", "t-1"), modality=kw.pop("modality", "text"), expert="x", model_id="m",
                           distribution=dist, confidence=kw.pop("confidence", 0.8), **kw)


def test_distribution_is_normalised_over_all_seven_labels():
    ev = make({"joy": 2.0, "anger": 2.0})
    assert set(ev.distribution) == set(LABELS)
    assert sum(ev.distribution.values()) == pytest.approx(1.0)
    assert ev.distribution["joy"] == pytest.approx(0.5)


def test_label_defaults_to_top_of_distribution():
    assert make({"sadness": 0.7, "neutral": 0.3}).label == "sadness"


def test_unknown_label_rejected():
    with pytest.raises(ValidationError):
        make({"boredom": 1.0})


def test_confidence_must_be_in_unit_interval():
    with pytest.raises(ValidationError):
        make({"joy": 1.0}, confidence=1.5)


def test_degenerate_distribution_becomes_uniform():
    assert normalize({"joy": float("nan")}) == pytest.approx({k: 1 / 7 for k in LABELS})


def test_uninformative_evidence_has_zero_confidence_and_a_warning():
    ev = EmotionEvidence.uninformative(modality="vision", expert="facial_emotion", model_id="m", warning="no face")
    assert ev.confidence == 0.0 and ev.warnings == ["no face"] and ev.low_confidence


def test_fused_result_roundtrips_json():
    ev = make({"anger": 1.0})
    r = FusedResult(label="anger", confidence=0.9, distribution={"anger": 1.0}, evidence=[ev],
                    cited_evidence_ids=[ev.id])
    again = FusedResult.model_validate_json(r.model_dump_json())
    assert again.evidence_by_id()[ev.id].label == "anger"
