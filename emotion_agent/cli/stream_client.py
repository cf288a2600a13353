"""``emotion-agent stream FILE``: play a file to ``WS /v1/stream`` at real-time pace and print the events.

:func:`stream_audio` is the client itself (the streaming benchmark uses it too): it sends 16 kHz mono 16-bit
PCM frames on an absolute real-time schedule, then ``{"type": "end"}``, and returns every event the server
sent with the time it arrived (seconds after the first frame was sent).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import typer

from emotion_agent.console import UserError, console

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


def print_event(event: dict[str, Any]) -> None:
    """One line per event."""
    kind, at = event["type"], f"{event['at']:7.2f}s"
    if kind == "final":
        r = event["result"]
        heard = next((e.get("transcript") for e in r["evidence"] if e["expert"] == "transcribe"), None)
        console.print(f"{at} [bold]final[/bold] #{event['utterance']} {r['label']} {r['confidence']:.2f} "
                      f"({event['start_s']:.2f}-{event['speech_end_s']:.2f} s, {event['reason']}, "
                      f"{event['latency_ms']:.0f} ms after the end) {heard!r}", soft_wrap=True)
    elif kind == "partial":
        console.print(f"{at} partial #{event['utterance']}: {event['text']}", style="dim", soft_wrap=True)
    elif kind in ("warning", "error", "final_error"):
        console.print(f"{at} [yellow]{kind}[/yellow] {event.get('code')}: {event.get('message')}", soft_wrap=True)
    else:
        console.print(f"{at} {kind} " + json.dumps({k: v for k, v in event.items() if k not in ("type", "at")}),
                      style="dim", soft_wrap=True)


def stream(
    file: Path = typer.Argument(..., help="Audio or video file (decoded to 16 kHz mono)."),
    url: str = typer.Option("ws://127.0.0.1:8000/v1/stream", help="The service's stream URL."),
    key: Optional[str] = typer.Option(None, help="API key (default: $EMOTION_AGENT_API_KEY)."),
    conversation: Optional[str] = typer.Option(None, "--conversation", "-c", help="Conversation id (remembered)."),
    speaker: Optional[str] = typer.Option(None, "--speaker", "-s", help="Who is speaking."),
    speed: float = typer.Option(1.0, min=0.1, max=2.0, help="Playback pace (1 = real time; the server allows "
                                                            "a small lead only)."),
    explain: bool = typer.Option(False, "--explain/--no-explain", help="Explain each utterance's label."),
    as_json: bool = typer.Option(False, "--json", help="Print each event as one JSON line."),
) -> None:
    """Play FILE to WS /v1/stream at real-time pace and print partial transcripts and one result per utterance."""
    from emotion_agent.tools.base import ExpertError
    from emotion_agent.tools.media import load_audio

    if not file.is_file():
        raise UserError(f"file not found: {file}")
    try:
        audio, _ = load_audio(file, 3600.0, "stream")
    except ExpertError as exc:
        raise UserError(str(exc)) from None
    audio = np.concatenate([audio, np.zeros(SAMPLE_RATE, dtype=np.float32)])  # 1 s of silence ends the speech
    show = (lambda e: sys.stdout.write(json.dumps(e) + "\n")) if as_json else print_event
    try:
        run = asyncio.run(stream_audio(url, audio, key=key or os.environ.get("EMOTION_AGENT_API_KEY"),
                                       conversation=conversation, speaker=speaker, speed=speed,
                                       options={"explain": explain}, on_event=show))
    except OSError as exc:
        raise UserError(f"cannot connect to {url}: {exc}") from None
    except Exception as exc:  # websockets' handshake errors (bad URL, HTTP status)
        if type(exc).__module__.startswith("websockets"):
            raise UserError(f"stream to {url} failed: {exc}") from None
        raise
    if run.close_code not in (None, 1000):
        why = next((e["message"] for e in reversed(run.events) if e["type"] == "error"), run.close_reason)
        raise UserError(f"the server closed the stream ({run.close_code}): {why}")
