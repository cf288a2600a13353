"""Face readings and crop geometry: what one face / one frame yields, the aligned square crop the
expression model reads, the primary-face rule, and the padding used for tight or small images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion_agent.tools.face_detect import Face

#: Square crop side = box side x (1 + CROP_MARGIN), centre moved up by CROP_SHIFT x box side.
#: BlazeFace on FER2013 crops padded with replicated borders (benchmarks/bench_faces.py, "detector_path"):
#: the box is ~0.85 of FER2013's crop side and sits ~0.03 below its centre (→ margin ~0.17, shift ~0.04);
#: accuracy there was flat for margins 0-0.18 and dropped at 0.25; eye alignment helped by 1-3 points.
CROP_MARGIN = 0.12
CROP_SHIFT = 0.04
#: An image at most this large on its longer side, and roughly square, may itself be a face crop.
CROP_MAX_SIDE = 400
CROP_ASPECT = (0.7, 1.45)
#: Small or tight images are padded by this share of their side (replicated border) and upscaled to
#: at least PAD_MIN_SIDE before a second detection (BlazeFace misses faces that fill the whole frame).
PAD_SHARE = 0.35
PAD_MIN_SIDE = 256
#: An image this small and square with no face box may still be a face crop (read whole, marked low-confidence).
SMALL_CROP_SIDE = 160
#: A face found after padding whose box is at least this share of the image's side makes it a tight crop.
TIGHT_CROP_SHARE = 0.5


@dataclass
class FaceReading:
    """One face in a frame: box, detection score, label distribution and size in pixels."""

    box: tuple[float, float, float, float]
    score: float
    distribution: dict[str, float]
    size_px: float

    @property
    def label(self) -> str:
        """The most likely label."""
        return max(self.distribution, key=self.distribution.__getitem__)

    def as_dict(self) -> dict:
        """JSON-ready summary: rounded box, score, label and distribution."""
        return {"box": [round(v, 1) for v in self.box], "score": round(self.score, 3),
                "label": self.label, "distribution": {k: round(v, 4) for k, v in self.distribution.items()}}


@dataclass
class FrameReading:
    """The faces read in one frame, which one is primary, and the frame's size and time."""

    faces: list[FaceReading] = field(default_factory=list)
    primary: int | None = None
    width: int = 0
    height: int = 0
    time_s: float | None = None

    @property
    def primary_face(self) -> FaceReading | None:
        """The primary face, or None when no face was found."""
        return None if self.primary is None else self.faces[self.primary]

    @property
    def expressiveness(self) -> float:
        """How strong the primary face's expression is: its largest non-neutral probability."""
        f = self.primary_face
        if f is None:
            return -1.0
        return max(v for k, v in f.distribution.items() if k != "neutral")


def crop_face(rgb: np.ndarray, face: Face, size: int = 64, margin: float = CROP_MARGIN,
              align: bool = True, shift: float = CROP_SHIFT) -> np.ndarray:
    """Square grayscale crop around ``face`` (eyes levelled when ``align``), ``size`` x ``size`` uint8."""
    import cv2

    cx, cy = face.center
    box_side = max(face.width, face.height)
    side = box_side * (1.0 + margin)
    angle = 0.0
    if align and face.keypoints is not None and len(face.keypoints) >= 2:
        (rx, ry), (lx, ly) = face.keypoints[0], face.keypoints[1]
        angle = math.atan2(ly - ry, lx - rx)
        if abs(angle) > math.radians(45):  # implausible keypoints (profile): do not rotate
            angle = 0.0
    # Move the centre towards the top of the head (the face's "up" is (sin a, -cos a) in image coordinates).
    cx += shift * box_side * math.sin(angle)
    cy -= shift * box_side * math.cos(angle)
    # 1) an axis-aligned patch large enough for any rotation, borders replicated.
    patch_side = int(math.ceil(side * 1.5))
    patch = cv2.getRectSubPix(rgb, (patch_side, patch_side), (float(cx), float(cy)))
    gray = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) if patch.ndim == 3 else patch
    # 2) area-downscale so that the face square is ~``size`` pixels (no aliasing), 3) rotate + cut.
    k = size / side
    small_side = max(size, int(round(patch_side * k)))
    if small_side != patch_side:
        gray = cv2.resize(gray, (small_side, small_side),
                          interpolation=cv2.INTER_AREA if small_side < patch_side else cv2.INTER_LINEAR)
    scale = small_side / patch_side  # patch px → small px
    c = small_side / 2.0
    m = cv2.getRotationMatrix2D((c, c), math.degrees(angle), size / (side * scale))
    m[:, 2] += size / 2.0 - c
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def select_primary(faces: list[FaceReading], width: int, height: int, rule: str) -> int | None:
    """Index of the primary face: the largest, or the most central with ``rule='central'``."""
    if not faces:
        return None
    if rule == "central":
        cx, cy = width / 2.0, height / 2.0
        diag = math.hypot(width, height) or 1.0

        def off_center(f: FaceReading) -> float:
            """Distance of the face's centre from the image centre, as a share of the diagonal."""
            fx, fy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
            return math.hypot(fx - cx, fy - cy) / diag

        return min(range(len(faces)), key=lambda i: (round(off_center(faces[i]), 3), -faces[i].size_px))
    return max(range(len(faces)), key=lambda i: faces[i].size_px)


_HAAR: list = []


def haar_confirms_face(rgb: np.ndarray) -> bool:
    """OpenCV's Haar frontal-face cascade on the padded, upscaled image: a second opinion for tight crops."""
    import cv2

    if not _HAAR:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        _HAAR.append(cv2.CascadeClassifier(str(path)) if path.is_file() else None)
    cascade = _HAAR[0]
    if cascade is None:
        return False
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    pad = int(round(PAD_SHARE * max(gray.shape)))
    gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    gray = cv2.resize(gray, (PAD_MIN_SIDE, PAD_MIN_SIDE), interpolation=cv2.INTER_CUBIC)
    return len(cascade.detectMultiScale(gray, 1.1, 3, minSize=(40, 40))) > 0
