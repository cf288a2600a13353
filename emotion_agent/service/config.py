"""The service's knobs: timeouts, queue bound, upload limits, keys (from settings and env)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from emotion_agent.service.security import ApiKeys, Limits
from emotion_agent.tools.settings import Settings


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
        limits = Limits.from_settings(settings, max_upload_bytes=int(mb * 1024 * 1024),
                                      max_request_bytes=int(mb * 2.5 * 1024 * 1024))
        cfg = cls(request_timeout_s=_env_float("EMOTION_AGENT_REQUEST_TIMEOUT_S", 30.0),
                  max_queue=int(_env_float("EMOTION_AGENT_MAX_QUEUE", 64)), limits=limits, keys=ApiKeys.from_env())
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg
