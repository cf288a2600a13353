"""``POST /v1/analyze``: read a JSON or multipart turn, check its uploads, run the graph on the lanes.

The label comes first (experts + fusion on the expert lane); when an explanation is asked the *same*
paused graph run is resumed on the LLM lane. ``?stream=true`` or ``Accept: text/event-stream`` answers
with server-sent events: ``label``, then ``explanation``, then ``done`` (or ``error``). The helpers
(upload saving, turn building, probing, the two jobs) are shared with the analyst pages.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from emotion_agent.agent.injection import strip_injections
from emotion_agent.agent.inputs import InputError, make_turn
from emotion_agent.agent.reply_hint import reply_hint
from emotion_agent.service.context import ServiceContext, ctx_of, scrub, short, tenant
from emotion_agent.service.errors import ServiceError, is_memory_failure, validation_message
from emotion_agent.service.middleware import TooLarge
from emotion_agent.service.schemas import AnalyzeRequest, AnalyzeResponse, ErrorBody, ErrorOut, EvidenceOut
from emotion_agent.service.security import (
    ALLOWED,
    KINDS,
    Limits,
    SecurityError,
    UploadDir,
    describe,
    probe,
    sniff,
    unscoped_id,
    validate_conversation_id,
    validate_speaker,
)
from emotion_agent.tools.evidence import FusedResult
from emotion_agent.tools.media_checks import limit_hint
from emotion_agent.tools.settings import Settings

log = logging.getLogger("emotion_agent.service.server")
router = APIRouter()


def response_of(result: FusedResult, request_id: str, tenant: str | None, upload: UploadDir | None,
                extra_warnings: list[str]) -> AnalyzeResponse:
    """The API answer for a fused result (conversation id without its tenant scope, upload paths scrubbed)."""
    evidence = [EvidenceOut(
        id=e.id, modality=e.modality, expert=e.expert, model_id=e.model_id, label=e.label,
        confidence=round(e.confidence, 4), distribution={k: round(v, 4) for k, v in e.distribution.items()},
        cues=[str(c) for c in e.cues], warnings=[scrub(w, upload) for w in e.warnings],
        latency_ms=round(e.latency_ms, 2),
        transcript=e.transcript.text if e.transcript is not None else None, text_mode=e.text_mode,
    ) for e in result.evidence]
    warnings = list(dict.fromkeys([*extra_warnings, *(scrub(w, upload) for w in result.warnings)]))
    return AnalyzeResponse(
        request_id=request_id,
        conversation_id=unscoped_id(tenant, result.conversation_id) if result.conversation_id else None,
        speaker=result.speaker, turn_index=result.turn_index if result.conversation_id else None,
        label=result.label, confidence=round(result.confidence, 4),
        distribution={k: round(v, 4) for k, v in result.distribution.items()}, evidence=evidence,
        contributions={k: round(v, 4) for k, v in result.contributions.items()},
        fusion_policy=result.fusion_policy, adjudication=result.adjudication, text_mode=result.text_mode,
        explanation=result.explanation, explanation_source=result.explanation_source,
        cited_evidence_ids=result.cited_evidence_ids, reply_hint=reply_hint(result.label, result.confidence),
        warnings=warnings, timings_ms=result.timings_ms,
    )


def _sse(event: str, data: Any) -> ServerSentEvent:
    """One server-sent event (sse-starlette) with a JSON payload."""
    payload = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)
    return ServerSentEvent(data=payload, event=event)


def request_id_of(request: Request) -> str:
    """The request id the middleware gave ``request`` (``-`` when none)."""
    return request.scope.get("state", {}).get("request_id", "-")


async def read_analyze_request(request: Request, upload: UploadDir,
                               ctx: ServiceContext) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse a JSON or multipart body into (fields, {slot: "kind:path"} of saved uploads)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        raw = await request.body()
        try:
            body = AnalyzeRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise ServiceError(422, validation_message(exc.errors()), "invalid_request") from None
        return body.model_dump(), {}
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ServiceError(415, "send application/json ({text, conversation_id, speaker, explain}) or "
                                "multipart/form-data with audio/image/video files", "unsupported_media_type")
    try:
        form = await request.form(max_files=3, max_fields=8, max_part_size=64 * 1024)
    except TooLarge:
        raise
    except Exception as exc:
        raise ServiceError(400, f"malformed multipart body: {short(exc)}", "bad_multipart") from None
    if not form.multi_items() and request.headers.get("content-length", "0") not in ("", "0"):
        await form.close()  # a body whose parts never completed (e.g. no closing boundary): not "nothing to analyse"
        raise ServiceError(400, "malformed multipart body: no complete part (is the closing boundary missing?)",
                           "bad_multipart")
    fields: dict[str, Any] = {}
    files: dict[str, str] = {}
    refused: list[SecurityError] = []
    allowed_fields = {"text", "conversation_id", "speaker", "explain"}
    for key, value in form.multi_items():
        if key in ALLOWED:
            if not isinstance(value, UploadFile):
                raise ServiceError(422, f"'{key}' must be an uploaded file, not a string (server paths are "
                                        "never read)", "invalid_request")
            if key in files:
                raise ServiceError(422, f"one '{key}' file per request", "invalid_request")
            try:
                files[key] = await save_upload(key, value, upload, ctx.cfg.limits)
            except SecurityError as exc:  # judged with the rest of the turn (build_turn), as the CLI does
                refused.append(exc)
        elif key in allowed_fields:
            if isinstance(value, UploadFile):
                raise ServiceError(422, f"'{key}' must be a form field, not a file", "invalid_request")
            fields[key] = value
        else:
            raise ServiceError(422, f"unknown field '{key}' (allowed: text, conversation_id, speaker, explain, "
                                    "audio, image, video)", "invalid_request")
    await form.close()
    explain = str(fields.get("explain", "false")).strip().lower()
    if explain not in ("true", "false", "1", "0", "yes", "no", "on", "off", ""):
        raise ServiceError(422, "explain must be true or false", "invalid_request")
    fields["explain"] = explain in ("true", "1", "yes", "on")
    if "text" in fields and len(fields["text"]) > 20_000:
        raise ServiceError(422, "text is longer than 20000 characters", "invalid_request")
    fields["_refused"] = refused
    return fields, files


async def save_upload(slot: str, file: UploadFile, upload: UploadDir, limits: Limits) -> str:
    """Sniff, size-check and save one uploaded file; returns ``"<kind>:<path>"``."""
    head = await file.read(64)
    if not head:
        raise SecurityError(422, f"the {slot} upload is empty", "empty_upload")
    kind = sniff(head)
    if kind is None or kind not in ALLOWED[slot]:
        what = describe(head) if kind is None else f"{kind} ({KINDS[kind][0]})"
        raise SecurityError(415, f"the {slot} upload is {what}, not an accepted {slot} format "
                                 f"({', '.join(sorted(ALLOWED[slot]))}); the file name and declared type "
                                 "are ignored", "unsupported_media_type")
    path = upload.file(slot, KINDS[kind][1])
    size = len(head)
    with path.open("wb") as out:
        out.write(head)
        while chunk := await file.read(1 << 20):
            size += len(chunk)
            if size > limits.max_upload_bytes:
                raise SecurityError(413, f"the {slot} upload is larger than "
                                         f"{limits.max_upload_bytes // (1024 * 1024)} MiB {limit_hint('max_upload_bytes')}",
                                    "too_large")
            out.write(chunk)
    return f"{kind}:{path}"


def build_turn(fields: dict[str, Any], files: dict[str, str], t: str | None,
               settings: Settings) -> tuple[Any, list[str]]:
    """Validate the fields and build the turn with :func:`make_turn` (which strips instructions); (turn, warnings)."""
    cid = validate_conversation_id(fields.get("conversation_id"))
    speaker = validate_speaker(fields.get("speaker"))
    text = fields.get("text")
    warnings: list[str] = []
    refused: list[SecurityError] = fields.get("_refused") or []
    if refused:
        usable_text = bool(text and any(ch.isalpha() for ch in strip_injections(text)[0] or ""))
        if not files and not usable_text:
            raise refused[0]  # nothing usable is left: the file's own status and reason
        warnings.extend(f"input not analysed: {e.message}" for e in refused)
    # instructions are stripped once, by make_turn, so the turn keeps them in ``removed_instructions`` (the
    # faithfulness check reads them) and its warning reaches the answer through the turn
    if not (text and text.strip()) and not files:
        raise ServiceError(422, "nothing to analyse: send non-empty text, or an audio, image or video file",
                           "invalid_request")
    paths = {slot: v.split(":", 1)[1] for slot, v in files.items()}
    try:
        turn = make_turn(text=text, audio=paths.get("audio"), image=paths.get("image"),
                         video=paths.get("video"), conversation_id=cid, tenant=t,
                         speaker=speaker, check_media=False, settings=settings)
    except InputError as exc:
        raise ServiceError(422, str(exc), "invalid_request") from None
    return turn, warnings


def probe_all(turn: Any, files: dict[str, str], limits: Limits) -> tuple[Any, list[str]]:
    """Probe every saved upload (fully decodes, within the limits); a failing one is dropped with a warning
    when the turn has other usable input (as in the CLI), else its error is the answer."""
    from pathlib import Path as P

    failed: list[tuple[str, SecurityError]] = []
    for slot, v in files.items():
        kind, path = v.split(":", 1)
        try:
            probe(P(path), slot, kind, limits)
        except SecurityError as exc:
            failed.append((slot, exc))
    if not failed:
        return turn, []
    left = set(files) - {slot for slot, _ in failed}
    usable_text = bool(turn.text and any(ch.isalpha() for ch in turn.text))
    if not left and not usable_text:
        raise failed[0][1]
    update = {f"{slot}_path": None for slot, _ in failed}
    return turn.model_copy(update=update), [f"input not analysed: {e.message}" for _, e in failed]


def wants_stream(request: Request, stream: bool | None) -> bool:
    """Whether to answer with server-sent events (``stream`` wins over the Accept header)."""
    if stream is not None:
        return stream
    return "text/event-stream" in request.headers.get("accept", "")


@router.post("/v1/analyze", response_model=AnalyzeResponse, tags=["analysis"],
          summary="Analyse one user turn (JSON text, or multipart with audio/image/video)",
          openapi_extra={"requestBody": {"content": {
              "application/json": {"schema": AnalyzeRequest.model_json_schema()},
              "multipart/form-data": {"schema": {"type": "object", "properties": {
                  "text": {"type": "string"}, "conversation_id": {"type": "string"},
                  "speaker": {"type": "string"}, "explain": {"type": "boolean"},
                  "audio": {"type": "string", "format": "binary"}, "image": {"type": "string", "format": "binary"},
                  "video": {"type": "string", "format": "binary"}}}}}, "required": True}})
async def analyze(request: Request, t: str | None = Depends(tenant),
                  stream: bool | None = Query(default=None, description="Server-sent events: label first.")):
    """Analyse one user turn; streams server-sent events when ``stream`` or Accept asks."""
    ctx = ctx_of(request)
    cfg = ctx.cfg
    agent = ctx.get_agent()
    upload = UploadDir()
    streaming = False
    try:
        fields, files = await read_analyze_request(request, upload, ctx)
        turn, warnings = build_turn(fields, files, t, ctx.settings)
        explain = bool(fields.get("explain"))
        request_id = request_id_of(request)
        if wants_stream(request, stream):
            streaming = True
            return EventSourceResponse(stream_analysis(ctx, agent, turn, files, explain, t, upload, warnings,
                                                       request_id),
                                       background=BackgroundTask(upload.cleanup), ping=15,
                                       headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        deadline = time.monotonic() + cfg.request_timeout_s
        out = await ctx.worker.run(label_job(agent, turn, files, explain, cfg.limits), cfg.request_timeout_s)
        result = out["result"]
        if explain:
            result = await ctx.llm_worker.run(explain_job(out), max(1.0, deadline - time.monotonic()),
                                          what="explanation")
        return response_of(result, request_id, t, upload, warnings)
    finally:
        if not streaming:
            upload.cleanup()


def label_job(agent: Any, turn: Any, files: dict[str, str], explain: bool,
              limits: Limits) -> Callable[[], dict[str, Any]]:
    """The graph up to the fused label (experts, fusion; memory when no explanation): the expert lane."""

    def job() -> dict[str, Any]:
        """Probe the uploads, run the graph to the fused label; keep the resume step for the explanation."""
        t2, notes = probe_all(turn, files, limits)
        result, resume = agent.label_first(t2, explain=explain)
        if notes:
            result = result.model_copy(update={"warnings": [*result.warnings, *notes]})
        return {"result": result, "resume": resume}

    return job


def explain_job(out: dict[str, Any]) -> Callable[[], FusedResult]:
    """The same graph run resumed: explanation, then memory (the LLM lane)."""

    def job() -> FusedResult:
        """Resume the graph for the explanation, or return the label-only result."""
        resume = out.get("resume")
        return resume() if resume is not None else out["result"]

    return job


async def stream_analysis(ctx: ServiceContext, agent: Any, turn: Any, files: dict[str, str], explain: bool,
                          t: str | None,
                          upload: UploadDir, warnings: list[str], request_id: str) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: ``label``, then ``explanation`` if asked, ``done`` (or ``error``)."""
    deadline = time.monotonic() + ctx.cfg.request_timeout_s
    try:
        try:
            out = await ctx.worker.run(label_job(agent, turn, files, explain, ctx.cfg.limits),
                                       max(1.0, deadline - time.monotonic()))
        except (ServiceError, SecurityError) as exc:
            yield _sse("error", ErrorOut(error=ErrorBody(code=exc.code, message=exc.message, request_id=request_id)))
            return
        except Exception as exc:
            code, msg = (("memory_unavailable", "the conversation memory store is unavailable; retry shortly")
                         if is_memory_failure(exc) else ("internal_error", f"internal error ({type(exc).__name__})"))
            log.warning("stream failed: %s rid=%s", type(exc).__name__, request_id)
            yield _sse("error", ErrorOut(error=ErrorBody(code=code, message=msg, request_id=request_id)))
            return
        result: FusedResult = out["result"]
        yield _sse("label", response_of(result, request_id, t, upload, warnings))
        if not explain:
            yield _sse("done", {"request_id": request_id})
            return

        try:
            final = await ctx.llm_worker.run(explain_job(out), max(1.0, deadline - time.monotonic()),
                                        what="explanation")
        except (ServiceError, SecurityError) as exc:
            yield _sse("error", ErrorOut(error=ErrorBody(code=exc.code, message=exc.message, request_id=request_id)))
            return
        except Exception as exc:
            log.warning("stream explanation failed: %s rid=%s", type(exc).__name__, request_id)
            yield _sse("error", ErrorOut(error=ErrorBody(code="internal_error", request_id=request_id,
                                                         message=f"explanation failed ({type(exc).__name__})")))
            return
        yield _sse("explanation", {"explanation": final.explanation, "explanation_source": final.explanation_source,
                                   "cited_evidence_ids": final.cited_evidence_ids})
        yield _sse("done", response_of(final, request_id, t, upload, warnings))
    finally:
        upload.cleanup()
