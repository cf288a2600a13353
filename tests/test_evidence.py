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


# -- typed fields (issue 21, point 1) -------------------------------------------------------------------------------


def _ev(**fields):
    from emotion_agent.tools.evidence import EmotionEvidence, uniform

    return EmotionEvidence(id="x-1", modality="transcript", expert="transcribe", model_id="m",
                           distribution=uniform(), confidence=0.0, **fields)


def test_a_misspelt_evidence_field_is_refused():
    import pydantic

    with pytest.raises(pydantic.ValidationError):
        _ev(transcrpt={"text": "hi"})
    with pytest.raises(pydantic.ValidationError):
        _ev(transcript={"text": "hi", "reliabel": False})


def test_old_extra_keys_of_stored_records_load_onto_typed_fields():
    old = _ev().model_dump(mode="json") | {"extra": {
        "transcript": "hello there", "transcript_reliable": False, "mean_logprob": -1.4, "no_speech": True,
        "detection": "padded", "attributions": [{"word": "hello", "weight": 0.2}], "attributions_toward": "joy",
        "language": "en"}}
    from emotion_agent.tools.evidence import EmotionEvidence

    ev = EmotionEvidence.model_validate(old)
    assert ev.transcript is not None and ev.transcript.text == "hello there"
    assert ev.transcript.reliable is False and ev.transcript.mean_logprob == -1.4
    assert ev.no_speech is True and ev.detection == "padded" and ev.attributions_toward == "joy"
    assert ev.attributions is not None and ev.attributions[0].word == "hello"
    assert ev.extra == {"language": "en"}
    again = EmotionEvidence.model_validate(ev.model_dump(mode="json"))  # the new form round-trips
    assert (again.transcript, again.no_speech, again.detection, again.attributions, again.extra) == (
        ev.transcript, ev.no_speech, ev.detection, ev.attributions, ev.extra)


def test_fusion_reads_the_typed_transcript_reliability():
    from emotion_agent.agent.fusion import transcript_unreliable
    from emotion_agent.tools.evidence import TranscriptInfo

    assert transcript_unreliable([_ev(transcript=TranscriptInfo(text="hi", reliable=False))])
    assert not transcript_unreliable([_ev(transcript=TranscriptInfo(text="hi", reliable=True))])
    assert not transcript_unreliable([_ev(extra={"reliable": False})])  # an untyped key no longer counts
