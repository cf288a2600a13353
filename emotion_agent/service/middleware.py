"""The body-size / request-id / access-log middleware (pure ASGI)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from emotion_agent.service.schemas import ErrorBody, ErrorOut
from emotion_agent.service.security import Limits
from emotion_agent.tools.media_checks import limit_hint

log = logging.getLogger("emotion_agent.service.server")


class TooLarge(Exception):
    """The request body went over its limit (answered 413 by :class:`GuardMiddleware`)."""


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
        json_body = ctype.startswith("application/json")
        limit = self.limits.max_json_bytes if json_body else self.limits.max_request_bytes
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
                raise TooLarge()
            seen = {"n": 0}

            async def receive_wrapper() -> dict[str, Any]:
                """Pass messages on; raise :class:`TooLarge` once the body exceeds the limit."""
                message = await receive()
                if message["type"] == "http.request":
                    seen["n"] += len(message.get("body", b""))
                    if seen["n"] > limit:
                        raise TooLarge()
                return message

            await self.app(scope, receive_wrapper, send_wrapper)
        except TooLarge:
            if status["code"] == 0:
                body = ErrorOut(error=ErrorBody(
                    code="too_large", request_id=request_id,
                    message=f"request body larger than {limit // 1024} KiB ({'JSON' if json_body else 'upload'} "
                            f"limit) {limit_hint('max_json_bytes' if json_body else 'max_request_bytes')}"
                )).model_dump_json()
                await send_wrapper({"type": "http.response.start", "status": 413,
                                    "headers": [(b"content-type", b"application/json")]})
                await send_wrapper({"type": "http.response.body", "body": body.encode()})
        finally:
            log.info("%s %s %s %.0fms rid=%s", scope.get("method"), scope.get("path"), status["code"] or "-",
                     (time.perf_counter() - start) * 1000, request_id)
