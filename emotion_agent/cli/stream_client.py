"""``emotion-agent stream FILE``: play a file to ``WS /v1/stream`` at real-time pace and print the events
(the client itself: :mod:`emotion_agent.service.stream_client`)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from emotion_agent.console import UserError, console
from emotion_agent.service.stream_client import SAMPLE_RATE, stream_audio


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
