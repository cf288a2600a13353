"""What every route of the service shares: settings, config, the model lanes and the loaded agent.

One :class:`ServiceContext` is built by ``create_app`` and kept on ``app.state.ctx``; the API routes and
the analyst pages (``emotion_agent.web``) read it through :func:`ctx_of`, so both use the same keys,
the same agent and memory, and the same lanes (model work never runs on two threads at once).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Header, Request

from emotion_agent.agent.inputs import make_turn
from emotion_agent.service.config import ServiceConfig
from emotion_agent.service.errors import ServiceError, as_service_error
from emotion_agent.service.lanes import ModelWorker, bound_llm_cache
from emotion_agent.service.security import SecurityError, UploadDir, presented_key, sweep_stale_uploads
from emotion_agent.tools.settings import Settings

log = logging.getLogger("emotion_agent.service.server")


def short(exc: BaseException) -> str:
    """The first line of an exception's message (or its type), at most 160 characters."""
    return (str(exc).split("\n")[0] or type(exc).__name__)[:160]


def scrub(text: str, upload: UploadDir | None) -> str:
    """``text`` without the server's upload paths (they would leak the file system layout)."""
    if upload is not None:
        text = text.replace(str(upload.path), "<upload>")
    return re.sub(r"/tmp/[^\s'\"]+", "<upload>", text)


@dataclass
class ServiceContext:
    """The service's shared state: the agent (built at start unless given), its lanes and its config."""

    settings: Settings
    cfg: ServiceConfig
    agent: Any = None
    ready: bool = False
    started: float = field(default_factory=time.time)
    worker: ModelWorker = field(init=False)  # experts + fusion + memory
    llm_worker: ModelWorker = field(init=False)  # explanations (the same lane unless separate_llm_lane)

    def __post_init__(self) -> None:
        self.worker = ModelWorker(self.cfg.max_queue)
        self.llm_worker = ModelWorker(self.cfg.max_queue) if self.cfg.separate_llm_lane else self.worker

    # ---- start and stop ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Build the agent and warm every model up (run on the expert lane at start)."""
        sweep_stale_uploads(max(3600.0, 4 * self.cfg.request_timeout_s))
        if self.agent is None:
            from emotion_agent.agent.runtime import EmotionAgent

            self.agent = EmotionAgent(self.settings)
        if self.cfg.warmup:
            for name, expert in self.agent.experts.items():
                try:
                    expert.warmup()
                except Exception as exc:  # one broken expert must not take the service down
                    log.warning("expert %s failed to warm up (%s: %s); its turns will carry a warning",
                                name, type(exc).__name__, short(exc))
            if self.uses_llm():
                try:
                    llama = getattr(self.agent.llm, "llama", None)  # local llama.cpp: load the weights now
                    if llama is not None:
                        bound_llm_cache(llama, self.cfg.llm_cache_mb)
                except Exception as exc:
                    log.warning("LLM failed to load (%s); explanations will use the template", type(exc).__name__)
            # first inference pays one-off costs (ONNX session, prompt cache); pay them now
            try:
                self.agent.analyze(make_turn(text="Hello, thanks for your help."), explain=False, remember=False)
            except Exception as exc:  # pragma: no cover - reported by /healthz and on first request
                log.warning("warm-up analysis failed: %s", type(exc).__name__)
        self.ready = True

    def uses_llm(self) -> bool:
        """Whether any request will call the LLM (rephrased explanations, adjudication, the LLM planner): only
        then are its weights loaded at start (by default explanations are composed and the LLM stays unloaded)."""
        s = self.settings
        return s.explain_llm or s.adjudicate or s.planner == "llm"

    def shutdown(self) -> None:
        """Stop both lanes."""
        self.worker.shutdown()
        self.llm_worker.shutdown()

    # ---- what routes ask for ----------------------------------------------------------------------------
    def get_agent(self) -> Any:
        """The loaded agent; 503 while the models are still loading."""
        if not self.ready or self.agent is None:
            raise ServiceError(503, "models are still loading; retry in a few seconds", "starting")
        return self.agent

    def memory(self) -> Any:
        """The agent's conversation memory; 503 when memory is disabled."""
        agent = self.get_agent()
        if agent.memory is None:
            raise ServiceError(503, "conversation memory is disabled on this server", "memory_disabled")
        return agent.memory

    def tenant_for(self, key: str | None) -> str | None:
        """The tenant of an API key (None when auth-off is allowed); 401 when refused."""
        if not self.cfg.keys.enabled:
            if self.cfg.allow_no_auth:
                return None
            raise SecurityError(401, "the server has no API keys configured and auth-off was not allowed",
                                "unauthorized")
        t = self.cfg.keys.tenant_for(key)
        if t is None:
            raise SecurityError(401, "missing or invalid API key: send 'Authorization: Bearer <key>' or "
                                     "'X-API-Key: <key>'", "unauthorized")
        return t

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Memory reads/deletes: off the event loop, not behind the model queue, errors mapped to JSON."""
        timeout = self.cfg.request_timeout_s
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout)
        except asyncio.TimeoutError:
            raise ServiceError(504, f"the memory store did not answer within {timeout:.0f} s", "timeout") from None
        except (ServiceError, SecurityError):
            raise
        except Exception as exc:
            raise as_service_error(exc) from exc


def ctx_of(request: Request) -> ServiceContext:
    """The service context of the app serving ``request``."""
    return request.app.state.ctx


async def tenant(request: Request, authorization: str | None = Header(default=None, include_in_schema=False),
                 x_api_key: str | None = Header(default=None, include_in_schema=False)) -> str | None:
    """Dependency: the API key's tenant (None if auth-off is allowed); 401 when refused."""
    return ctx_of(request).tenant_for(presented_key(authorization, x_api_key))
