import pytest

from emotion_agent.agent.fusion import fuse
from emotion_agent.tools.evidence import EmotionEvidence, TranscriptInfo


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


# ---- learned late fusion ---------------------------------------------------------------------
import numpy as np  # noqa: E402

from emotion_agent.agent import fusion as fusion_mod  # noqa: E402
from emotion_agent.agent.recall import MemoryRecall, RecalledTurn  # noqa: E402
from emotion_agent.tools.evidence import LABELS  # noqa: E402


def _weights(path, k=2, bias_label="sadness", version=fusion_mod.FEATURE_VERSION):
    n_feat = len(fusion_mod.fusion_features(np.full(7, 1 / 7), [], k, version=version))
    coef = np.zeros((7, n_feat))
    coef[:, :7] = np.eye(7)  # follow the text distribution...
    intercept = np.zeros(7)
    intercept[LABELS.index(bias_label)] = 0.5  # ...with a small prior shift
    np.savez(path, mean=np.zeros(n_feat), scale=np.ones(n_feat), coef=coef, intercept=intercept,
             context_k=np.int64(k), labels=np.array(LABELS), temperature=np.float64(1.0),
             **({"feature_version": np.int64(version)} if version > 1 else {}))
    return path


def test_learned_falls_back_clearly_without_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(fusion_mod, "LEARNED_WEIGHTS", tmp_path / "missing.npz")
    f = fuse([ev("text", {"anger": 0.8, "neutral": 0.2}, 0.8, "t")], policy="learned")
    assert f.label == "anger" and f.policy == "learned->weighted"
    assert any("weights not found" in w for w in f.warnings)


def test_learned_applies_weights_and_uses_previous_turns(tmp_path, monkeypatch):
    monkeypatch.setattr(fusion_mod, "LEARNED_WEIGHTS", _weights(tmp_path / "fusion_learned.npz"))
    text = ev("text", {"joy": 0.6, "neutral": 0.4}, 0.6, "t")
    f = fuse([text], policy="learned")
    assert f.policy == "learned" and f.label == "joy" and f.contributions == {"text": 1.0}
    assert sum(f.distribution.values()) == pytest.approx(1.0)
    prev = MemoryRecall(previous=[RecalledTurn(id="c:0", conversation_id="c", turn_index=0, text="x",
                                               label="anger", confidence=0.9)])
    feats = fusion_mod.fusion_features(np.array([text.distribution[k] for k in LABELS]),
                                       fusion_mod.previous_distributions(prev), 2)
    assert feats[7 + LABELS.index("anger")] == pytest.approx(0.9)  # pseudo-distribution of a remembered turn
    # other modalities are late-fused with the learned text view
    f2 = fuse([text, ev("vision", {"joy": 0.9, "neutral": 0.1}, 0.9, "v")], recall=prev, policy="learned")
    assert f2.label == "joy" and set(f2.contributions) == {"text", "vision"}


def test_learned_without_text_evidence_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(fusion_mod, "LEARNED_WEIGHTS", _weights(tmp_path / "fusion_learned.npz"))
    f = fuse([ev("audio", {"fear": 0.7, "neutral": 0.3}, 0.7, "a")], policy="learned")
    assert f.label == "fear" and f.policy == "learned->weighted" and f.warnings


def _recall(*turns):
    return MemoryRecall(previous=[RecalledTurn(id=f"c:{i}", conversation_id="c", turn_index=i, text="x", speaker=s,
                                               label=lab, confidence=0.8) for i, (s, lab) in enumerate(turns)])


def test_speaker_and_position_features():
    text = np.full(7, 1 / 7)
    rec = _recall(("Ross", "anger"), ("Rachel", "joy"))
    prev, spk = fusion_mod.previous_distributions(rec), fusion_mod.previous_speakers(rec)
    n1 = len(fusion_mod.fusion_features(text, [], 3, version=1))
    same = fusion_mod.fusion_features(text, prev, 3, prev_speakers=spk, speaker="rachel", position=5)[n1:]
    other = fusion_mod.fusion_features(text, prev, 3, prev_speakers=spk, speaker="Ross", position=5)[n1:]
    assert same[0] == 0.0 and other[0] == 1.0  # speaker change flag (case-insensitive names)
    assert np.argmax(same[1:8]) == LABELS.index("joy") and same[8] == 1.0  # the speaker's own last turn
    assert np.argmax(other[1:8]) == LABELS.index("anger") and other[8] == 1.0
    assert same[9] == pytest.approx(5 / fusion_mod.POSITION_CAP)
    unknown = fusion_mod.fusion_features(text, prev, 3, prev_speakers=spk, speaker=None, position=None)[n1:]
    assert unknown[0] == 0.0 and unknown[8] == 0.0 and unknown[9] == 0.0
    assert not fusion_mod.fusion_features(text, prev, 0, prev_speakers=spk, speaker="Ross", position=5)[n1:].any()


