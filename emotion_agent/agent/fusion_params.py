"""The late-fusion rule's parameters: how much each modality counts, and when evidence counts as informative.

The values are learned by ``python -m emotion_agent.training.train_modality_weights`` from clips where the
modalities really co-occur (each clip's own voice and its own Whisper transcript, with the voice read by a
head that never heard that speaker) and shipped as ``tools/weights/fusion_modalities.json``. When that file
is missing or unreadable, the hand-set defaults below are used and the policy name says so.

Only ratios between modalities matter (the rule is a weighted mean): typed text is the reference (1.0).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from emotion_agent.tools.resources import WEIGHTS_DIR

#: Hand-set reliabilities per unit of informativeness (the fallback).
DEFAULT_WEIGHTS: dict[str, float] = {"text": 1.0, "transcript": 0.8, "audio": 0.5, "vision": 0.5}
#: Below this KL (nats) evidence counts quadratically less (carrier sentences sit at ~0.1).
DEFAULT_INFORMATIVE_KL = 0.3
#: How much a transcript counts when Whisper flagged it unreliable (unclear or non-English speech).
DEFAULT_UNRELIABLE_SCALE = 0.25
#: Where the learned values live.
PARAMS_FILE = WEIGHTS_DIR / "fusion_modalities.json"


@dataclass(frozen=True)
class FusionParams:
    """Modality reliabilities, the informativeness threshold and the unreliable-transcript discount."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    informative_kl: float = DEFAULT_INFORMATIVE_KL
    unreliable_transcript_scale: float = DEFAULT_UNRELIABLE_SCALE
    source: str = "hand-set"

    def to_json(self) -> dict[str, object]:
        """The file format (see :func:`load_params`)."""
        return {"weights": self.weights, "informative_kl": self.informative_kl,
                "unreliable_transcript_scale": self.unreliable_transcript_scale}


class FusionParamsError(ValueError):
    """The parameters file is malformed."""


def parse_params(data: object, source: str) -> FusionParams:
    """Validate a parsed parameters file: known modalities, finite non-negative numbers."""
    if not isinstance(data, dict):
        raise FusionParamsError(f"{source}: expected a JSON object")
    weights = dict(DEFAULT_WEIGHTS)
    for name, value in dict(data.get("weights") or {}).items():
        if name not in DEFAULT_WEIGHTS or not isinstance(value, (int, float)) or not 0.0 <= value < 100.0:
            raise FusionParamsError(f"{source}: bad weight {name}={value!r}")
        weights[name] = float(value)
    kl = data.get("informative_kl", DEFAULT_INFORMATIVE_KL)
    scale = data.get("unreliable_transcript_scale", DEFAULT_UNRELIABLE_SCALE)
    if not isinstance(kl, (int, float)) or not 0.0 < kl < 10.0:
        raise FusionParamsError(f"{source}: bad informative_kl {kl!r}")
    if not isinstance(scale, (int, float)) or not 0.0 <= scale <= 1.0:
        raise FusionParamsError(f"{source}: bad unreliable_transcript_scale {scale!r}")
    return FusionParams(weights, float(kl), float(scale), source)


_CACHE: dict[tuple[str, int], FusionParams] = {}
_LOCK = threading.Lock()


def load_params(path: Path | None = None) -> FusionParams:
    """The learned parameters (cached per path and mtime); the hand-set defaults when the file is missing
    or malformed (``source`` then says why)."""
    path = Path(path or PARAMS_FILE)
    if not path.is_file():
        return FusionParams(source=f"hand-set ({path.name} not found)")
    key = (str(path), path.stat().st_mtime_ns)
    with _LOCK:
        if key not in _CACHE:
            try:
                params = parse_params(json.loads(path.read_text(encoding="utf-8")), f"learned ({path.name})")
            except (OSError, json.JSONDecodeError, FusionParamsError) as exc:
                params = FusionParams(source=f"hand-set ({path.name} unreadable: {exc})")
            _CACHE.clear()
            _CACHE[key] = params
        return _CACHE[key]
