"""LLaVA-style visual reasoning (``describe_scene``): a vision-language model describes the person's
expression, gaze, posture and the scene, and gives a label distribution as JSON.

Primary path: Hugging Face ``transformers`` — ``AutoProcessor`` + ``AutoModelForImageTextToText``
loaded from ``settings.vlm_model`` (a local folder or a hub id; LLaVA family, e.g.
``llava-hf/llava-1.5-7b-hf``, ``llava-hf/llava-onevision-qwen2-0.5b-ov-hf``). Off by default
(``vlm_model`` unset): no VLM weights can be had offline here, and the agent works without it.

Enable it with a real model (transformers and torch are already dependencies), e.g. on a machine
with internet::

    huggingface-cli download llava-hf/llava-onevision-qwen2-0.5b-ov-hf --local-dir models/llava-ov-0.5b
    EMOTION_AGENT_VLM_MODEL=models/llava-ov-0.5b emotion-agent analyze --image face.jpg

(any LLaVA-family folder or hub id that ``AutoModelForImageTextToText`` loads works; a hub id needs
network access the first time). Why transformers rather than llama.cpp GGUF + mmproj: the real code
path can be tested offline with a tiny random-weight model built from configs (a GGUF + mmproj pair
needs llama.cpp's conversion scripts and real weights); one API covers the LLaVA family through each
processor's own chat template, where llama-cpp-python needs a model-specific chat handler; and it
does not compete with the in-process llama.cpp LLM's spinning threads. The cost: a 4-bit GGUF would run
faster on CPU, so a llama.cpp backend is the natural second path.

The prompt lives in ``prompts/describe_scene.md``. The answer is parsed leniently (first JSON
object, single quotes, trailing commas, label synonyms); when no label can be parsed, the
distribution is uniform with zero confidence and a warning — never a guess.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emotion_agent.tools.settings import Settings
from emotion_agent.tools.base import Expert, ExpertError, TurnInput
from emotion_agent.tools.evidence import LABELS, Cue, EmotionEvidence, new_id, normalize, uniform

PROMPT_NAME = "describe_scene"
MAX_NEW_TOKENS = 200
DESCRIPTION_FIELDS = ("expression", "gaze", "posture", "scene")
#: Confidence given to a parsed VLM answer at most: unvalidated here (no VLM could be measured offline).
MAX_CONFIDENCE = 0.6
SYNONYMS = {
    "neutral": "neutral", "calm": "neutral", "none": "neutral", "no emotion": "neutral",
    "joy": "joy", "happy": "joy", "happiness": "joy", "joyful": "joy", "amused": "joy", "smiling": "joy",
    "surprise": "surprise", "surprised": "surprise", "astonished": "surprise", "shocked": "surprise",
    "anger": "anger", "angry": "anger", "annoyed": "anger", "frustrated": "anger", "rage": "anger",
    "sadness": "sadness", "sad": "sadness", "unhappy": "sadness", "upset": "sadness",
    "disgust": "disgust", "disgusted": "disgust", "contempt": "disgust",
    "fear": "fear", "afraid": "fear", "scared": "fear", "fearful": "fear", "anxious": "fear",
}


def canonical_label(value: Any) -> str | None:
    """The MELD label a word or phrase names (see :data:`SYNONYMS`); None if none or ambiguous."""
    if not isinstance(value, str):
        return None
    v = value.strip().strip(".").lower()
    if v in SYNONYMS:
        return SYNONYMS[v]
    words = re.findall(r"[a-z]+", v)
    hits = {SYNONYMS[w] for w in words if w in SYNONYMS}
    return hits.pop() if len(hits) == 1 else None


def _json_candidates(text: str) -> list[str]:
    """Balanced ``{...}`` substrings of ``text``, outermost first."""
    out, depth, start = [], 0, None
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0 and start is not None:
                out.append(text[start:i + 1])
    if depth > 0 and start is not None:  # truncated generation: close it
        out.append(text[start:] + "}" * depth)
    return out


def _loads_lenient(s: str) -> dict | None:
    for attempt in (s, re.sub(r",\s*([}\]])", r"\1", s)):
        for variant in (attempt, attempt.replace("'", '"')):
            try:
                obj = json.loads(variant)
            except (json.JSONDecodeError, ValueError):
                continue
            if isinstance(obj, dict):
                return obj
    return None


def parse_answer(text: str) -> dict[str, Any]:
    """Lenient parse of the VLM answer → {'fields': {...}, 'label': str|None, 'distribution': dict|None}."""
    fields: dict[str, str] = {}
    label = None
    dist = None
    obj = None
    for cand in _json_candidates(text):
        obj = _loads_lenient(cand)
        if obj is not None:
            break
    if obj is not None:
        low = {str(k).lower(): v for k, v in obj.items()}
        for f in DESCRIPTION_FIELDS:
            if isinstance(low.get(f), str) and low[f].strip():
                fields[f] = low[f].strip()[:200]
        for key in ("label", "emotion", "answer"):
            label = canonical_label(low.get(key))
            if label:
                break
        for key in ("probabilities", "distribution", "scores", "probs"):
            raw = low.get(key)
            if isinstance(raw, dict):
                acc: dict[str, float] = {}
                for k, v in raw.items():
                    lab = canonical_label(str(k))
                    try:
                        val = float(v)
                    except (TypeError, ValueError):
                        continue
                    if lab and np.isfinite(val) and val > 0:
                        acc[lab] = acc.get(lab, 0.0) + val
                if acc:
                    dist = normalize(acc)
                    break
    if label is None and obj is None:
        # Not JSON: accept an explicit, unambiguous "label: X" / "emotion: X" in plain text only.
        m = re.search(r"\b(?:label|emotion)\b\W{0,4}([A-Za-z ]{1,40})", text, re.IGNORECASE)
        if m:
            label = canonical_label(m.group(1))
    if label is None and dist is not None:
        label = max(dist, key=dist.__getitem__)
    return {"fields": fields, "label": label, "distribution": dist, "json": obj is not None}


class VLM:
    """transformers image-text-to-text model + processor, loaded once."""

    def __init__(self, spec: str, *, threads: int | None = None):
        import os

        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise ExpertError(f"describe_scene needs transformers and torch ({exc})") from None
        self.spec = spec
        local = Path(spec).expanduser()
        source = str(local) if local.exists() else spec
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
        try:
            self.processor = AutoProcessor.from_pretrained(source, local_files_only=offline or local.exists())
            self.model = AutoModelForImageTextToText.from_pretrained(
                source, local_files_only=offline or local.exists(), dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001 - any load failure is a user-facing configuration error
            raise ExpertError(
                f"could not load the vision-language model '{spec}' ({type(exc).__name__}: {str(exc)[:200]}). "
                "Set EMOTION_AGENT_VLM_MODEL to a local LLaVA-family folder (config.json, weights, processor) "
                "or a hub id reachable from here, or unset it to turn describe_scene off."
            ) from None
        self.model.eval()
        self.threads = threads
        self._lock = threading.Lock()

    def prompt_text(self, instruction: str) -> str:
        """The prompt for ``instruction`` about one image (the chat template when there is one)."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        token = getattr(self.processor, "image_token", "<image>")
        return f"USER: {token}\n{instruction}\nASSISTANT:"

    def generate(self, image, instruction: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
        """The VLM's greedy answer to ``instruction`` about ``image`` (one call at a time)."""
        import torch

        text = self.prompt_text(instruction)
        inputs = self.processor(images=image, text=text, return_tensors="pt")
        with self._lock, torch.inference_mode():
            old = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            finally:
                torch.set_num_threads(old)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.processor.decode(new, skip_special_tokens=True).strip()


_SHARED: dict[str, VLM] = {}
_SHARED_LOCK = threading.Lock()


class SceneExpert(Expert):
    """Vision-language expert: describes the person and scene of the turn's image or video."""

    name: ClassVar[str] = "describe_scene"
    modality = "vision"
    description: ClassVar[str] = (
        "A vision-language model looks at the turn's image (or the middle video frame) and describes the "
        "person's expression, gaze, posture and the scene, with an emotion judgement. Slower than "
        "facial_emotion; use it when the face alone is ambiguous. Available only when a VLM is configured."
    )
    stage: ClassVar[int] = 0

    def __init__(self, settings: Settings | None = None, vlm: VLM | None = None):
        self.settings = settings or Settings.from_env()
        self._vlm = vlm

    @property
    def model_id(self) -> str:
        """The configured VLM, or a note that describe_scene is off."""
        return str(self.settings.vlm_model or "none (describe_scene off)")

    def accepts(self, turn: TurnInput) -> bool:
        """Whether a VLM is configured and the turn has an image or a video."""
        return bool(self.settings.vlm_model) and turn.has_visual()

    @property
    def vlm(self) -> VLM:
        """The shared VLM for the configured model, loaded on first use."""
        if self._vlm is None:
            spec = str(self.settings.vlm_model)
            with _SHARED_LOCK:
                if spec not in _SHARED:
                    _SHARED[spec] = VLM(spec, threads=self.settings.llm_threads)
                self._vlm = _SHARED[spec]
        return self._vlm

    def warmup(self) -> None:
        """Load the VLM when one is configured."""
        if self.settings.vlm_model:
            _ = self.vlm

    def _image(self, turn: TurnInput):
        from PIL import Image

        if turn.image_path is not None:
            from emotion_agent.tools.images import load_image

            return Image.fromarray(load_image(turn.image_path, max_side=1024).rgb), "image"
        from emotion_agent.tools.media import decode

        # Same arguments as facial_emotion's uniform sampling: served from the shared decode cache.
        media = decode(turn.video_path, max_frames=max(1, int(self.settings.video_frames)), want_audio=True,
                       fast_frames=True)
        if not media.frames:
            raise ExpertError(f"{Path(turn.video_path).name} has no video frames")
        mid = len(media.frames) // 2
        return Image.fromarray(media.frames[mid]), f"video frame at {media.frame_times[mid]:.1f} s"

    def _analyze(self, turn: TurnInput) -> EmotionEvidence:
        from emotion_agent.tools.prompts import render

        image, source = self._image(turn)
        instruction = render(PROMPT_NAME, labels=", ".join(LABELS))
        answer = self.vlm.generate(image, instruction)
        parsed = parse_answer(answer)
        fields = parsed["fields"]
        description = "; ".join(f"{k}: {v}" for k, v in fields.items())
        extra = {"source": source, "answer": answer[:1000], "description": description,
                 "parsed_json": parsed["json"], "prompt": f"prompts/{PROMPT_NAME}.md"}
        cues = [Cue(name=k, value=v[:120]) for k, v in fields.items()]
        label, dist = parsed["label"], parsed["distribution"]
        if label is None:
            return EmotionEvidence(
                id=new_id("scene"), modality=self.modality, expert=self.name, model_id=self.model_id,
                distribution=uniform(), label="neutral", confidence=0.0, cues=cues,
                warnings=["no emotion label could be parsed from the VLM answer"], extra=extra)
        if dist is None or max(dist, key=dist.__getitem__) != label:
            # A label without (consistent) probabilities: 0.7 on it, the rest spread evenly.
            dist = {lab: (0.7 if lab == label else 0.3 / (len(LABELS) - 1)) for lab in LABELS}
        confidence = float(min(MAX_CONFIDENCE, dist[label]))
        cues.insert(0, Cue(name="VLM emotion judgement", value=f"{label} {dist[label]:.2f}", detail=source))
        return EmotionEvidence(id=new_id("scene"), modality=self.modality, expert=self.name,
                               model_id=self.model_id, distribution=dist, confidence=confidence, cues=cues,
                               extra=extra)
