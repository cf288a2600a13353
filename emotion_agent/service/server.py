"""HTTP service for chatbots: ``emotion-agent serve`` (FastAPI + uvicorn).

Endpoints (OpenAPI docs at ``/docs``):

* ``POST /v1/analyze`` — one user turn, JSON ``{text, conversation_id, speaker, explain}`` or multipart
  with ``audio`` / ``image`` / ``video`` files; answers label, confidence, per-modality evidence,
  explanation and a deterministic reply hint. ``?stream=true`` or ``Accept: text/event-stream``
  streams server-sent events: ``label`` first, then ``explanation``, then ``done``.
* ``GET|DELETE /v1/conversations/{id}`` — the turns with labels / forget memory and stored records.
* ``POST /v1/why`` — an analyst's question about a stored turn, answered from its stored record.
* ``GET /healthz``.

Models load once at start (``agent.warmup()``). Model work is queued on single-thread lanes, never run
in parallel threads: one lane for the experts + fusion + memory (the label), one for the LLM
(explanations, ``/why``), so a slow explanation does not hold up label-only turns while each model
still sees one request at a time (``separate_llm_lane=False``: one lane for everything). Queues are
bounded (503 when full) and each request waits at most ``request_timeout_s`` before a clear 504 JSON
error. Safety (keys, tenants, upload sniffing and limits, instruction stripping, log redaction) lives
in :mod:`service.security`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from emotion_agent.tools.settings import Settings
from emotion_agent.agent.inputs import InputError, make_turn
from emotion_agent.agent.reply_hint import reply_hint
from emotion_agent.service.security import (
    ALLOWED,
    ApiKeys,
    Limits,
    SecurityError,
    UploadDir,
    KINDS,
    describe,
    presented_key,
    probe,
    scoped_id,
    sniff,
    sweep_stale_uploads,
    unscoped_id,
    validate_conversation_id,
    validate_speaker,
)
from emotion_agent.agent.injection import strip_injections
from emotion_agent.agent.why import answer_why
from emotion_agent.service.logs import install_log_redaction
from emotion_agent.tools.evidence import FusedResult

from emotion_agent.service.errors import ServiceError, as_service_error, is_memory_failure
from emotion_agent.service.lanes import ModelWorker, bound_llm_cache
from emotion_agent.service.schemas import (
    AnalyzeRequest,
    AnalyzeResponse,
    ConversationOut,
    DeletedOut,
    ErrorBody,
    ErrorOut,
    EvidenceOut,
    TurnOut,
    WhyRequest,
    WhyResponse,
)

log = logging.getLogger("emotion_agent.service.server")


# ---- configuration ------------------------------------------------------------------------------
def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass
class ServiceConfig:
    """Service knobs; env ``EMOTION_AGENT_REQUEST_TIMEOUT_S``, ``..._MAX_QUEUE``, ``..._MAX_UPLOAD_MB``."""

    request_timeout_s: float = 30.0
    max_queue: int = 64
    limits: Limits = field(default_factory=Limits)
    keys: ApiKeys = field(default_factory=ApiKeys)
    allow_no_auth: bool = False
    warmup: bool = True
    #: LLM work (explanations, /why) on its own single-thread lane, so a slow explanation never holds up
    #: label-only turns; each model still sees one request at a time. False: everything on one lane.
    separate_llm_lane: bool = True
    llm_cache_mb: int = 512

    @classmethod
    def from_env(cls, settings: Settings, **overrides: Any) -> "ServiceConfig":
        """Config from ``settings`` and the service env variables; non-None ``overrides`` win."""
        mb = _env_float("EMOTION_AGENT_MAX_UPLOAD_MB", 25.0)
        limits = Limits(max_upload_bytes=int(mb * 1024 * 1024), max_request_bytes=int(mb * 2.5 * 1024 * 1024),
                        max_audio_s=settings.max_audio_s, max_video_s=settings.max_audio_s)
        cfg = cls(request_timeout_s=_env_float("EMOTION_AGENT_REQUEST_TIMEOUT_S", 30.0),
                  max_queue=int(_env_float("EMOTION_AGENT_MAX_QUEUE", 64)), limits=limits, keys=ApiKeys.from_env())
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg




# ---- helpers ------------------------------------------------------------------------------------------
def _scrub(text: str, upload: UploadDir | None) -> str:
    if upload is not None:
        text = text.replace(str(upload.path), "<upload>")
    return re.sub(r"/tmp/[^\s'\"]+", "<upload>", text)


def _response(result: FusedResult, request_id: str, tenant: str | None, upload: UploadDir | None,
              extra_warnings: list[str]) -> AnalyzeResponse:
    evidence = [EvidenceOut(
        id=e.id, modality=e.modality, expert=e.expert, model_id=e.model_id, label=e.label,
        confidence=round(e.confidence, 4), distribution={k: round(v, 4) for k, v in e.distribution.items()},
        cues=[str(c) for c in e.cues], warnings=[_scrub(w, upload) for w in e.warnings],
        latency_ms=round(e.latency_ms, 2),
        transcript=e.extra.get("transcript") if isinstance(e.extra.get("transcript"), str) else None,
    ) for e in result.evidence]
    warnings = list(dict.fromkeys([*extra_warnings, *(_scrub(w, upload) for w in result.warnings)]))
    return AnalyzeResponse(
        request_id=request_id,
        conversation_id=unscoped_id(tenant, result.conversation_id) if result.conversation_id else None,
        speaker=result.speaker, turn_index=result.turn_index if result.conversation_id else None,
        label=result.label, confidence=round(result.confidence, 4),
        distribution={k: round(v, 4) for k, v in result.distribution.items()}, evidence=evidence,
        contributions={k: round(v, 4) for k, v in result.contributions.items()},
        fusion_policy=result.fusion_policy, adjudication=result.adjudication,
        explanation=result.explanation, explanation_source=result.explanation_source,
        cited_evidence_ids=result.cited_evidence_ids, reply_hint=reply_hint(result.label, result.confidence),
        warnings=warnings, timings_ms=result.timings_ms,
    )


async def _in_thread(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """Memory reads/deletes: off the event loop, not behind the model queue, errors mapped to JSON."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout)
    except asyncio.TimeoutError:
        raise ServiceError(504, f"the memory store did not answer within {timeout:.0f} s", "timeout") from None
    except (ServiceError, SecurityError):
        raise
    except Exception as exc:
        raise as_service_error(exc) from exc


