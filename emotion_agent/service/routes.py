"""Conversation memory, ``/v1/why`` and ``/healthz``: the routes that read what the analysis stored."""

from __future__ import annotations

import asyncio
import logging
import os
import time

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from emotion_agent.agent.conversation_summary import summarize_conversation
from emotion_agent.agent.why import answer_why
from emotion_agent.service.analysis import wants_stream
from emotion_agent.service.ask_stream import ask_timeout, stream_ask
from emotion_agent.service.context import ctx_of, tenant
from emotion_agent.service.errors import ServiceError
from emotion_agent.service.schemas import (AskRequest, AskResponse, ConversationOut, DeletedOut, SummaryOut, TurnOut,
                                           WhyRequest, WhyResponse)
from emotion_agent.service.security import scoped_id, validate_conversation_id
from emotion_agent.tools.evidence import FusedResult

log = logging.getLogger("emotion_agent.service.server")
router = APIRouter()
cid_path = Path(description="Conversation id: 1-64 of [A-Za-z0-9._-].", max_length=64)


async def stored_conversation(request: Request, conversation_id: str | None, t: str | None) -> tuple[str, list[dict]]:
    """The valid id and the stored turns (with records) of the key's conversation; 404 when there are none."""
    ctx = ctx_of(request)
    cid = validate_conversation_id(conversation_id)
    if cid is None:
        raise ServiceError(422, "conversation_id is required", "bad_conversation_id")
    turns = await ctx.in_thread(ctx.memory().conversation, scoped_id(t, cid), True)
    if not turns:
        raise ServiceError(404, f"no stored turns for conversation '{cid}'", "not_found")
    return cid, turns


@router.get("/v1/conversations/{conversation_id}", response_model=ConversationOut, tags=["memory"],
            summary="The stored turns of a conversation, with labels")
async def get_conversation(request: Request, conversation_id: str = cid_path, t: str | None = Depends(tenant)):
    """The stored turns of a conversation with their labels; 404 when there are none."""
    cid, turns = await stored_conversation(request, conversation_id, t)
    return ConversationOut(conversation_id=cid, turns=[TurnOut(
        turn_index=x["turn_index"], speaker=x["speaker"], text=x["text"], label=x["label"],
        confidence=x["confidence"], explanation=(x.get("record") or {}).get("explanation")) for x in turns])


@router.get("/v1/conversations/{conversation_id}/summary", response_model=SummaryOut, tags=["memory"],
            summary="Label trajectory and turning points of a conversation, from its stored evidence")
async def conversation_summary(request: Request, conversation_id: str = cid_path, t: str | None = Depends(tenant)):
    """The deterministic summary (agent/conversation_summary.py) of this key's conversation; 404 when empty."""
    cid, turns = await stored_conversation(request, conversation_id, t)
    return SummaryOut(conversation_id=cid, **summarize_conversation(turns).model_dump())


@router.post("/v1/ask", response_model=AskResponse, tags=["analysis"],
             summary="Answer a question about a stored conversation: the LLM calls tools bound to it")
async def ask(request: Request, body: AskRequest, t: str | None = Depends(tenant),
              stream: bool | None = Query(default=None, description="Server-sent events: each tool call first.")):
    """The ask agent (agent/ask_loop.py) over this key's conversation; the answer is checked for grounding.
    With ``stream`` (or ``Accept: text/event-stream``): ``tool_call``/``tool_result`` events, then ``answer``."""
    ctx = ctx_of(request)
    cid, _ = await stored_conversation(request, body.conversation_id, t)
    agent = ctx.get_agent()

    def run(on_event=None):  # noqa: ANN001, ANN202 - the loop's event callback
        return agent.ask(body.question, conversation_id=scoped_id(t, cid), on_event=on_event)

    def respond(ans) -> AskResponse:  # noqa: ANN001 - agent.ask_loop.Answer
        return AskResponse(conversation_id=cid, answer=ans.text, grounded=ans.grounded, citations=ans.citations,
                           tool_calls=ans.tool_calls, warnings=ans.warnings)
    if wants_stream(request, stream):
        return EventSourceResponse(stream_ask(ctx, run, respond))
    return respond(await ctx.llm_worker.run(run, ask_timeout(ctx), "ask"))


