"""Which experts exist, built lazily by name so a missing optional dependency disables one expert only."""

from __future__ import annotations

import importlib
import logging

from emotion_agent.tools.settings import Settings
from emotion_agent.tools.base import Expert

log = logging.getLogger(__name__)

#: name → "module:Class". Order is the order the auto planner calls them within a stage.
EXPERTS: dict[str, str] = {
    "transcribe": "emotion_agent.tools.transcribe:TranscribeExpert",
    "speech_emotion": "emotion_agent.tools.speech_emotion:SpeechEmotionExpert",
    "facial_emotion": "emotion_agent.tools.face_emotion:FacialEmotionExpert",
    "describe_scene": "emotion_agent.tools.scene:SceneExpert",
    "text_emotion": "emotion_agent.tools.text_emotion:TextEmotionExpert",
}


def build_experts(settings: Settings, only: list[str] | None = None) -> dict[str, Expert]:
    """Instantiate the experts (models load on first use). Unavailable ones are skipped with a log line."""
    out: dict[str, Expert] = {}
    for name, target in EXPERTS.items():
        if only is not None and name not in only:
            continue
        module, cls = target.split(":")
        try:
            out[name] = getattr(importlib.import_module(module), cls)(settings=settings)
        except (ImportError, AttributeError) as exc:
            log.warning("expert %s unavailable: %s", name, exc)
    return out


#: Modules that register extra model assets (e.g. Whisper) when imported.
ASSET_MODULES = ("emotion_agent.tools.audio_assets", "emotion_agent.tools.text_assets")


def import_asset_modules() -> None:
    """Import the modules that register model assets (so the registry is complete)."""
    for module in ASSET_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            log.debug("asset module %s unavailable: %s", module, exc)