def _sse(event: str, data: Any) -> ServerSentEvent:
    """One server-sent event (sse-starlette) with a JSON payload."""
    payload = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)
    return ServerSentEvent(data=payload, event=event)


# ---- the body-size / request-id / access-log middleware ----------------------------------------------
class _TooLarge(Exception):
    pass


class GuardMiddleware:
    """Pure ASGI: request id, body size cap (declared and streamed), one access-log line without secrets."""

    def __init__(self, app: Any, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:12]
        scope.setdefault("state", {})["request_id"] = request_id
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        ctype = headers.get("content-type", "")
        limit = self.limits.max_json_bytes if ctype.startswith("application/json") else self.limits.max_request_bytes
        start = time.perf_counter()
        status = {"code": 0}

        async def send_wrapper(message: dict[str, Any]) -> None:
            """Record the response status and add the ``x-request-id`` header."""
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        declared = headers.get("content-length")
        try:
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise _TooLarge()
            seen = {"n": 0}

            async def receive_wrapper() -> dict[str, Any]:
                """Pass messages on; raise :class:`_TooLarge` once the body exceeds the limit."""
                message = await receive()
                if message["type"] == "http.request":
                    seen["n"] += len(message.get("body", b""))
                    if seen["n"] > limit:
                        raise _TooLarge()
                return message

            await self.app(scope, receive_wrapper, send_wrapper)
        except _TooLarge:
            if status["code"] == 0:
                body = ErrorOut(error=ErrorBody(
                    code="too_large", request_id=request_id,
                    message=f"request body larger than {limit // 1024} KiB "
                            f"({'JSON' if limit == self.limits.max_json_bytes else 'upload'} limit)")).model_dump_json()
                await send_wrapper({"type": "http.response.start", "status": 413,
                                    "headers": [(b"content-type", b"application/json")]})
                await send_wrapper({"type": "http.response.body", "body": body.encode()})
        finally:
            log.info("%s %s %s %.0fms rid=%s", scope.get("method"), scope.get("path"), status["code"] or "-",
                     (time.perf_counter() - start) * 1000, request_id)


