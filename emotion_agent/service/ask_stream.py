"""``POST /v1/ask?stream=true`` (or ``Accept: text/event-stream``): server-sent events of the ask loop as they
happen: ``tool_call_start`` (a tool's name as the model writes it), ``tool_call`` and ``tool_result`` per tool
called, the answer's ``token``s as generated (provisional; ``token_reset`` / ``answer_reset`` when dropped), then
``answer`` (the same body as the JSON response, the checked answer) or ``error``. The loop runs on the LLM
lane; its events cross to the event loop by a queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from emotion_agent.service.analysis import _sse
from emotion_agent.service.context import ServiceContext
from emotion_agent.service.errors import ServiceError

log = logging.getLogger("emotion_agent.service.server")
_END = object()
#: An ask is several LLM calls (tens of seconds on 2 cores, minutes on a loaded machine): its own, longer limit.
ASK_TIMEOUT_S = 300.0


def ask_timeout(ctx: ServiceContext) -> float:
    """Seconds an ask may take on the LLM lane: the service's request limit, at least ``ASK_TIMEOUT_S``."""
    return max(ASK_TIMEOUT_S, ctx.cfg.request_timeout_s)


async def stream_ask(ctx: ServiceContext, run: Callable[[Callable[[str, dict], None]], Any],
                     respond: Callable[[Any], Any]) -> AsyncIterator[Any]:
    """Events of ``run(on_event)`` (run on the LLM lane), then ``answer`` with ``respond(answer)``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def on_event(kind: str, data: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, data))

    async def job() -> Any:
        try:
            return await ctx.llm_worker.run(lambda: run(on_event), ask_timeout(ctx), "ask")
        finally:
            queue.put_nowait(_END)

    task = asyncio.create_task(job())
    while (item := await queue.get()) is not _END:
        yield _sse(*item)
    try:
        answer = await task
    except ServiceError as exc:
        yield _sse("error", {"error": {"code": exc.code, "message": exc.message}})
        return
    except Exception as exc:  # the stream has started: report, do not raise
        log.warning("ask stream failed: %s", type(exc).__name__)
        yield _sse("error", {"error": {"code": "internal_error", "message": "the ask failed"}})
        return
    yield _sse("answer", respond(answer))
