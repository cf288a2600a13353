"""The service's own error: an HTTP status, a machine-readable code and a user-facing message."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("emotion_agent.service.server")


class ServiceError(Exception):
    """A request failure answered as a JSON error with HTTP ``status`` and a machine ``code``."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def is_memory_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the conversation memory store being unavailable."""
    from emotion_agent.agent.memory import MemoryStoreError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        mod = type(exc).__module__ or ""
        if isinstance(exc, MemoryStoreError) or mod.startswith(("chromadb", "httpx", "httpcore")) or \
                isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def as_service_error(exc: BaseException) -> ServiceError:
    """Unexpected failures → a clear JSON error (memory store down → 503), logged without request data."""
    if is_memory_failure(exc):
        log.warning("memory store unavailable: %s", type(exc).__name__)
        return ServiceError(503, "the conversation memory store is unavailable; retry shortly", "memory_unavailable")
    log.error("unexpected %s", type(exc).__name__, exc_info=exc)
    return ServiceError(500, f"internal error ({type(exc).__name__})", "internal_error")


def validation_message(errors: Any) -> str:
    """One readable line from pydantic's validation errors (at most five of them)."""
    parts = []
    for e in list(errors)[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",))
        msg = e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden":
            msg = "unknown field (file paths and other fields are not accepted; upload media as multipart files)"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid request: " + "; ".join(parts)
