"""``WS /v1/stream``: voice turns streamed as they are spoken, one fused result per utterance.

Protocol (JSON text frames and binary audio frames; full description in ``docs/streaming.md``):

1. the client authenticates as on every ``/v1`` route (``Authorization: Bearer <key>`` or ``X-API-Key``)
   and sends ``{"type": "start", "conversation_id": ..., "speaker": ..., "options": {"explain": false,
   "partials": true}}``; the server answers ``ready`` with its limits;
2. the client sends binary frames of 16 kHz mono signed 16-bit little-endian PCM, at real-time pace;
3. the server cuts utterances with Silero VAD (:mod:`tools.stream_vad`), sends ``speech_start``, throttled
   ``partial`` transcripts (fast ASR, only while the model lane is idle) and, for each utterance, one
   ``final`` carrying the same JSON as ``POST /v1/analyze`` (the turn is remembered in the conversation);
4. ``{"type": "end"}`` (optional) ends the stream: the open utterance is finalised, then ``end``, close 1000.

Limits (``Settings``, each a clear close code and reason): bad messages 4400, auth 4401, idle 4408,
faster than real time by more than ``stream_max_lead_s`` 4413 (the stream is closed, no audio is dropped
silently), more than ``stream_max_per_key`` streams 4429, models still loading 1013. An utterance that
reaches ``stream_max_utterance_s`` is cut (a ``warning`` says so) and the speech goes on in the next one.
A client that vanishes loses only its open utterance; utterances it already finished are still analysed
and remembered, and no other stream is affected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import numpy as np
import soundfile as sf
from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketDisconnect

from emotion_agent.agent.inputs import make_turn
from emotion_agent.service.analysis import explain_job, label_job, response_of
from emotion_agent.service.context import ServiceContext, short
from emotion_agent.service.errors import ServiceError, validation_message
from emotion_agent.service.security import (SecurityError, UploadDir, presented_key, validate_conversation_id,
                                            validate_speaker)
from emotion_agent.tools.stream_vad import SAMPLE_RATE, SegmenterConfig, Utterance, UtteranceSegmenter

log = logging.getLogger("emotion_agent.service.stream")
router = APIRouter()

#: Close codes (also listed in docs/streaming.md).
BAD_REQUEST, UNAUTHORIZED, IDLE, TOO_FAST, TOO_MANY, STARTING = 4400, 4401, 4408, 4413, 4429, 1013
MAX_FRAME_S = 5.0  # one binary frame may carry at most this much audio


class StreamOptions(BaseModel):
    """Per-stream options of the start message."""

    model_config = ConfigDict(extra="forbid")
    explain: bool = False
    partials: bool = True


class StartMessage(BaseModel):
    """The first message of a stream."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(pattern="^start$")
    conversation_id: str | None = None
    speaker: str | None = None
    sample_rate: int = Field(default=SAMPLE_RATE, description="Must be 16000.")
    options: StreamOptions = Field(default_factory=StreamOptions)


class StreamSlots:
    """Open streams per tenant (API key), shared by every connection of the app."""

    def __init__(self) -> None:
        self._open: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def take(self, tenant: str, limit: int) -> bool:
        """Count one more stream for ``tenant``; False when it already has ``limit`` open."""
        with self._lock:
            if self._open[tenant] >= limit:
                return False
            self._open[tenant] += 1
            return True

    def give_back(self, tenant: str) -> None:
        """One stream of ``tenant`` closed."""
        with self._lock:
            self._open[tenant] = max(0, self._open[tenant] - 1)


class Closed(Exception):
    """End the stream with this close code and reason (the reason is also sent as an ``error`` message)."""

    def __init__(self, code: int, reason: str, name: str):
        super().__init__(reason)
        self.code, self.reason, self.name = code, reason, name


