"""HTTP service for chatbots: ``emotion-agent serve`` (FastAPI + uvicorn).

Endpoints (OpenAPI docs at ``/docs``):

* ``POST /v1/analyze`` — one user turn, JSON ``{text, conversation_id, speaker, explain}`` or multipart
  with ``audio`` / ``image`` / ``video`` files; answers label, confidence, per-modality evidence,
  explanation and a deterministic reply hint. ``?stream=true`` or ``Accept: text/event-stream``
  streams server-sent events: ``label`` first, then ``explanation``, then ``done``.
* ``GET|DELETE /v1/conversations/{id}`` — the turns with labels / forget memory and stored records.
* ``POST /v1/why`` — an analyst's question about a stored turn, answered from its stored record.
* ``GET /healthz``.
* ``WS /v1/stream`` — streamed voice: PCM in, partial transcripts and one result per utterance out
  (:mod:`service.stream`).

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
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emotion_agent.service import analysis, routes, stream
from emotion_agent.service.analysis import request_id_of
from emotion_agent.service.config import ServiceConfig
from emotion_agent.service.context import ServiceContext
from emotion_agent.service.errors import ServiceError, is_memory_failure, validation_message
from emotion_agent.service.logs import install_log_redaction
from emotion_agent.service.middleware import GuardMiddleware
from emotion_agent.service.schemas import ErrorBody, ErrorOut
from emotion_agent.service.security import SecurityError
from emotion_agent.tools.settings import Settings

__all__ = ["ServiceConfig", "create_app"]

log = logging.getLogger("emotion_agent.service.server")


def create_app(settings: Settings | None = None, agent: Any = None, *, config: ServiceConfig | None = None,
               routers: Sequence[APIRouter] = (), **overrides: Any) -> FastAPI:
    """The FastAPI app. ``agent`` (an ``EmotionAgent``) is built from ``settings`` at start when not given.

    ``overrides`` set :class:`ServiceConfig` fields (``keys``, ``allow_no_auth``, ``request_timeout_s``...).
    ``routers`` are mounted beside the API and share its context (the analyst pages use this).
    Auth-off is checked by the ``serve`` command (it knows the bind address); an app built with no keys
    and without ``allow_no_auth=True`` refuses every /v1 request.
    """
    settings = settings or Settings.from_env()
    cfg = config or ServiceConfig.from_env(settings)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    ctx = ServiceContext(settings, cfg, agent=agent)
    install_log_redaction([*cfg.keys.secrets(), os.environ.get("EMOTION_AGENT_LLM_API_KEY", "")])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Load and warm up the models on the expert lane at start; stop both lanes at shutdown."""
        await asyncio.get_running_loop().run_in_executor(ctx.worker.executor, ctx.load)
        log.info("emotion-agent service ready (auth %s, llm %s, memory %s)",
                 "on" if cfg.keys.enabled else "OFF", "remote" if settings.llm_url else settings.llm,
                 "chroma server" if settings.chroma_url else "embedded")
        yield
        ctx.shutdown()

    app = FastAPI(title="emotion-agent", version="0.1.0", lifespan=lifespan,
                  description="Emotion of each chatbot user turn (MELD's 7 labels) with evidence, explanation "
                              "and a reply hint. Authenticate with `Authorization: Bearer <key>` or `X-API-Key`.",
                  responses={401: {"model": ErrorOut}, 413: {"model": ErrorOut}, 415: {"model": ErrorOut},
                             422: {"model": ErrorOut}, 503: {"model": ErrorOut}, 504: {"model": ErrorOut}})
    app.state.ctx = ctx
    app.add_middleware(GuardMiddleware, limits=cfg.limits)
    add_error_handlers(app)
    app.include_router(analysis.router)
    app.include_router(routes.router)
    app.include_router(stream.router)
    for router in routers:
        app.include_router(router)
    return app


def error_response(request: Request, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response (:class:`ErrorOut`) carrying the request id."""
    body = ErrorOut(error=ErrorBody(code=code, message=message, request_id=request_id_of(request)))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """Every failure answers as one JSON error with the request id (pages may override per route)."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):  # noqa: ANN202
        return error_response(request, exc.status, exc.code, exc.message,
                              {"Retry-After": "5"} if exc.status == 503 else None)

    @app.exception_handler(SecurityError)
    async def _security_error(request: Request, exc: SecurityError):  # noqa: ANN202
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(request, exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):  # noqa: ANN202
        return error_response(request, 422, "invalid_request", validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):  # noqa: ANN202
        return error_response(request, exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # noqa: ANN202
        rid = request_id_of(request)
        if is_memory_failure(exc):
            log.warning("memory store unavailable: %s rid=%s", type(exc).__name__, rid)
            return error_response(request, 503, "memory_unavailable", "the conversation memory store is "
                                  "unavailable; retry shortly", {"Retry-After": "5"})
        log.error("unexpected %s rid=%s", type(exc).__name__, rid, exc_info=exc)
        return error_response(request, 500, "internal_error", f"internal error ({type(exc).__name__}); "
                                                              f"quote request id {rid}")
