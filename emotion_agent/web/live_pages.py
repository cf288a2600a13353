"""The live page: analyse a turn (text, or an uploaded audio/image/video) inside a conversation.

The form posts to ``/ui/live/analyze``; the answer is the label (experts + fusion on the expert lane),
and the same paused graph run is resumed at once on the LLM lane for the explanation (then memory),
whether or not the browser stays: nothing a user sent is lost. The label fragment asks for
``/ui/live/explanation/{job}``, which waits for that resume and swaps the explanation in. Uploads go
through the API's own checks (sniffing, size, probing) and its instruction filter.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.datastructures import UploadFile

from emotion_agent.service.analysis import build_turn, explain_job, label_job, response_of, save_upload
from emotion_agent.service.context import ctx_of
from emotion_agent.service.errors import ServiceError
from emotion_agent.service.security import (
    ALLOWED,
    SecurityError,
    UploadDir,
    scoped_id,
    unscoped_id,
    validate_conversation_id,
)
from emotion_agent.web.auth import Session, check_csrf, session
from emotion_agent.web.render import error_page, render

log = logging.getLogger("emotion_agent.web")
router = APIRouter(prefix="/ui")
JOB_TTL_S = 600.0


class Jobs:
    """Explanations under way, by job id (each a task that resumes a paused graph run)."""

    def __init__(self) -> None:
        self.tasks: dict[str, tuple[str | None, float, asyncio.Task]] = {}

    def add(self, tenant: str | None, task: asyncio.Task) -> str:
        """Keep ``task`` for its tenant; returns its id."""
        now = time.time()
        for k in [k for k, (_, t0, task_) in self.tasks.items() if now - t0 > JOB_TTL_S and task_.done()]:
            del self.tasks[k]
        job = secrets.token_urlsafe(12)
        self.tasks[job] = (tenant, now, task)
        return job

    def get(self, job: str, tenant: str | None) -> asyncio.Task | None:
        """The task of ``job`` when it belongs to ``tenant``."""
        hit = self.tasks.get(job)
        return hit[2] if hit and hit[0] == tenant else None


def finish(task: asyncio.Task, upload: UploadDir) -> None:
    """When an explanation job ends: delete its uploads; a failure is logged even if no page asks for it."""
    upload.cleanup()
    if not task.cancelled() and task.exception() is not None:
        log.warning("live explanation failed: %s", type(task.exception()).__name__)


def jobs_of(request: Request) -> Jobs:
    """The app's explanation jobs."""
    return request.app.state.web_jobs


@router.get("/live", response_class=HTMLResponse, summary="Analyse turns live, in a conversation")
async def live_page(request: Request, c: str | None = None, s: Session = Depends(session)):
    """The live page: the conversation's history beside the form."""
    ctx = ctx_of(request)
    cid = (c or "").strip() or None
    history: list[dict[str, Any]] = []
    problem = None
    try:
        cid = validate_conversation_id(cid) if cid else None
        if cid:
            history = await ctx.in_thread(ctx.memory().conversation, scoped_id(s.tenant, cid), True)
    except (ServiceError, SecurityError) as exc:
        problem = exc.message
    return render(request, "live.html", cid=cid or "", history=history, problem=problem,
                  new_cid=f"web-{secrets.token_hex(4)}", accept={k: ",".join(sorted(v)) for k, v in ALLOWED.items()})


@router.post("/live/analyze", response_class=HTMLResponse, summary="Analyse one turn from the live page")
async def analyze(request: Request, s: Session = Depends(session)):
    """Label first (this answer); the explanation is resumed at once and fetched by the fragment."""
    ctx = ctx_of(request)
    upload = UploadDir()
    keep_upload = False
    try:
        try:
            form = await request.form(max_files=3, max_fields=8, max_part_size=64 * 1024)
        except Exception as exc:
            return error_page(request, 400, f"malformed form ({type(exc).__name__})")
        check_csrf(request, s, str(form.get("csrf") or ""))
        fields: dict[str, Any] = {"conversation_id": str(form.get("conversation_id") or "").strip()
                                  or f"web-{secrets.token_hex(4)}",  # a live turn always joins a conversation
                                  "speaker": str(form.get("speaker") or "") or None}
        text = form.get("text")
        if isinstance(text, str) and text.strip():
            fields["text"] = text  # limited by make_turn (Settings.max_text_chars, with a warning)
        files: dict[str, str] = {}
        refused: list[SecurityError] = []
        for slot in ALLOWED:
            value = form.get(slot)
            if isinstance(value, UploadFile) and (value.filename or value.size):
                try:
                    files[slot] = await save_upload(slot, value, upload, ctx.cfg.limits)
                except SecurityError as exc:
                    refused.append(exc)
        await form.close()
        fields["_refused"] = refused
        turn, warnings = build_turn(fields, files, s.tenant, ctx.settings)
        agent = ctx.get_agent()
        out = await ctx.worker.run(label_job(agent, turn, files, True, ctx.cfg.limits), ctx.cfg.request_timeout_s)
        result = response_of(out["result"], "-", s.tenant, upload, warnings)
        task = asyncio.ensure_future(ctx.llm_worker.run(explain_job(out), max(60.0, 4 * ctx.cfg.request_timeout_s),
                                                        what="explanation"))
        task.add_done_callback(lambda t: finish(t, upload))
        keep_upload = True
        job = jobs_of(request).add(s.tenant, task)
        return render(request, "_live_result.html", result=result, job=job, cid=fields["conversation_id"])
    except (ServiceError, SecurityError) as exc:
        return error_page(request, exc.status, exc.message)
    finally:
        if not keep_upload:
            upload.cleanup()


@router.get("/live/explanation/{job}", response_class=HTMLResponse, summary="The explanation of a live turn")
async def explanation(request: Request, job: str, s: Session = Depends(session)):
    """Wait for the resumed graph run and show its explanation (and that the turn is now remembered)."""
    task = jobs_of(request).get(job, s.tenant)
    if task is None:
        return error_page(request, 404, "no such explanation (it may have expired)")
    try:
        final = await asyncio.wait_for(asyncio.shield(task), ctx_of(request).cfg.request_timeout_s * 4)
    except asyncio.TimeoutError:
        return error_page(request, 504, "the explanation is taking too long; the turn is still being saved")
    except (ServiceError, SecurityError) as exc:
        return error_page(request, exc.status, exc.message)
    cid = unscoped_id(s.tenant, final.conversation_id) if final.conversation_id else ""
    history: list[dict[str, Any]] = []
    if cid:  # the history beside the form is refreshed with the explanation (an out-of-band swap)
        ctx = ctx_of(request)
        try:
            history = await ctx.in_thread(ctx.memory().conversation, final.conversation_id, True)
        except (ServiceError, SecurityError):
            history = []
    return render(request, "_explanation.html", result=final, cid=cid, history=history)


@router.post("/live/delete", summary="Forget a conversation")
async def delete(request: Request, conversation_id: str = Form(...), csrf: str = Form(""),
                 s: Session = Depends(session)):
    """Delete a conversation's memory and records, then go back to an empty live page."""
    check_csrf(request, s, csrf)
    ctx = ctx_of(request)
    try:
        cid = validate_conversation_id(conversation_id)
        n = await ctx.in_thread(ctx.memory().forget, scoped_id(s.tenant, cid))
    except (ServiceError, SecurityError) as exc:
        return error_page(request, exc.status, exc.message)
    return RedirectResponse(f"/ui/live?deleted={n}", status_code=303)
