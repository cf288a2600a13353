"""Face analyzer: BlazeFace detection + aligned crops + the expression model, per RGB frame.

Shared by the facial-expression expert and the benchmark (``benchmarks/bench_faces.py``); one
process-wide instance per TTA, calibration and ``face_model`` setting (:func:`shared_analyzer`).
The crops of several frames (a video) go through the expression model in one batched call.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from emotion_agent.tools.evidence import LABELS
from emotion_agent.tools.face_crops import (CROP_MARGIN, PAD_MIN_SIDE, PAD_SHARE, FaceReading, FrameReading,
                                            crop_face, select_primary)
from emotion_agent.tools.face_detect import shared_detector
from emotion_agent.tools.face_model import ExpressionModel, calibration_from_env, load_expression_model


class FaceAnalyzer:
    """Detector + expression model (``face_model``: auto, cnn, fer or an ONNX path), shared by expert and benchmark."""

    def __init__(self, *, tta: str = "flip", margin: float = CROP_MARGIN, align: bool = True,
                 max_side: int = 1280, calibration: Path | None = None, face_model: str = "auto"):
        self.detector = shared_detector()
        self.model: ExpressionModel = load_expression_model(face_model, tta=tta, calibration=calibration)
        self.margin = margin
        self.align = align
        self.max_side = max_side

    @property
    def fer(self) -> ExpressionModel:
        """The expression model (older name, kept for callers written when fer's was the only one)."""
        return self.model

    def analyze_padded(self, rgb: np.ndarray, rule: str = "largest") -> FrameReading:
        """Second try for tight or small images: pad with a replicated border, upscale, detect again.

        Boxes are mapped back to the original image's pixels."""
        import cv2

        h, w = rgb.shape[:2]
        pad = int(round(PAD_SHARE * max(h, w)))
        padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        up = max(1.0, PAD_MIN_SIDE / max(padded.shape[:2]))
        if up > 1.0:
            padded = cv2.resize(padded, (round(padded.shape[1] * up), round(padded.shape[0] * up)),
                                interpolation=cv2.INTER_CUBIC)
        reading = self.analyze_frame(padded, rule)
        out = FrameReading(width=w, height=h)
        for f in reading.faces:
            x0, y0, x1, y1 = f.box
            box = tuple(v / up - pad for v in (x0, y0, x1, y1))
            out.faces.append(FaceReading(box=box, score=f.score, size_px=f.size_px / up,
                                         distribution=f.distribution))
        out.primary = reading.primary
        return out

    def read_whole(self, rgb: np.ndarray) -> FaceReading:
        """The expression model on the image itself (for an image that is already a face crop)."""
        import cv2

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        h, w = gray.shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        p = self.model.predict(gray[y0:y0 + side, x0:x0 + side][None])[0]
        return FaceReading(box=(0.0, 0.0, float(w), float(h)), score=1.0, size_px=float(side),
                           distribution={lab: float(x) for lab, x in zip(LABELS, p)})

    def analyze_frame(self, rgb: np.ndarray, rule: str = "largest", time_s: float | None = None) -> FrameReading:
        """Detect faces in one RGB frame and read each one's expression; pick the primary face by ``rule``."""
        return self.analyze_frames([rgb], rule, [time_s])[0]

    def analyze_frames(self, frames: list[np.ndarray], rule: str = "largest",
                       times: list[float | None] | None = None) -> list[FrameReading]:
        """:meth:`analyze_frame` for several frames; all their face crops go through the model in one call."""
        import cv2

        times = times if times is not None else [None] * len(frames)
        readings, found, crops = [], [], []
        for rgb, time_s in zip(frames, times):
            h, w = rgb.shape[:2]
            # Huge frames: detect on a downscaled copy (the detector sees 192 px anyway); crop from the copy too.
            s = min(1.0, self.max_side / max(h, w))
            img = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else rgb
            faces = self.detector.detect(img)
            readings.append(FrameReading(width=w, height=h, time_s=time_s))
            found.append((faces, s))
            crops.extend(crop_face(img, f, self.model.size, self.margin, self.align) for f in faces)
        probs = iter(self.model.predict(np.stack(crops)) if crops else [])
        for reading, (faces, s) in zip(readings, found):
            for f in faces:
                p = next(probs)
                box = tuple(v / s for v in f.box)
                reading.faces.append(FaceReading(box=box, score=f.score, size_px=max(f.width, f.height) / s,
                                                 distribution={lab: float(x) for lab, x in zip(LABELS, p)}))
            reading.primary = select_primary(reading.faces, reading.width, reading.height, rule)
        return readings


_SHARED: dict[tuple, FaceAnalyzer] = {}
_SHARED_LOCK = threading.Lock()


def shared_analyzer(tta: str = "flip", face_model: str = "auto") -> FaceAnalyzer:
    """A process-wide :class:`FaceAnalyzer` per TTA, calibration (from the environment) and ``face_model``."""
    calibration = calibration_from_env()
    key = (tta, str(calibration), face_model)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = FaceAnalyzer(tta=tta, calibration=calibration, face_model=face_model)
        return _SHARED[key]