@router.delete("/v1/conversations/{conversation_id}", response_model=DeletedOut, tags=["memory"],
               summary="Forget a conversation: its memory and stored records")
async def delete_conversation(request: Request, conversation_id: str = cid_path, t: str | None = Depends(tenant)):
    """Forget a conversation: delete its stored turns and records."""
    ctx = ctx_of(request)
    cid = validate_conversation_id(conversation_id)
    n = await ctx.in_thread(ctx.memory().forget, scoped_id(t, cid))
    log.info("forgot conversation (%d turns)", n)
    return DeletedOut(conversation_id=cid, deleted_turns=n)


def stored_turn(turns: list[dict], cid: str, turn_index: int | None) -> dict:
    """The asked turn of a stored conversation (the last when ``turn_index`` is None); 404 otherwise."""
    if not turns:
        raise ServiceError(404, f"no stored turns for conversation '{cid}'", "not_found")
    if turn_index is None:
        turn = turns[-1]
    else:
        match = [x for x in turns if x["turn_index"] == turn_index]
        if not match:
            raise ServiceError(404, f"conversation '{cid}' has no turn {turn_index} "
                                    f"(turns {turns[0]['turn_index']}-{turns[-1]['turn_index']})", "not_found")
        turn = match[0]
    if not turn.get("record"):
        raise ServiceError(404, f"turn {turn['turn_index']} has no stored record to answer from", "not_found")
    return turn


@router.post("/v1/why", response_model=WhyResponse, tags=["analysis"],
             summary="Answer an analyst's question about a stored turn, from its stored record")
async def why(request: Request, body: WhyRequest, t: str | None = Depends(tenant)):
    """Answer a (contrastive) question about a stored turn from its evidence (agent/why.py)."""
    ctx = ctx_of(request)
    cid = validate_conversation_id(body.conversation_id)
    turns = await ctx.in_thread(ctx.memory().conversation, scoped_id(t, cid), True)
    turn = stored_turn(turns, cid, body.turn_index)
    result = FusedResult.model_validate(turn["record"])
    ans = answer_why(result, body.question)
    return WhyResponse(conversation_id=cid, turn_index=turn["turn_index"], label=result.label,
                       confidence=round(result.confidence, 4), answer=ans.answer, contrast=ans.contrast,
                       cited_evidence_ids=ans.cited_evidence_ids, source="evidence", refused=ans.refused,
                       warnings=[])


@router.get("/healthz", tags=["health"], summary="Liveness and readiness (no auth)")
async def healthz(request: Request):
    """Liveness and readiness: 200 when models are loaded and memory is ok or off, else 503."""
    ctx = ctx_of(request)
    agent, settings = ctx.agent, ctx.settings
    memory = "disabled"
    if agent is not None and agent.memory is not None:
        try:
            await asyncio.wait_for(asyncio.to_thread(agent.memory.collection.count), 3.0)
            memory = "ok"
        except Exception:
            memory = "unavailable"
    ok = ctx.ready and memory in ("ok", "disabled")
    worker, llm_worker = ctx.worker, ctx.llm_worker
    body = {"status": "ok" if ok else ("starting" if not ctx.ready else "degraded"), "models_loaded": ctx.ready,
            "memory": memory, "queued": worker.pending + (llm_worker.pending if llm_worker is not worker else 0),
            "queued_llm": llm_worker.pending, "completed": worker.completed,
            "llm": "remote" if settings.llm_url else settings.llm,
            "memory_backend": "chroma-server" if settings.chroma_url else "embedded",
            "uptime_s": round(time.time() - ctx.started, 1), "pid": os.getpid()}
    return JSONResponse(body, status_code=200 if ok else 503)
