"""A Python client of ``WS /v1/stream`` (used by ``emotion-agent stream`` and the streaming benchmark).

:func:`stream_audio` sends 16 kHz mono 16-bit PCM frames on an absolute real-time schedule, then
``{"type": "end"}``, and returns every event the server sent with the time it arrived (seconds after the start
message was sent).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

SAMPLE_RATE = 16_000


@dataclass
class StreamRun:
    """What one streamed file gave: events (each with ``at``, seconds after the first frame), the close."""

    events: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    sent_s: float = 0.0

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The events of one type."""
        return [e for e in self.events if e["type"] == kind]


def pcm16(audio: np.ndarray) -> bytes:
    """float32 in [-1, 1] → 16-bit little-endian PCM bytes."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


async def stream_audio(url: str, audio: np.ndarray, *, key: str | None = None, conversation: str | None = None,
                       speaker: str | None = None, options: dict[str, Any] | None = None, frame_ms: int = 100,
                       speed: float = 1.0, stop_after_s: float | None = None, send_end: bool = True,
                       on_event: Callable[[dict[str, Any]], None] | None = None) -> StreamRun:
    """Stream ``audio`` (16 kHz float32) to ``url``; ``stop_after_s`` drops the connection after that much audio
    (a client that vanishes), otherwise ``{"type": "end"}`` is sent and the server's ``end`` awaited."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    run = StreamRun()
    start = {"type": "start", "conversation_id": conversation, "speaker": speaker, "options": options or {}}
    async with connect(url, additional_headers=headers, max_size=None, open_timeout=30) as ws:
        await ws.send(json.dumps(start))
        t0 = time.monotonic()

        async def receive() -> None:
            try:
                async for raw in ws:
                    event = json.loads(raw)
                    event["at"] = round(time.monotonic() - t0, 4)
                    run.events.append(event)
                    if on_event is not None:
                        on_event(event)
            except ConnectionClosed:
                pass

        reader = asyncio.ensure_future(receive())
        step = int(SAMPLE_RATE * frame_ms / 1000)
        try:
            for i, at in enumerate(range(0, len(audio), step)):
                if stop_after_s is not None and at / SAMPLE_RATE >= stop_after_s:
                    break
                delay = t0 + i * frame_ms / 1000 / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if reader.done():  # the server closed the stream
                    break
                await ws.send(pcm16(audio[at:at + step]))
                run.sent_s = min(len(audio), at + step) / SAMPLE_RATE
            if stop_after_s is not None:
                reader.cancel()
                ws.transport.abort()  # vanish: no close handshake, no end message
                return run
            if send_end and not reader.done():
                await ws.send(json.dumps({"type": "end"}))
        except ConnectionClosed:  # the server closed first (a limit, a bad key): its error event says why
            pass
        await reader
        run.close_code, run.close_reason = ws.close_code, ws.close_reason or ""
    return run