# ---- the app ------------------------------------------------------------------------------------------
def create_app(settings: Settings | None = None, agent: Any = None, *, config: ServiceConfig | None = None,
               **overrides: Any) -> FastAPI:
    """The FastAPI app. ``agent`` (an ``EmotionAgent``) is built from ``settings`` at start when not given.

    ``overrides`` set :class:`ServiceConfig` fields (``keys``, ``allow_no_auth``, ``request_timeout_s``...).
    Auth-off is checked by the ``serve`` command (it knows the bind address); an app built with no keys
    and without ``allow_no_auth=True`` refuses every /v1 request.
    """
    settings = settings or Settings.from_env()
    cfg = config or ServiceConfig.from_env(settings)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    worker = ModelWorker(cfg.max_queue)  # experts + fusion + memory
    llm_worker = ModelWorker(cfg.max_queue) if cfg.separate_llm_lane else worker
    state: dict[str, Any] = {"agent": agent, "ready": False, "started": time.time()}
    install_log_redaction([*cfg.keys.secrets(), os.environ.get("EMOTION_AGENT_LLM_API_KEY", "")])

    def _load() -> None:
        sweep_stale_uploads(max(3600.0, 4 * cfg.request_timeout_s))
        if state["agent"] is None:
            from emotion_agent.agent.runtime import EmotionAgent

            state["agent"] = EmotionAgent(settings)
        if cfg.warmup:
            agent = state["agent"]
            for name, expert in agent.experts.items():
                try:
                    expert.warmup()
                except Exception as exc:  # one broken expert must not take the service down
                    log.warning("expert %s failed to warm up (%s: %s); its turns will carry a warning",
                                name, type(exc).__name__, _short(exc))
            try:
                llama = getattr(agent.llm, "llama", None)  # local llama.cpp: load the weights now
                if llama is not None:
                    bound_llm_cache(llama, cfg.llm_cache_mb)
            except Exception as exc:
                log.warning("LLM failed to load (%s); explanations will use the template", type(exc).__name__)
            # first inference pays one-off costs (ONNX session, prompt cache); pay them now
            try:
                state["agent"].analyze(make_turn(text="Hello, thanks for your help."), explain=False, remember=False)
            except Exception as exc:  # pragma: no cover - reported by /healthz and on first request
                log.warning("warm-up analysis failed: %s", type(exc).__name__)
        state["ready"] = True

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Load and warm up the models on the expert lane at start; stop both lanes at shutdown."""
        await asyncio.get_running_loop().run_in_executor(worker.executor, _load)
        log.info("emotion-agent service ready (auth %s, llm %s, memory %s)",
                 "on" if cfg.keys.enabled else "OFF", "remote" if settings.llm_url else settings.llm,
                 "chroma server" if settings.chroma_url else "embedded")
        yield
        worker.shutdown()
        llm_worker.shutdown()

    app = FastAPI(title="emotion-agent", version="0.1.0", lifespan=lifespan,
                  description="Emotion of each chatbot user turn (MELD's 7 labels) with evidence, explanation "
                              "and a reply hint. Authenticate with `Authorization: Bearer <key>` or `X-API-Key`.",
                  responses={401: {"model": ErrorOut}, 413: {"model": ErrorOut}, 415: {"model": ErrorOut},
                             422: {"model": ErrorOut}, 503: {"model": ErrorOut}, 504: {"model": ErrorOut}})
    app.state.worker = worker
    app.state.llm_worker = llm_worker
    app.state.config = cfg
    app.state.runtime = state
    app.add_middleware(GuardMiddleware, limits=cfg.limits)

    def rid(request: Request) -> str:
        """The request id the middleware gave ``request`` (``-`` when none)."""
        return request.scope.get("state", {}).get("request_id", "-")

    def error(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        """A JSON error response (:class:`ErrorOut`) carrying the request id."""
        return JSONResponse(ErrorOut(error=ErrorBody(code=code, message=message, request_id=rid(request))).model_dump(),
                            status_code=status, headers=headers)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):  # noqa: ANN202
        return error(request, exc.status, exc.code, exc.message,
                     {"Retry-After": "5"} if exc.status == 503 else None)

    @app.exception_handler(SecurityError)
    async def _security_error(request: Request, exc: SecurityError):  # noqa: ANN202
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error(request, exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):  # noqa: ANN202
        return error(request, 422, "invalid_request", _validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):  # noqa: ANN202
        return error(request, exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # noqa: ANN202
        if is_memory_failure(exc):
            log.warning("memory store unavailable: %s rid=%s", type(exc).__name__, rid(request))
            return error(request, 503, "memory_unavailable", "the conversation memory store is unavailable; retry "
                                                             "shortly", {"Retry-After": "5"})
        log.error("unexpected %s rid=%s", type(exc).__name__, rid(request), exc_info=exc)
        return error(request, 500, "internal_error", f"internal error ({type(exc).__name__}); "
                                                     f"quote request id {rid(request)}")

    # ---- dependencies ---------------------------------------------------------------------------------
    async def tenant(authorization: str | None = Header(default=None, include_in_schema=False),
                     x_api_key: str | None = Header(default=None, include_in_schema=False)) -> str | None:
        """Dependency: the API key's tenant (None if auth-off is allowed); 401 when refused."""
        if not cfg.keys.enabled:
            if cfg.allow_no_auth:
                return None
            raise SecurityError(401, "the server has no API keys configured and auth-off was not allowed",
                                "unauthorized")
        t = cfg.keys.tenant_for(presented_key(authorization, x_api_key))
        if t is None:
            raise SecurityError(401, "missing or invalid API key: send 'Authorization: Bearer <key>' or "
                                     "'X-API-Key: <key>'", "unauthorized")
        return t

    def get_agent() -> Any:
        """The loaded agent; 503 while the models are still loading."""
        if not state["ready"] or state["agent"] is None:
            raise ServiceError(503, "models are still loading; retry in a few seconds", "starting")
        return state["agent"]

    def memory_of(agent: Any) -> Any:
        """The agent's conversation memory; 503 when memory is disabled."""
        if agent.memory is None:
            raise ServiceError(503, "conversation memory is disabled on this server", "memory_disabled")
        return agent.memory

    # ---- analysis --------------------------------------------------------------------------------------
    async def read_analyze_request(request: Request, upload: UploadDir) -> tuple[dict[str, Any], dict[str, str]]:
        """Parse a JSON or multipart body into (fields, {slot: "kind:path"} of saved uploads)."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            raw = await request.body()
            try:
                body = AnalyzeRequest.model_validate_json(raw)
            except ValidationError as exc:
                raise ServiceError(422, _validation_message(exc.errors()), "invalid_request") from None
            return body.model_dump(), {}
        if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise ServiceError(415, "send application/json ({text, conversation_id, speaker, explain}) or "
                                    "multipart/form-data with audio/image/video files", "unsupported_media_type")
        try:
            form = await request.form(max_files=3, max_fields=8, max_part_size=64 * 1024)
        except _TooLarge:
            raise
        except Exception as exc:
            raise ServiceError(400, f"malformed multipart body: {_short(exc)}", "bad_multipart") from None
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
                    files[key] = await save_upload(key, value, upload)
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

    async def save_upload(slot: str, file: UploadFile, upload: UploadDir) -> str:
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
                if size > cfg.limits.max_upload_bytes:
                    raise SecurityError(413, f"the {slot} upload is larger than "
                                             f"{cfg.limits.max_upload_bytes // (1024 * 1024)} MiB", "too_large")
                out.write(chunk)
        return f"{kind}:{path}"

    def build_turn(fields: dict[str, Any], files: dict[str, str], t: str | None) -> tuple[Any, list[str]]:
        """Validate the fields, strip instruction-like text and build the turn; (turn, warnings)."""
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
        if text is not None:
            text, removed = strip_injections(text)
            if removed:
                warnings.append(f"{removed} instruction-like span(s) in the text were not analysed "
                                "(user text cannot instruct the system)")
            if text is None and removed and not files:
                raise ServiceError(422, "the text only contained instructions to the system; nothing to analyse",
                                   "invalid_request")
        if not (text and text.strip()) and not files:
            raise ServiceError(422, "nothing to analyse: send non-empty text, or an audio, image or video file",
                               "invalid_request")
        paths = {slot: v.split(":", 1)[1] for slot, v in files.items()}
        try:
            turn = make_turn(text=text, audio=paths.get("audio"), image=paths.get("image"),
                             video=paths.get("video"), conversation_id=scoped_id(t, cid) if cid else None,
                             speaker=speaker, max_chars=settings.max_text_chars, check_media=False)
        except InputError as exc:
            raise ServiceError(422, str(exc), "invalid_request") from None
        return turn, warnings

    def probe_all(turn: Any, files: dict[str, str]) -> tuple[Any, list[str]]:
        """Probe every saved upload (fully decodes, within the limits); a failing one is dropped with a warning
        when the turn has other usable input (as in the CLI), else its error is the answer."""
        from pathlib import Path as P

        failed: list[tuple[str, SecurityError]] = []
        for slot, v in files.items():
            kind, path = v.split(":", 1)
            try:
                probe(P(path), slot, kind, cfg.limits)
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

    @app.post("/v1/analyze", response_model=AnalyzeResponse, tags=["analysis"],
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
        agent = get_agent()
        upload = UploadDir()
        streaming = False
        try:
            fields, files = await read_analyze_request(request, upload)
            turn, warnings = build_turn(fields, files, t)
            explain = bool(fields.get("explain"))
            request_id = rid(request)
            if wants_stream(request, stream):
                streaming = True
                return EventSourceResponse(stream_analysis(agent, turn, files, explain, t, upload, warnings,
                                                           request_id),
                                           background=BackgroundTask(upload.cleanup), ping=15,
                                           headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

            deadline = time.monotonic() + cfg.request_timeout_s
            out = await worker.run(label_job(agent, turn, files, explain), cfg.request_timeout_s)
            result = out["result"]
            if explain:
                result = await llm_worker.run(explain_job(out), max(1.0, deadline - time.monotonic()),
                                              what="explanation")
            return _response(result, request_id, t, upload, warnings)
        finally:
            if not streaming:
                upload.cleanup()

    def label_job(agent: Any, turn: Any, files: dict[str, str], explain: bool) -> Callable[[], dict[str, Any]]:
        """The graph up to the fused label (experts, fusion; memory when no explanation): the expert lane."""

        def job() -> dict[str, Any]:
            """Probe the uploads, run the graph to the fused label; keep the resume step for the explanation."""
            t2, notes = probe_all(turn, files)
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

    async def stream_analysis(agent: Any, turn: Any, files: dict[str, str], explain: bool, t: str | None,
                              upload: UploadDir, warnings: list[str], request_id: str) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events: ``label``, then ``explanation`` if asked, ``done`` (or ``error``)."""
        deadline = time.monotonic() + cfg.request_timeout_s
        try:
            try:
                out = await worker.run(label_job(agent, turn, files, explain), max(1.0, deadline - time.monotonic()))
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
            yield _sse("label", _response(result, request_id, t, upload, warnings))
            if not explain:
                yield _sse("done", {"request_id": request_id})
                return

            try:
                final = await llm_worker.run(explain_job(out), max(1.0, deadline - time.monotonic()),
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
            yield _sse("done", _response(final, request_id, t, upload, warnings))
        finally:
            upload.cleanup()

    # ---- conversations ---------------------------------------------------------------------------------
    cid_path = Path(description="Conversation id: 1-64 of [A-Za-z0-9._-].", max_length=64)

    @app.get("/v1/conversations/{conversation_id}", response_model=ConversationOut, tags=["memory"],
             summary="The stored turns of a conversation, with labels")
    async def get_conversation(conversation_id: str = cid_path, t: str | None = Depends(tenant)):
        """The stored turns of a conversation with their labels; 404 when there are none."""
        cid = validate_conversation_id(conversation_id)
        memory = memory_of(get_agent())
        turns = await _in_thread(memory.conversation, scoped_id(t, cid), True, timeout=cfg.request_timeout_s)
        if not turns:
            raise ServiceError(404, f"no stored turns for conversation '{cid}'", "not_found")
        return ConversationOut(conversation_id=cid, turns=[TurnOut(
            turn_index=x["turn_index"], speaker=x["speaker"], text=x["text"], label=x["label"],
            confidence=x["confidence"], explanation=(x.get("record") or {}).get("explanation")) for x in turns])

    @app.delete("/v1/conversations/{conversation_id}", response_model=DeletedOut, tags=["memory"],
                summary="Forget a conversation: its memory and stored records")
    async def delete_conversation(conversation_id: str = cid_path, t: str | None = Depends(tenant)):
        """Forget a conversation: delete its stored turns and records."""
        cid = validate_conversation_id(conversation_id)
        memory = memory_of(get_agent())
        n = await _in_thread(memory.forget, scoped_id(t, cid), timeout=cfg.request_timeout_s)
        log.info("forgot conversation (%d turns)", n)
        return DeletedOut(conversation_id=cid, deleted_turns=n)

    # ---- why -----------------------------------------------------------------------------------------------
    @app.post("/v1/why", response_model=WhyResponse, tags=["analysis"],
              summary="Answer an analyst's question about a stored turn, from its stored record")
    async def why(body: WhyRequest, t: str | None = Depends(tenant)):
        """Answer a (contrastive) question about a stored turn from its evidence (agent/why.py)."""
        cid = validate_conversation_id(body.conversation_id)
        agent = get_agent()
        memory = memory_of(agent)
        turns = await _in_thread(memory.conversation, scoped_id(t, cid), True, timeout=cfg.request_timeout_s)
        if not turns:
            raise ServiceError(404, f"no stored turns for conversation '{cid}'", "not_found")
        if body.turn_index is None:
            turn = turns[-1]
        else:
            match = [x for x in turns if x["turn_index"] == body.turn_index]
            if not match:
                raise ServiceError(404, f"conversation '{cid}' has no turn {body.turn_index} "
                                        f"(turns {turns[0]['turn_index']}-{turns[-1]['turn_index']})", "not_found")
            turn = match[0]
        record = turn.get("record")
        if not record:
            raise ServiceError(404, f"turn {turn['turn_index']} has no stored record to answer from", "not_found")
        result = FusedResult.model_validate(record)
        ans = answer_why(result, body.question)
        return WhyResponse(conversation_id=cid, turn_index=turn["turn_index"], label=result.label,
                           confidence=round(result.confidence, 4), answer=ans.answer, contrast=ans.contrast,
                           cited_evidence_ids=ans.cited_evidence_ids, source="evidence", refused=ans.refused,
                           warnings=[])

    # ---- health --------------------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"], summary="Liveness and readiness (no auth)")
    async def healthz():
        """Liveness and readiness: 200 when models are loaded and memory is ok or off, else 503."""
        agent = state["agent"]
        memory = "disabled"
        if agent is not None and agent.memory is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(agent.memory.collection.count), 3.0)
                memory = "ok"
            except Exception:
                memory = "unavailable"
        ready = bool(state["ready"])
        ok = ready and memory in ("ok", "disabled")
        body = {"status": "ok" if ok else ("starting" if not ready else "degraded"), "models_loaded": ready,
                "memory": memory, "queued": worker.pending + (llm_worker.pending if llm_worker is not worker else 0),
                "queued_llm": llm_worker.pending, "completed": worker.completed,
                "llm": "remote" if settings.llm_url else settings.llm,
                "memory_backend": "chroma-server" if settings.chroma_url else "embedded",
                "uptime_s": round(time.time() - state["started"], 1), "pid": os.getpid()}
        return JSONResponse(body, status_code=200 if ok else 503)

    return app


def _validation_message(errors: Any) -> str:
    parts = []
    for e in list(errors)[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",))
        msg = e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden":
            msg = "unknown field (file paths and other fields are not accepted; upload media as multipart files)"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid request: " + "; ".join(parts)


def _short(exc: BaseException) -> str:
    return (str(exc).split("\n")[0] or type(exc).__name__)[:160]