def test_turn_reaches_the_learned_fusion_and_old_or_broken_weights_are_handled(tmp_path, monkeypatch):
    from emotion_agent.tools.base import TurnInput

    # v1 file (no feature_version, fewer columns) still loads and predicts
    monkeypatch.setattr(fusion_mod, "LEARNED_WEIGHTS", _weights(tmp_path / "v1.npz", version=1))
    n1 = len(fusion_mod.fusion_features(np.full(7, 1 / 7), [], 2, version=1))
    assert fusion_mod.load_learned().feature_version == 1 and fusion_mod.load_learned().coef.shape[1] == n1
    assert fuse([ev("text", {"joy": 0.7, "neutral": 0.3}, 0.7, "t")], policy="learned").label == "joy"
    # v2 weights that only look at "the same speaker's last turn": the speaker decides the label
    n2 = len(fusion_mod.fusion_features(np.full(7, 1 / 7), [], 2))
    coef = np.zeros((7, n2))
    coef[:, n1 + 1:n1 + 8] = 10 * np.eye(7)
    path = tmp_path / "v2.npz"
    np.savez(path, mean=np.zeros(n2), scale=np.ones(n2), coef=coef, intercept=np.zeros(7), context_k=np.int64(2),
             labels=np.array(LABELS), feature_version=np.int64(2))
    monkeypatch.setattr(fusion_mod, "LEARNED_WEIGHTS", path)
    rec = _recall(("Ross", "anger"), ("Rachel", "joy"))
    text = [ev("text", {"neutral": 1.0}, 0.5, "t")]
    assert fuse(text, rec, policy="learned", turn=TurnInput(text="hi", speaker="Ross", turn_index=2)).label == "anger"
    assert fuse(text, rec, policy="learned", turn=TurnInput(text="hi", speaker="Rachel", turn_index=2)).label == "joy"
    # a file whose width does not match its feature set is a clear error, not a silent wrong answer
    np.savez(path, mean=np.zeros(5), scale=np.ones(5), coef=np.zeros((7, 5)), intercept=np.zeros(7),
             context_k=np.int64(2), labels=np.array(LABELS), feature_version=np.int64(2))
    with pytest.raises(ValueError, match="retrain"):
        fusion_mod.load_learned(path)


def test_an_unreliable_transcript_counts_little():
    """German speech through English-only Whisper gave 'Tell us in the link of the ice skunk!' with no warning;
    the transcription expert now flags a low mean log-probability and fusion gives those words a quarter of
    their weight (and a transcript alone a quarter of its confidence)."""
    from emotion_agent.agent.fusion import load_params, modality_weights

    reliabilities = load_params().weights

    def transcribe(reliable):
        return EmotionEvidence(id="transcribe-1", modality="transcript", expert="transcribe", model_id="m",
                               distribution={"neutral": 1.0}, confidence=0.0,
                               transcript=TranscriptInfo(text="x", reliable=reliable))

    words = EmotionEvidence(id="text-1", modality="transcript", expert="text_emotion", model_id="m",
                            distribution={"joy": 0.9, "neutral": 0.1}, confidence=0.9,
                            extra={"context_in_model": True})
    voice = ev("audio", {"anger": 0.7, "joy": 0.3}, 0.7, "a")
    assert modality_weights([transcribe(True)])["transcript"] == reliabilities["transcript"]
    assert modality_weights([transcribe(False)])["transcript"] < reliabilities["transcript"]
    trusted = fuse([transcribe(True), words, voice], policy="learned")
    doubted = fuse([transcribe(False), words, voice], policy="learned")
    assert doubted.contributions["audio"] > trusted.contributions["audio"]
    assert doubted.label == "anger"
    alone = fuse([transcribe(False), words], policy="learned")
    assert alone.confidence < 0.3 < fuse([transcribe(True), words], policy="learned").confidence


