"""Typed evidence: what every expert returns and what the agent emits.

Evidence is data, not plumbing: these pydantic models are the contract between the
modality experts (``tools/``), the fusion step, the explanation and the run records.
"""

from __future__ import annotations

import math
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from emotion_agent.tools.settings import TextMode

#: MELD's seven emotion classes, in MELD's own order.
LABELS: tuple[str, ...] = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
Label = Literal["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
Modality = Literal["text", "audio", "vision", "transcript", "memory"]

#: Sentiment of each emotion, as MELD's annotators grouped them (surprise is mixed; MELD maps it per
#: utterance, we treat it as neutral-valence for the 3-class derived score).
SENTIMENT: dict[str, str] = {
    "neutral": "neutral",
    "joy": "positive",
    "surprise": "neutral",
    "anger": "negative",
    "sadness": "negative",
    "disgust": "negative",
    "fear": "negative",
}


def uniform() -> dict[str, float]:
    """A flat distribution over the seven labels (what an expert says when it knows nothing)."""
    return {label: 1.0 / len(LABELS) for label in LABELS}


def normalize(dist: dict[str, float]) -> dict[str, float]:
    """Return ``dist`` over exactly :data:`LABELS`, non-negative and summing to one.

    Missing labels get zero mass; an all-zero or non-finite input becomes uniform.
    """
    clean = {label: float(dist.get(label, 0.0)) for label in LABELS}
    clean = {k: (v if math.isfinite(v) and v > 0 else 0.0) for k, v in clean.items()}
    total = sum(clean.values())
    if total <= 0:
        return uniform()
    return {k: v / total for k, v in clean.items()}


def new_id(prefix: str) -> str:
    """Short unique id for an evidence item, e.g. ``text-3f9a1c``."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Cue(BaseModel):
    """One short, human-readable fact an expert observed, with its value when it has one."""

    name: str = Field(description="What was observed, e.g. 'exclamation marks' or 'pitch mean'.")
    value: str | float | int | None = Field(default=None, description="The measured value, if any.")
    detail: str | None = Field(default=None, description="Reading of the value, e.g. 'high', '30 % above mean'.")

    def __str__(self) -> str:
        parts = [self.name]
        if self.value is not None:
            parts.append(f"= {self.value}")
        if self.detail:
            parts.append(f"({self.detail})")
        return " ".join(parts)


class WordWeight(BaseModel):
    """How much one word of the utterance moved the text expert toward a label (occlusion: drop it, re-score)."""

    word: str
    weight: float = Field(description="Probability of the label with the word minus without it.")


class TranscriptInfo(BaseModel):
    """What the transcription expert heard: written by ``tools/transcribe.py``, read by fusion and the graph."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(default="", description="The words heard ('' when none).")
    reliable: bool = Field(default=True, description="False when Whisper's mean log-probability is below -1.0.")
    mean_logprob: float | None = Field(default=None, description="Whisper's mean token log-probability.")


#: Evidence fields that older versions stored as keys of ``extra`` (run records still load).
_LEGACY_EXTRA = ("transcript", "transcript_reliable", "mean_logprob", "no_speech", "detection", "attributions",
                 "attributions_toward")


def _migrate_extra(data: dict[str, object]) -> dict[str, object]:
    """Move the old ``extra`` keys of a stored record onto the typed fields."""
    extra = data.get("extra")
    if not isinstance(extra, dict) or not any(k in extra for k in _LEGACY_EXTRA):
        return data
    extra = dict(extra)
    data = {**data, "extra": extra}
    text = extra.pop("transcript", None)
    reliable, logprob = extra.pop("transcript_reliable", None), extra.pop("mean_logprob", None)
    if isinstance(text, str) and not data.get("transcript"):
        data["transcript"] = {"text": text, "reliable": reliable is not False, "mean_logprob": logprob}
    for key in ("no_speech", "detection", "attributions", "attributions_toward"):
        if key in extra:
            value = extra.pop(key)
            if not data.get(key):
                data[key] = value
    return data


class EmotionEvidence(BaseModel):
    """What one expert concluded about one turn, in one modality."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique id the explanation cites, e.g. 'text-3f9a1c'.")
    modality: Modality
    expert: str = Field(description="Expert name, e.g. 'text_emotion'.")
    model_id: str = Field(description="Model the expert ran: package/file or user path/hub id.")
    distribution: dict[str, float] = Field(description="Probability over the 7 MELD labels.")
    label: Label = Field(description="Top label of the distribution.")
    confidence: float = Field(ge=0.0, le=1.0, description="How much to trust this evidence (0 = ignore).")
    cues: list[Cue] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    latency_ms: float = Field(default=0.0, ge=0.0)
    transcript: TranscriptInfo | None = Field(default=None, description="Set by the transcription expert.")
    no_speech: bool = Field(default=False, description="The audio holds no speech (voice activity detection).")
    detection: str | None = Field(default=None, description="How the face expert found the face, e.g. 'padded'.")
    attributions: list[WordWeight] | None = Field(
        default=None, description="Word attributions the explain node attached to the text evidence.")
    attributions_toward: Label | None = Field(default=None, description="The label the attributions explain.")
    text_mode: TextMode | None = Field(default=None, description="Text evidence: how the dialogue was read "
                                       "('online': past turns, 'offline': past and future, 'utterance': the "
                                       "expert alone).")
    extra: dict[str, object] = Field(default_factory=dict, description="Expert-specific display payload.")

    @field_validator("distribution")
    @classmethod
    def _normalize(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(LABELS)
        if unknown:
            raise ValueError(f"unknown labels in distribution: {sorted(unknown)}")
        return normalize(v)

    @model_validator(mode="before")
    @classmethod
    def _fill_label(cls, data: object) -> object:
        if isinstance(data, dict):
            data = _migrate_extra(data)
        if isinstance(data, dict) and "distribution" in data and "label" not in data:
            dist = normalize(data["distribution"])
            data = {**data, "label": max(dist, key=dist.__getitem__)}
        return data

    @property
    def low_confidence(self) -> bool:
        """Whether the evidence is weak: confidence below 0.2 or any warning."""
        return self.confidence < 0.2 or bool(self.warnings)

    @classmethod
    def uninformative(
        cls, *, modality: Modality, expert: str, model_id: str, warning: str, latency_ms: float = 0.0,
        **extra: object,
    ) -> "EmotionEvidence":
        """Evidence that carries no information (zero confidence, uniform) plus why."""
        return cls(
            id=new_id(expert.split("_")[0]),
            modality=modality,
            expert=expert,
            model_id=model_id,
            distribution=uniform(),
            label="neutral",
            confidence=0.0,
            warnings=[warning],
            latency_ms=latency_ms,
            extra=dict(extra),
        )


class Explanation(BaseModel):
    """What the LLM writes, under a JSON schema: prose plus the evidence ids it relies on."""

    explanation: str = Field(description="Two or three sentences on why the fused label fits, citing evidence.")
    cited_evidence_ids: list[str] = Field(default_factory=list, description="Ids of evidence items used.")


class Adjudication(BaseModel):
    """The LLM's pick between the fused top-2 labels when fusion is unsure (``agent/adjudicate.py``)."""

    candidates: list[Label] = Field(description="Fused top-2 labels, best first.")
    margin: float = Field(description="Fused probability of the first candidate minus the second.")
    threshold: float = Field(description="Adjudication runs when margin < threshold.")
    fused_label: Label
    chosen: Label | None = Field(default=None, description="The LLM's pick (always one of the candidates).")
    changed: bool = False
    status: Literal["applied", "not_needed", "failed"] = "not_needed"
    detail: str | None = None
    latency_ms: float = 0.0


class ModalityView(BaseModel):
    """What one modality on its own says (used to report modalities that disagree)."""

    modality: str
    expert: str
    label: Label
    probability: float = Field(ge=0.0, le=1.0)


class FusedResult(BaseModel):
    """The agent's answer for one turn."""

    label: Label
    confidence: float = Field(ge=0.0, le=1.0)
    distribution: dict[str, float]
    evidence: list[EmotionEvidence] = Field(default_factory=list)
    contributions: dict[str, float] = Field(
        default_factory=dict, description="Share of the fused decision each modality carried (sums to 1)."
    )
    fusion_policy: str = Field(default="weighted", description="Which fusion produced the label.")
    disagreement: list[ModalityView] = Field(
        default_factory=list, description="Set when modalities are sure of different labels: each one's reading.")
    adjudication: Adjudication | None = Field(default=None, description="Set when LLM adjudication was on.")
    explanation: str | None = None
    cited_evidence_ids: list[str] = Field(default_factory=list)
    explanation_source: Literal["llm", "template"] | None = None
    memory_used: list[str] = Field(default_factory=list, description="Ids of remembered turns recalled for this turn.")
    warnings: list[str] = Field(default_factory=list)
    conversation_id: str | None = None
    speaker: str | None = None
    turn_index: int | None = None
    text_mode: TextMode | None = Field(default=None, description="How the text evidence read the dialogue "
                                       "(online / offline / utterance); None without text evidence.")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Per-stage latency.")

    @field_validator("distribution")
    @classmethod
    def _normalize(cls, v: dict[str, float]) -> dict[str, float]:
        return normalize(v)

    def evidence_by_id(self) -> dict[str, EmotionEvidence]:
        """The evidence items keyed by id."""
        return {e.id: e for e in self.evidence}
