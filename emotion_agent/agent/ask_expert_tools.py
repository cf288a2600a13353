"""Expert tools of the ask agent: counterfactuals over one stored turn.

* :func:`fuse_without` re-fuses a stored turn's expert evidence with some modalities left out ("would it still be
  anger without the voice?"). The experts are deterministic per modality, so re-fusing what they said is what
  re-running them on the remaining inputs gives, without decoding the media again.
* :func:`word_attributions` asks the text expert how much each word pushed toward any label (occlusion over its
  own classifier, the same computation the explanations use), loading the expert only when asked.

The turn comes from the scope the tools were built on (a conversation's turn index or a run's record key), never
from an argument that names a conversation, a run or a key of the service. Results are small and bounded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from emotion_agent.agent.fusion import fuse
from emotion_agent.tools.base import PriorTurn, TurnInput
from emotion_agent.tools.evidence import EmotionEvidence

Modality = Literal["text", "audio", "vision"]
#: Words a question (and so a small model) uses for a modality, accepted as tool arguments.
MODALITY_ALIASES = {"voice": "audio", "speech": "audio", "sound": "audio", "prosody": "audio", "words": "text",
                    "transcript": "text", "language": "text", "face": "vision", "video": "vision", "image": "vision",
                    "visual": "vision"}


def modality_alias(value: object) -> object:
    """``"voice"`` → ``"audio"`` (and the other aliases); anything else unchanged, for the schema to check."""
    return MODALITY_ALIASES.get(value.strip().lower(), value.strip().lower()) if isinstance(value, str) else value
Label = Literal["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
#: Stored evidence modalities that each user-facing modality stands for (the voice is audio; words are
#: text or a transcript; the face is vision).
MODALITY_GROUPS: dict[str, tuple[str, ...]] = {"text": ("text", "transcript"), "audio": ("audio",),
                                               "vision": ("vision", "face", "image", "video")}
MAX_WORDS = 8


class Counterfactual(BaseModel):
    """The stored label of a turn and the label its evidence gives with some modalities left out."""

    turn: str
    still_same_label: bool = Field(description="True when the label without those modalities is the stored one.")
    dropped: list[str]
    original_label: str
    original_confidence: float
    label: str | None = Field(description="None when no evidence is left once the modalities are dropped.")
    confidence: float | None = None
    changed: bool
    modalities_left: list[str]
    note: str = Field(default="", max_length=200)


class WordWeight(BaseModel):
    word: str = Field(max_length=40)
    weight: float


class Attributions(BaseModel):
    """The words that pushed most toward (positive) or away from (negative) ``label``."""

    turn: str
    label: str
    words: list[WordWeight] = Field(max_length=MAX_WORDS)
    note: str = Field(default="", max_length=200)


def _base_policy(stored: str | None) -> str:
    """``learned(context in text model)`` / ``learned->weighted`` → ``learned``."""
    name = (stored or "weighted").split("(")[0].split("->")[0].strip()
    return name or "weighted"


def fuse_without(turn: str, record: dict[str, Any], drop: list[str]) -> Counterfactual:
    """Re-fuse ``record``'s evidence (a stored FusedResult) without the modalities in ``drop``."""
    result = record.get("result") if isinstance(record.get("result"), dict) else record
    evidence = [EmotionEvidence.model_validate(e) for e in result.get("evidence") or [] if isinstance(e, dict)]
    gone = {m for d in drop for m in MODALITY_GROUPS.get(d, (d,))}
    left = [e for e in evidence if e.modality not in gone]
    present = sorted({e.modality for e in evidence})
    original, conf = str(result.get("label")), round(float(result.get("confidence") or 0.0), 3)
    missing = [d for d in drop if not set(MODALITY_GROUPS.get(d, (d,))) & set(present)]
    note = f"this turn had no {', '.join(missing)} evidence; " if missing else ""
    if not left:
        return Counterfactual(turn=turn, dropped=list(drop), original_label=original, original_confidence=conf,
                              label=None, changed=True, still_same_label=False, modalities_left=[],
                              note=(note + "no evidence is left without it")[:200])
    fused = fuse(left, None, _base_policy(result.get("fusion_policy")))
    return Counterfactual(turn=turn, dropped=list(drop), original_label=original, original_confidence=conf,
                          label=fused.label, confidence=round(float(fused.confidence), 3),
                          changed=fused.label != original, still_same_label=fused.label == original,
                          modalities_left=sorted({e.modality for e in left}),
                          note=note[:200])


def turn_for_attribution(text: str, speaker: str | None, previous: list[tuple[str | None, str]]) -> TurnInput:
    """A text turn with its previous turns as context (what the text expert read when it labelled it)."""
    return TurnInput(text=text, speaker=speaker, context=[PriorTurn(speaker=s, text=t) for s, t in previous if t])


def word_attributions(turn: str, text_turn: TurnInput | None, label: str,
                      text_expert: Callable[[], Any] | None) -> Attributions:
    """Occlusion attributions of the text expert toward ``label``; the strongest ``MAX_WORDS`` words."""
    if text_turn is None or not text_turn.spoken_text():
        return Attributions(turn=turn, label=label, words=[], note="this turn has no words to weigh")
    expert = text_expert() if text_expert else None
    attribute = getattr(expert, "attributions", None)
    if attribute is None:
        return Attributions(turn=turn, label=label, words=[], note="the text expert is not available")
    weights = attribute(text_turn, label)
    top = sorted((w for w in weights if abs(w.weight) > 0), key=lambda w: -abs(w.weight))[:MAX_WORDS]
    note = "" if weights else "the utterance is too long or has no content words to weigh"
    return Attributions(turn=turn, label=label, note=note,
                        words=[WordWeight(word=w.word[:40], weight=round(float(w.weight), 3)) for w in top])