class StreamSession:
    """One open stream: receives audio, segments it, runs partials and finals on the model lanes."""

    def __init__(self, ws: WebSocket, ctx: ServiceContext, tenant: str | None, start: StartMessage):
        s = ctx.settings
        self.ws, self.ctx, self.tenant, self.start = ws, ctx, tenant, start
        self.cid = validate_conversation_id(start.conversation_id)
        self.speaker = validate_speaker(start.speaker)
        self.segmenter = UtteranceSegmenter(SegmenterConfig(end_silence_ms=s.stream_end_silence_ms,
                                                            max_utterance_s=s.stream_max_utterance_s))
        self.finals: asyncio.Queue[tuple[Utterance, float] | None] = asyncio.Queue()
        self.upload = UploadDir()
        self.send_lock = asyncio.Lock()
        self.gone = False  # the client vanished: nothing more is sent
        self.received_s = 0.0
        self.first_audio: float | None = None
        self.partial_task: asyncio.Task | None = None
        self.partial_at_s = 0.0  # speech seconds of the open utterance at its last partial
        self.announced = -1  # last utterance whose speech_start was sent
        self.finalised = -1  # last utterance whose final was sent
        self.sent_finals = 0
        self.transcriber = ctx.agent.experts.get("transcribe") if ctx.agent is not None else None

    # ---- sending ------------------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message unless the client is gone (a failed send marks it gone)."""
        if self.gone:
            return
        try:
            async with self.send_lock:
                await self.ws.send_text(json.dumps(message))
        except Exception:  # noqa: BLE001 - a vanished client is not an error of the server
            self.gone = True

    # ---- receiving ----------------------------------------------------------------------------------
    async def receive_loop(self) -> None:
        """Read frames until the end message (or a limit / the client vanishing)."""
        s = self.ctx.settings
        while True:
            try:
                msg = await asyncio.wait_for(self.ws.receive(), s.stream_idle_timeout_s)
            except asyncio.TimeoutError:
                raise Closed(IDLE, f"idle: nothing received for {s.stream_idle_timeout_s:g} s "
                                   "(EMOTION_AGENT_STREAM_IDLE_TIMEOUT_S)", "idle_timeout") from None
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            if msg.get("bytes") is not None:
                self.on_audio(msg["bytes"])
            elif msg.get("text") is not None:
                if self.on_text(msg["text"]):
                    return

    def on_text(self, text: str) -> bool:
        """A JSON control message; True for the end message."""
        try:
            body = json.loads(text)
        except ValueError:
            raise Closed(BAD_REQUEST, "text frames must be JSON ({\"type\": \"end\"})", "bad_request") from None
        if not isinstance(body, dict) or body.get("type") != "end":
            raise Closed(BAD_REQUEST, "the only control message after start is {\"type\": \"end\"}; audio goes in "
                                      "binary frames", "bad_request")
        for u in self.segmenter.flush():
            self.finals.put_nowait((u, time.monotonic()))
        return True

    def on_audio(self, data: bytes) -> None:
        """Check the pace, feed the VAD, queue ended utterances, start a partial when due."""
        s = self.ctx.settings
        if len(data) % 2:
            raise Closed(BAD_REQUEST, "audio frames must hold whole 16-bit samples (even byte count)", "bad_audio")
        if len(data) > MAX_FRAME_S * SAMPLE_RATE * 2:
            raise Closed(BAD_REQUEST, f"one audio frame may hold at most {MAX_FRAME_S:g} s", "bad_audio")
        now = time.monotonic()
        if self.first_audio is None:
            self.first_audio = now
        self.received_s += len(data) / (2 * SAMPLE_RATE)
        lead = self.received_s - (now - self.first_audio)
        if lead > s.stream_max_lead_s:
            raise Closed(TOO_FAST, f"faster than real time: {lead:.1f} s of audio ahead of the clock (limit "
                                   f"{s.stream_max_lead_s:g} s, EMOTION_AGENT_STREAM_MAX_LEAD_S); send at real-time "
                                   "pace", "too_fast")
        audio = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        for u in self.segmenter.feed(audio):
            if u.reason == "max_length":
                asyncio.ensure_future(self.send({
                    "type": "warning", "code": "utterance_cut", "utterance": u.index,
                    "message": f"utterance {u.index} reached {s.stream_max_utterance_s:g} s "
                               "(EMOTION_AGENT_STREAM_MAX_UTTERANCE_S): cut here; the speech goes on in the next"}))
            self.finals.put_nowait((u, now))
        if self.segmenter.in_speech:
            index = self.segmenter.open_index
            if index != self.announced:
                self.announced, self.partial_at_s = index, 0.0
                asyncio.ensure_future(self.send({"type": "speech_start", "utterance": index,
                                                 "at_s": round(self.received_s, 3)}))
            self.maybe_partial(index)

    # ---- partial transcripts --------------------------------------------------------------------------
    def maybe_partial(self, index: int) -> None:
        """Start a partial transcript after each ``stream_partial_every_s`` of new speech, when the lane is idle."""
        every = self.ctx.settings.stream_partial_every_s
        if (not every or not self.start.options.partials or self.transcriber is None
                or self.segmenter.open_speech_s - self.partial_at_s < every
                or (self.partial_task is not None and not self.partial_task.done())
                or self.ctx.worker.pending > 0):  # finals come first: skip a partial while the models are busy
            return
        self.partial_at_s = self.segmenter.open_speech_s
        audio = self.segmenter.open_audio
        self.partial_task = asyncio.ensure_future(self.partial(index, audio))

    async def partial(self, index: int, audio: np.ndarray) -> None:
        """Transcribe the open utterance so far and send it (dropped if its final went out first)."""
        try:
            out = await self.ctx.worker.run(lambda: self.transcriber.transcribe_audio(audio), 10.0, "partial")
        except Exception as exc:  # noqa: BLE001 - a partial is a courtesy; the final carries the result
            log.info("partial transcript skipped: %s", short(exc))
            return
        text = " ".join(seg["text"] for seg in out.get("segments", [])).strip()
        if index > self.finalised and text:
            await self.send({"type": "partial", "utterance": index, "text": text,
                             "audio_s": round(len(audio) / SAMPLE_RATE, 2)})

    async def drain(self, finals: asyncio.Task, *, flush: bool) -> None:
        """Before a limit closes the stream: finish the utterances already ended (and the open one when
        ``flush``), so their finals still reach the client."""
        if flush:
            for u in self.segmenter.flush():
                self.finals.put_nowait((u, time.monotonic()))
        self.finals.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(finals), self.ctx.cfg.request_timeout_s)
        except asyncio.TimeoutError:
            pass

    # ---- finals ---------------------------------------------------------------------------------------
    async def final_loop(self) -> None:
        """Analyse ended utterances one after the other (in order) until the queue's end marker."""
        while (item := await self.finals.get()) is not None:
            utterance, ended_at = item
            await self.final(utterance, ended_at)

    async def final(self, u: Utterance, ended_at: float) -> None:
        """One utterance through the same path as ``POST /v1/analyze``: its WAV, ``make_turn``, the graph."""
        ctx, cfg = self.ctx, self.ctx.cfg
        rid = uuid.uuid4().hex[:12]
        path = self.upload.file(f"utt{u.index}", ".wav")
        sf.write(str(path), u.audio, SAMPLE_RATE, subtype="PCM_16")
        head = {"utterance": u.index, "start_s": round(u.start_s, 3), "speech_end_s": round(u.speech_end_s, 3),
                "duration_s": round(len(u.audio) / SAMPLE_RATE, 3), "reason": u.reason}
        try:
            turn = make_turn(audio=path, conversation_id=self.cid, speaker=self.speaker, tenant=self.tenant,
                             check_media=False, settings=ctx.settings)
            explain = self.start.options.explain
            out = await ctx.worker.run(label_job(ctx.get_agent(), turn, {}, explain, cfg.limits),
                                       cfg.request_timeout_s)
            result = out["result"]
            if explain:
                result = await ctx.llm_worker.run(explain_job(out), cfg.request_timeout_s, "explanation")
        except (ServiceError, SecurityError) as exc:
            await self.send({"type": "final_error", **head, "code": exc.code, "message": exc.message})
            return
        except Exception as exc:  # noqa: BLE001 - one bad utterance must not end the stream
            log.warning("stream utterance failed: %s rid=%s", type(exc).__name__, rid)
            await self.send({"type": "final_error", **head, "code": "internal_error",
                             "message": f"internal error ({type(exc).__name__}); quote request id {rid}"})
            return
        finally:
            path.unlink(missing_ok=True)
        self.finalised = max(self.finalised, u.index)
        self.sent_finals += 1
        await self.send({"type": "final", **head, "latency_ms": round((time.monotonic() - ended_at) * 1000, 1),
                         "result": json.loads(response_of(result, rid, self.tenant, self.upload, []).model_dump_json())})


