"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from emotion_agent.agent.conversation_summary import ConversationSummary
from emotion_agent.agent.reply_hint import ReplyHint
from emotion_agent.tools.evidence import Adjudication
from emotion_agent.tools.settings import TextMode



# ---- request/response models ----------------------------------------------------------------------
class AnalyzeRequest(BaseModel):
    """JSON body of ``POST /v1/analyze`` (media go in a multipart request; paths are never accepted)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=20_000, description="What the user said.")
    conversation_id: str | None = Field(default=None, description="1-64 of [A-Za-z0-9._-]; turns are remembered.")
    speaker: str | None = Field(default=None, max_length=64)
    explain: bool = Field(default=False, description="Ask the LLM for an explanation (slower).")


class EvidenceOut(BaseModel):
    """One expert's evidence item in an analysis response."""

    id: str
    modality: str
    expert: str
    model_id: str
    label: str
    confidence: float
    distribution: dict[str, float]
    cues: list[str]
    warnings: list[str]
    latency_ms: float
    transcript: str | None = None
    text_mode: TextMode | None = Field(default=None, description="Text evidence: how the dialogue was read "
                                       "(online: past turns; offline: past and later turns; utterance: alone).")


class AnalyzeResponse(BaseModel):
    """Response of ``POST /v1/analyze``: fused label, evidence, explanation and reply hint."""

    request_id: str
    conversation_id: str | None
    speaker: str | None
    turn_index: int | None
    label: str
    confidence: float
    distribution: dict[str, float]
    evidence: list[EvidenceOut]
    contributions: dict[str, float]
    fusion_policy: str = Field(description="Which fusion produced the label (+llm_adjudication if the LLM "
                                           "settled a close call).")
    adjudication: Adjudication | None = Field(default=None, description="Set when LLM adjudication is on.")
    text_mode: TextMode | None = Field(default=None, description="How the text evidence read the dialogue "
                                       "(online by default in the service; None without text).")
    explanation: str | None
    explanation_source: str | None
    cited_evidence_ids: list[str]
    reply_hint: ReplyHint
    warnings: list[str]
    timings_ms: dict[str, float]


class TurnOut(BaseModel):
    """One stored turn of a conversation, with its label."""

    turn_index: int
    speaker: str | None
    text: str
    label: str | None
    confidence: float | None
    explanation: str | None = None


class ConversationOut(BaseModel):
    """Response of ``GET /v1/conversations/{id}``: the stored turns in order."""

    conversation_id: str
    turns: list[TurnOut]


class DeletedOut(BaseModel):
    """Response of ``DELETE /v1/conversations/{id}``: how many turns were forgotten."""

    conversation_id: str
    deleted_turns: int


class WhyRequest(BaseModel):
    """JSON body of ``POST /v1/why``: a question about one stored turn (default: the last)."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: str
    turn_index: int | None = Field(default=None, ge=0, description="Default: the last turn.")
    question: str = Field(min_length=3, max_length=500)


class WhyResponse(BaseModel):
    """Response of ``POST /v1/why``: the answer, the evidence ids it cites and its source."""

    conversation_id: str
    turn_index: int
    label: str
    confidence: float
    answer: str
    contrast: str | None = Field(default=None, description="The other label the question asked about.")
    cited_evidence_ids: list[str]
    source: Literal["evidence"] = Field(description="Answered from the stored evidence (no LLM).")
    refused: bool = Field(default=False, description="The question held only instructions.")
    warnings: list[str] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """Machine-readable error code, human-readable message and the request id."""

    code: str
    message: str
    request_id: str | None = None


class ErrorOut(BaseModel):
    """JSON body of every error response: ``{"error": {code, message, request_id}}``."""

    error: ErrorBody


class SummaryOut(ConversationSummary):
    """Response of ``GET /v1/conversations/{id}/summary``: the deterministic summary from the stored evidence."""

    conversation_id: str


class AskRequest(BaseModel):
    """JSON body of ``POST /v1/ask``: a question about one stored conversation of this API key."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: str
    question: str = Field(min_length=3, max_length=500)


class AskResponse(BaseModel):
    """Response of ``POST /v1/ask``: the answer, whether it passed the grounding check, the tool calls made."""

    conversation_id: str
    answer: str
    grounded: bool
    citations: list[str] = Field(default_factory=list)
    tool_calls: list[dict] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