def test_fusion_parameters_file_missing_or_malformed_falls_back_to_hand_set(tmp_path):
    from emotion_agent.agent.fusion_params import DEFAULT_WEIGHTS, FusionParamsError, load_params, parse_params

    missing = load_params(tmp_path / "none.json")
    assert missing.weights == DEFAULT_WEIGHTS and "not found" in missing.source
    bad = tmp_path / "bad.json"
    bad.write_text('{"weights": {"audio": -1}}')
    assert "unreadable" in load_params(bad).source and load_params(bad).weights == DEFAULT_WEIGHTS
    with pytest.raises(FusionParamsError):
        parse_params({"weights": {"smell": 1.0}}, "x")
    good = tmp_path / "good.json"
    good.write_text('{"weights": {"audio": 2.0}, "informative_kl": 0.2, "unreliable_transcript_scale": 0.1}')
    learned = load_params(good)
    assert learned.weights["audio"] == 2.0 and learned.weights["text"] == 1.0 and learned.informative_kl == 0.2
    # the rule follows the parameters: a louder voice weight moves the fused label toward the voice
    words = ev("transcript", {"joy": 0.6, "neutral": 0.4}, 0.6, "t")
    voice = ev("audio", {"anger": 0.6, "neutral": 0.4}, 0.6, "a")
    from emotion_agent.agent.fusion import weighted_fusion
    quiet = weighted_fusion([words, voice], params=parse_params({"weights": {"audio": 0.2}}, "x"))
    loud = weighted_fusion([words, voice], params=parse_params({"weights": {"audio": 5.0}}, "x"))
    assert quiet.label == "joy" and loud.label == "anger"


def test_shipped_learned_parameters_keep_clear_words_above_a_sure_acted_voice():
    """The learned file (training/train_modality_weights.py) is what fusion uses; with it a sure voice still beats
    lexically neutral carrier words, and clear words still beat a sure voice head trained on acted speech."""
    from emotion_agent.agent.fusion import load_params, weighted_fusion
    from emotion_agent.tools.evidence import LABELS

    params = load_params()
    assert params.source.startswith("learned"), params.source
    assert params.weights["audio"] <= params.weights["transcript"]
    rest = (1 - 0.7) / (len(LABELS) - 1)
    voice = ev("audio", {k: rest for k in LABELS} | {"anger": 0.7}, 0.35, "a")
    carrier = ev("transcript", {"neutral": 0.6, "joy": 0.15, "surprise": 0.1, "anger": 0.1, "sadness": 0.05},
                 0.6, "t")
    clear = ev("transcript", {"joy": 0.9, "neutral": 0.1}, 0.9, "t")
    assert weighted_fusion([carrier, voice], params=params).label == "anger"
    assert weighted_fusion([clear, voice], params=params).label == "joy"


# -- fusion says what it does (issue 21, point 4) -------------------------------------------------------------------


def test_every_policy_is_a_fusion_name_and_back():
    import typing

    from emotion_agent.agent.state import TurnOptions
    from emotion_agent.tools.settings import FusionName

    assert set(typing.get_args(FusionName)) == set(fusion_mod.POLICIES)
    assert TurnOptions(fusion="learned_noctx").fusion == "learned_noctx"


def test_context_in_text_model_reads_no_weights_file(tmp_path, monkeypatch):
    monkeypatch.setattr(fusion_mod, "LEARNED_WEIGHTS", tmp_path / "missing.npz")
    monkeypatch.setattr(fusion_mod, "load_learned", lambda path=None: pytest.fail("weights file was read"))
    text = ev("text", {"joy": 0.7, "neutral": 0.3}, 0.7, "t").model_copy(update={"extra": {"context_in_model": True}})
    f = fuse([text], policy="learned")
    assert f.policy == "learned(context in text model)" and f.label == "joy" and not f.warnings
    f2 = fuse([text], policy="learned_noctx")
    assert f2.policy == "learned_noctx(context in text model)"


def test_learned_noctx_names_its_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(fusion_mod, "LEARNED_NOCTX_WEIGHTS", tmp_path / "missing.npz")
    f = fuse([ev("text", {"anger": 0.8, "neutral": 0.2}, 0.8, "t")], policy="learned_noctx")
    assert f.policy == "learned_noctx->weighted" and any("weights not found" in w for w in f.warnings)


def test_the_one_softmax_matches_its_definition():
    from emotion_agent.tools.softmax import softmax

    z = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]])
    p = softmax(z, 2.0)
    assert p[0] == pytest.approx(np.exp(z[0] / 2) / np.exp(z[0] / 2).sum())
    assert p[1] == pytest.approx([0.5, 0.5, 0.0])  # stable for large logits
    with pytest.raises(ValueError):
        softmax(z, 0.0)
