"""The ``serve`` command: the HTTP API and the analyst pages (``/ui``), built from settings, under uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from emotion_agent.console import UserError
from emotion_agent.tools.settings import Settings


def serve(
    host: str = typer.Option("127.0.0.1", help="Bind address (auth may be off only on loopback)."),
    port: int = typer.Option(8000, help="TCP port."),
    allow_no_auth: bool = typer.Option(False, "--allow-no-auth",
                                       help="Serve without API keys (loopback only)."),
    llm: str = typer.Option(None, help="LLM registry name or .gguf path (default: settings)."),
    timeout: float = typer.Option(None, help="Per-request timeout in seconds (default 30)."),
    max_queue: int = typer.Option(None, help="Requests allowed to wait for the models (default 64)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    runs_dir: Path = typer.Option(None, "--runs-dir", help="Eval runs the analyst pages browse (default: "
                                                           "$EMOTION_AGENT_RUNS_DIR or ./runs)."),
) -> None:
    """Serve the HTTP API for chatbots (POST /v1/analyze, /v1/why, conversations, /healthz, /docs) and the
    analyst pages at /ui (eval runs, turns with their evidence, ask why, live analysis; log in with a key)."""
    import uvicorn

    from emotion_agent.service.security import ApiKeys, check_auth_config
    from emotion_agent.service.config import ServiceConfig
    from emotion_agent.web.app import create_web_app

    settings = Settings.from_env(llm=llm)
    try:
        keys = ApiKeys.from_env()
        check_auth_config(host, keys, allow_no_auth)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not settings.llm_url:
        from emotion_agent.agent.llm import resolve_gguf

        resolve_gguf(settings.llm, settings)  # a bad --llm is a one-line user error
    logging.getLogger("emotion_agent").setLevel(getattr(logging, log_level.upper(), logging.INFO))
    app = create_web_app(settings, config=ServiceConfig.from_env(settings, keys=keys, allow_no_auth=allow_no_auth,
                                                                 request_timeout_s=timeout, max_queue=max_queue),
                         runs_dir=runs_dir)
    uvicorn.run(app, host=host, port=port, workers=1, access_log=False, log_level=log_level,
                timeout_graceful_shutdown=5)
