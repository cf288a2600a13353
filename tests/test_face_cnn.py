"""The face CNN's export and runtime agree; missing weights give a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_agent.tools.base import ExpertError
from emotion_agent.tools.face_model import CnnFaceModel


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ExpertError, match="face CNN weights missing"):
        CnnFaceModel(tmp_path / "absent.onnx")


def test_onnx_export_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from emotion_agent.training.train_face_cnn import FaceNet, export_onnx, logits_of

    torch.manual_seed(0)
    net = FaceNet(8).eval()
    export_onnx(net, 1.5, tmp_path / "face.onnx")
    model = CnnFaceModel(tmp_path / "face.onnx", num_threads=1)
    gray = np.random.default_rng(0).integers(0, 256, (3, 60, 60), dtype=np.uint8)
    import cv2
    small = np.stack([cv2.resize(g, (48, 48), interpolation=cv2.INTER_LINEAR) for g in gray])
    want = torch.softmax(logits_of(net, small) / 1.5, 1).numpy()
    got = model.predict(gray)
    assert got.shape == (3, 7)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert model.predict(gray[0]).shape == (1, 7)
