"""int8 copies of the face CNN's ONNX export (onnxruntime's quantiser; needs the ``onnx`` package).

* static QDQ: int8 weights (per channel, 7-bit range) and uint8 activations whose ranges are calibrated on
  FER2013 *train* faces (never PublicTest); onnxruntime runs the convolutions as int8 kernels. The 7-bit
  weight range (``reduce_range``) matters on CPUs without VNNI (AVX2 only, as here): with full 8-bit weights
  the u8 x s8 products saturate in VPMADDUBSW and the logits decorrelate (PublicTest accuracy 42.4 → 32.8 %
  at an early epoch; with ``reduce_range`` 43.1 %, logits correlation 1.00).
* dynamic: int8 weights only (ConvInteger); measured slower than fp32 on AVX2, kept for the comparison.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

CALIBRATION_FACES = 512


def train_faces(data_dir: Path, n: int = CALIBRATION_FACES, seed: int = 0) -> np.ndarray:
    """``n`` random FER2013 train faces (uint8, 48x48) for calibrating activation ranges."""
    train = np.load(data_dir / "faces_train" / "fer2013_train.npz")["images"]
    return train[np.random.default_rng(seed).permutation(len(train))[:n]]


def _preprocessed(src: Path, folder: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = folder / "pre.onnx"
    quant_pre_process(str(src), str(pre))
    return pre


def quantize_qdq(src: Path, dst: Path, faces: np.ndarray) -> Path:
    """Static QDQ int8 copy of ``src`` at ``dst``, activations calibrated on ``faces`` (N, 48, 48) uint8."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    x = ((faces.astype(np.float32) / 255.0 - 0.5) * 2.0)[:, None]  # the runtime's scaling
    batches = iter([x[i:i + 32] for i in range(0, len(x), 32)])

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict | None:  # noqa: D102 - onnxruntime's protocol
            b = next(batches, None)
            return None if b is None else {"gray": np.ascontiguousarray(b)}

    with tempfile.TemporaryDirectory() as tmp:
        quantize_static(str(_preprocessed(src, Path(tmp))), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    return dst


def quantize_weights_only(src: Path, dst: Path) -> Path:
    """Dynamic int8 copy of ``src`` (weights only) at ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        quantize_dynamic(str(_preprocessed(src, Path(tmp))), str(dst), weight_type=QuantType.QInt8,
                         reduce_range=True)
    return dst