async def close_with(ws: WebSocket, code: int, reason: str, name: str) -> None:
    """Send an ``error`` message, then close with ``code`` (the reason is cut to the 123 bytes allowed)."""
    try:
        await ws.send_text(json.dumps({"type": "error", "code": name, "close_code": code, "message": reason}))
        await ws.close(code=code, reason=reason.encode()[:123].decode(errors="ignore"))
    except Exception:  # noqa: BLE001 - the client may already be gone
        pass


async def read_start(ws: WebSocket, timeout: float) -> StartMessage:
    """The start message, validated (4400 otherwise)."""
    try:
        msg = await asyncio.wait_for(ws.receive(), timeout)
    except asyncio.TimeoutError:
        raise Closed(IDLE, f"no start message within {timeout:g} s", "idle_timeout") from None
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    try:
        start = StartMessage.model_validate_json(msg.get("text") or "")
    except ValidationError as exc:
        raise Closed(BAD_REQUEST, "the first message must be JSON {\"type\": \"start\", \"conversation_id\", "
                                  "\"speaker\", \"options\"}: " + validation_message(exc.errors()),
                     "bad_request") from None
    if start.sample_rate != SAMPLE_RATE:
        raise Closed(BAD_REQUEST, f"audio must be {SAMPLE_RATE} Hz mono 16-bit PCM", "bad_request")
    return start


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    """Streamed voice turns (see the module docstring and docs/streaming.md)."""
    ctx: ServiceContext = ws.app.state.ctx
    slots: StreamSlots | None = getattr(ws.app.state, "stream_slots", None)
    if slots is None:  # one per app (the event loop is single-threaded: no race here)
        slots = ws.app.state.stream_slots = StreamSlots()
    await ws.accept()
    s = ctx.settings
    try:
        tenant = ctx.tenant_for(presented_key(ws.headers.get("authorization"), ws.headers.get("x-api-key")))
    except SecurityError as exc:
        await close_with(ws, UNAUTHORIZED, exc.message, "unauthorized")
        return
    if not ctx.ready or ctx.agent is None:
        await close_with(ws, STARTING, "models are still loading; retry in a few seconds", "starting")
        return
    key = tenant or ""
    if not slots.take(key, s.stream_max_per_key):
        await close_with(ws, TOO_MANY, f"this key already has {s.stream_max_per_key} open streams "
                                       "(EMOTION_AGENT_STREAM_MAX_PER_KEY)", "too_many_streams")
        return
    session: StreamSession | None = None
    finals: asyncio.Task | None = None
    try:
        start = await read_start(ws, s.stream_idle_timeout_s)
        session = StreamSession(ws, ctx, tenant, start)
        await session.send({"type": "ready", "conversation_id": session.cid, "speaker": session.speaker,
                            "limits": {"max_utterance_s": s.stream_max_utterance_s,
                                       "end_silence_ms": s.stream_end_silence_ms,
                                       "idle_timeout_s": s.stream_idle_timeout_s,
                                       "max_lead_s": s.stream_max_lead_s, "max_per_key": s.stream_max_per_key,
                                       "partial_every_s": s.stream_partial_every_s}})
        finals = asyncio.ensure_future(session.final_loop())
        await session.receive_loop()
        session.finals.put_nowait(None)
        await finals
        await session.send({"type": "end", "utterances": session.sent_finals})
        await ws.close(code=1000)
    except Closed as exc:
        if session is not None and finals is not None:
            await session.drain(finals, flush=exc.name == "idle_timeout")
        await close_with(ws, exc.code, exc.reason, exc.name)
    except (SecurityError, ServiceError) as exc:
        await close_with(ws, BAD_REQUEST, exc.message, exc.code)
    except WebSocketDisconnect:
        log.info("stream client went away")
    except Exception as exc:  # noqa: BLE001
        log.warning("stream failed: %s", type(exc).__name__, exc_info=exc)
        await close_with(ws, 1011, f"internal error ({type(exc).__name__})", "internal_error")
    finally:
        slots.give_back(key)
        if session is not None:
            session.gone = True  # closed: nothing more can be sent
            await wind_down(session, finals)


async def wind_down(session: StreamSession, finals: asyncio.Task | None) -> None:
    """After the stream ended for any reason: the utterances already ended are still analysed and remembered
    (in the background when the client is gone); the open one is dropped; the scratch folder is removed."""
    if finals is not None and not finals.done():
        session.finals.put_nowait(None)

        async def finish() -> None:
            try:
                await finals
            finally:
                session.upload.cleanup()

        asyncio.ensure_future(finish())
        return
    session.upload.cleanup()
