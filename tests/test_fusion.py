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


# ---- learned late fusion ---------------------------------------------------------------------
import numpy as np  # noqa: E402

from agent import fusion as fusion_mod  # noqa: E402
from agent.memory import MemoryRecall, RecalledTurn  # noqa: E402
from tools.evidence import LABELS  # noqa: E402


def _weights(path, k=2, bias_label="sadness"):
    n_feat = len(fusion_mod.fusion_features(np.full(7, 1 / 7), [], k))
    coef = np.zeros((7, n_feat))
    coef[:, :7] = np.eye(7)  # follow the text distribution...
    intercept = np.zeros(7)
    intercept[LABELS.index(bias_label)] = 0.5  # ...with a small prior shift
    np.savez(path, mean=np.zeros(n_feat), scale=np.ones(n_feat), coef=coef, intercept=intercept,
             context_k=np.int64(k), labels=np.array(LABELS), temperature=np.float64(1.0))
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
