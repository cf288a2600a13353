"""emotion-agent: multimodal emotion recognition (MELD's 7 labels) with cited explanations, offline on CPU.

Public API::

    from emotion_agent import EmotionAgent, make_turn, FusedResult, Settings

    agent = EmotionAgent()
    result = agent.analyze(make_turn(text="I can't believe you did that!"))
    print(result.label, result.confidence, result.explanation)

Names are imported on first use, so ``import emotion_agent`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "EmotionAgent": "emotion_agent.agent.runtime",
    "make_turn": "emotion_agent.agent.inputs",
    "InputError": "emotion_agent.agent.inputs",
    "FusedResult": "emotion_agent.tools.evidence",
    "EmotionEvidence": "emotion_agent.tools.evidence",
    "LABELS": "emotion_agent.tools.evidence",
    "Settings": "emotion_agent.tools.settings",
    "Answer": "emotion_agent.agent.ask_loop",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from emotion_agent.agent.ask_loop import Answer
    from emotion_agent.agent.inputs import InputError, make_turn
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.tools.evidence import LABELS, EmotionEvidence, FusedResult
    from emotion_agent.tools.settings import Settings


def __getattr__(name: str) -> Any:
    """Import a public name on first access."""
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emotion_agent' has no attribute {name!r}")
