"""Work lanes: model work queued on single-thread workers (bounded queue, per-request timeout)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


from emotion_agent.service.errors import ServiceError, as_service_error
from emotion_agent.service.security import (
    SecurityError,
)


log = logging.getLogger("emotion_agent.service.lanes")


# ---- bounded LLM prompt cache ------------------------------------------------------------------------
def bound_llm_cache(llama: Any, capacity_mb: int) -> None:
    """Give llama.cpp a prompt cache that counts its true size (see :func:`agent.llm.sized_ram_cache`)."""
    from emotion_agent.agent.llm import sized_ram_cache

    if getattr(getattr(llama, "cache", None), "true_size", False):
        return
    llama.set_cache(sized_ram_cache(capacity_mb))


# ---- the model worker ---------------------------------------------------------------------------
class _Skipped(Exception):
    pass


class ModelWorker:
    """One thread runs every model call, in arrival order; at most ``max_queue`` jobs wait."""

    def __init__(self, max_queue: int):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-worker")
        self.max_queue = max_queue
        self._pending = 0
        self._lock = threading.Lock()
        self.completed = 0

    @property
    def pending(self) -> int:
        """Jobs submitted to this worker that have not finished yet (queued or running)."""
        return self._pending

    async def run(self, fn: Callable[[], Any], timeout: float, what: str = "analysis") -> Any:
        """Run ``fn`` on the worker thread; 503 when the queue is full, 504 after ``timeout`` s."""
        with self._lock:
            if self._pending >= self.max_queue:
                raise ServiceError(503, f"server busy: {self._pending} requests are queued for the models; "
                                        "retry in a few seconds", "busy")
            self._pending += 1
        queued_behind = self._pending - 1
        abandoned = threading.Event()

        def job() -> Any:
            """Run ``fn`` unless its request already timed out."""
            if abandoned.is_set():  # its request already timed out: do not spend the cores on it
                raise _Skipped()
            return fn()

        def done(f: Any) -> None:
            """Update the counters and retrieve the job's exception (no "never retrieved" noise)."""
            with self._lock:
                self._pending -= 1
                self.completed += 1
            if not f.cancelled():
                f.exception()  # retrieved: no "never retrieved" noise for abandoned jobs

        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.executor, job)
        fut.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            abandoned.set()
            raise ServiceError(504, f"{what} did not finish within {timeout:.0f} s ({queued_behind} requests were "
                                    "queued ahead of it); retry, or ask for explain=false", "timeout") from None
        except (ServiceError, SecurityError, _Skipped):
            raise
        except Exception as exc:
            raise as_service_error(exc) from exc

    def shutdown(self) -> None:
        """Stop the worker thread without waiting; queued jobs are cancelled."""
        self.executor.shutdown(wait=False, cancel_futures=True)
