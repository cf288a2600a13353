"""Pages for eval runs: the runs list, one run (metrics, plots, confusion matrix, filtered turns), one turn
(dialogue, evidence, highlighted words, media, fusion, explanation) and its "ask why" box."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import ValidationError

from emotion_agent.agent.explain import attributions_of as attributions_from_result
from emotion_agent.agent.inputs import InputError, make_turn
from emotion_agent.agent.why import answer_why
from emotion_agent.service.ask_stream import ask_timeout
from emotion_agent.service.context import ctx_of
from emotion_agent.tools.base import PriorTurn, TurnInput
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.evidence import LABELS, FusedResult
from emotion_agent.web.auth import Session, check_csrf, session
from emotion_agent.web.render import error_page, render
from emotion_agent.web.runs import Filters, RunNotFound, RunStore, confusion, disagrees, page

router = APIRouter(prefix="/ui")
PLOTS = ("confusion", "per_class", "reliability", "latency", "ablations")
_DRAWING = threading.Lock()


def store_of(request: Request) -> RunStore:
    """The app's runs folder."""
    return request.app.state.run_store


async def load_run(request: Request, name: str) -> Any:
    """Run ``name`` read off the event loop (the first read of a big run takes a moment; later ones are cached)."""
    return await asyncio.to_thread(store_of(request).get, name)


@router.get("/", response_class=HTMLResponse, summary="Eval runs")
async def runs_page(request: Request, s: Session = Depends(session)):
    """Every run in the runs folder with its headline metrics, date, models and config."""
    store = store_of(request)
    return render(request, "runs.html", runs=await asyncio.to_thread(store.summaries), folder=str(store.folder))


@router.get("/runs/{name}", response_class=HTMLResponse, summary="One eval run")
async def run_page(request: Request, name: str, s: Session = Depends(session)):
    """A run: metrics with CIs, per-class table, ablations, plots, confusion matrix and its turns."""
    try:
        run, context = await run_with_turns(request, name)
    except RunNotFound as exc:
        return error_page(request, 404, str(exc))
    metrics = run.summary.get("metrics") or {}
    plots = [p for p in PLOTS if p != "ablations" or run.summary.get("ablations")]
    return render(request, "run.html", run=run, summary=run.summary, metrics=metrics, plots=plots,
                  matrix=confusion(run.records), ablations=run.summary.get("ablations") or [], **context)


@router.get("/runs/{name}/turns", response_class=HTMLResponse, summary="A run's turns (filtered, one page)")
async def turns_fragment(request: Request, name: str, s: Session = Depends(session)):
    """The filtered, paged turns table (the run page swaps it in place; a full page without htmx)."""
    try:
        run, context = await run_with_turns(request, name)
    except RunNotFound as exc:
        return error_page(request, 404, str(exc))
    return render(request, "_turns.html" if request.headers.get("hx-request") else "turns.html", run=run,
                  **context)


async def run_with_turns(request: Request, name: str) -> tuple[Any, dict[str, Any]]:
    """The run and the turns-table context its query parameters ask for."""
    run = await load_run(request, name)
    return run, turns_context(run, Filters.from_query(request.query_params), request.query_params.get("page"))


def turns_context(run: Any, filters: Filters, page_arg: str | None) -> dict[str, Any]:
    """The template context of the turns table: filtered rows of one page and the paging links."""
    try:
        number = int(page_arg or 1)
    except ValueError:
        number = 1
    kept = [r for r in run.records if filters.keep(r)]
    rows, number, pages = page(kept, number)
    return {"filters": filters, "rows": [(r, disagrees(r)) for r in rows], "matched": len(kept),
            "page_number": number, "pages": pages}


@router.get("/runs/{name}/plots/{kind}.png", summary="A run's plot")
async def plot(request: Request, name: str, kind: str, s: Session = Depends(session)):
    """A plot of the run (PNG, made once per version of its records)."""
    if kind not in PLOTS:
        return error_page(request, 404, f"no plot '{kind[:40]}'")
    try:
        run = await load_run(request, name)
    except RunNotFound as exc:
        return error_page(request, 404, str(exc))
    png = await asyncio.to_thread(cached_plot, run, kind)  # matplotlib off the event loop
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


def cached_plot(run: Any, kind: str) -> bytes:
    """The plot's PNG, drawn once per loaded version of the run (pyplot is not thread-safe: one drawing at a
    time in the process)."""
    with run.lock:
        if kind not in run.plots:
            with _DRAWING:
                run.plots[kind] = make_plot(kind, run)
        return run.plots[kind]


def make_plot(kind: str, run: Any) -> bytes:
    """The PNG of one plot, drawn by the report module (the same plots as ``emotion-agent report``)."""
    from emotion_agent.evals import report

    metrics = run.summary.get("metrics") or {}
    if kind == "confusion":
        return report.plot_confusion(metrics)
    if kind == "per_class":
        return report.plot_per_class([metrics], [run.name])
    if kind == "reliability":
        return report.plot_reliability(metrics)
    if kind == "latency":
        return report.plot_latency(run.records)
    return report.plot_ablations(run.summary.get("ablations") or [])


@router.get("/runs/{name}/turn/{key:path}", response_class=HTMLResponse, summary="One turn of a run")
async def turn_page(request: Request, name: str, key: str, s: Session = Depends(session)):
    """A turn: its dialogue, per-modality evidence, the words that drove the text label, media, fusion,
    explanation, and an "ask why" box."""
    try:
        run = await load_run(request, name)
        record = run.turn(key)
    except RunNotFound as exc:
        return error_page(request, 404, str(exc))
    parsed = record_result(record)  # the page shows the validated result only (records may be damaged)
    result = parsed.model_dump(mode="json") if parsed is not None else {}
    stored = stored_attributions(record)
    media = {kind: bool(media_path(request, record, kind)) for kind in ("audio", "video", "image")}
    return render(request, "turn.html", run=run, record=record, result=result, dialogue=run.dialogue(record),
                  attributions=stored, attributions_computed=False, media=media, face=face_box(result),
                  damaged=parsed is None)


@router.get("/runs/{name}/words/{key:path}", response_class=HTMLResponse, summary="The words behind a turn's label")
async def words_fragment(request: Request, name: str, key: str, s: Session = Depends(session)):
    """The word attributions of a turn, computed by the text expert when the run stored none (the turn page
    loads this after itself, so the page never waits for the model)."""
    try:
        run = await load_run(request, name)
        record = run.turn(key)
    except RunNotFound as exc:
        return error_page(request, 404, str(exc))
    attributions, computed = await attributions_of(request, run, record)
    return render(request, "_words.html", attributions=attributions, computed=computed, toward=record.get("label"))


def record_result(record: dict[str, Any]) -> FusedResult | None:
    """The record's result as the agent's ``FusedResult``, or None when it does not validate (records can be
    damaged or written by another version)."""
    try:
        return FusedResult.model_validate(record.get("result") or {})
    except ValidationError:
        return None


def stored_attributions(record: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The word attributions stored with the turn's text evidence (as the explainer reads them), or None."""
    result = record_result(record)
    words = attributions_from_result(result) if result is not None else []
    return [w.model_dump() for w in words] or None


async def attributions_of(request: Request, run: Any, record: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The word attributions stored with the turn, or computed now by the text expert (expert lane) with the
    turn's stored context and kept with the run; ``([], False)`` when neither is possible. The flag says they
    were computed by the page."""
    stored = stored_attributions(record)
    if stored is not None:
        return stored, False
    key = str(record.get("key"))
    if key in run.words:
        return run.words[key], True
    ctx = ctx_of(request)
    if not ctx.ready or ctx.agent is None or not record.get("text"):
        return [], False
    expert = ctx.agent.experts.get("text_emotion")
    if expert is None or not hasattr(expert, "attributions"):
        return [], False
    turn = attribution_turn(record, ctx.settings)
    if turn is None:
        return [], False
    try:
        weights = await ctx.worker.run(lambda: expert.attributions(turn, record.get("label") or "neutral"),
                                       ctx.cfg.request_timeout_s, what="attributions")
    except Exception:  # an extra: the page still shows everything else
        return [], False
    run.words[key] = [w.model_dump() for w in weights]
    return run.words[key], True


def attribution_turn(record: dict[str, Any], settings: Settings) -> TurnInput | None:
    """The record's turn rebuilt by the one turn builder (the text limit from ``settings``, instructions
    stripped as the agent strips them), or None when its text has nothing to analyse."""
    context = [PriorTurn(speaker=c.get("speaker"), text=str(c.get("text") or ""), label=c.get("label"))
               for c in record.get("context") or [] if c.get("text")]
    try:
        return make_turn(text=str(record["text"]), speaker=record.get("speaker"), context=context,
                         check_media=False, settings=settings)
    except InputError:
        return None


def face_box(result: dict[str, Any]) -> dict[str, Any] | None:
    """The primary face of the vision evidence (box in image pixels, how sure), when there is one."""
    for e in result.get("evidence") or []:
        extra = e.get("extra") or {}
        if e.get("modality") == "vision" and extra.get("source") == "image":
            faces, primary = extra.get("faces") or [], extra.get("primary")
            if isinstance(primary, int) and 0 <= primary < len(faces):
                return faces[primary]
    return None


def media_path(request: Request, record: dict[str, Any], kind: str) -> Path | None:
    """The record's media file of ``kind`` when it lies inside the data folder (records are not trusted)."""
    raw = (record.get("inputs") or {}).get(kind)
    data_dir = ctx_of(request).settings.data_dir
    if not raw or data_dir is None:
        return None
    try:
        path = Path(str(raw)).resolve()
        root = Path(data_dir).resolve()
    except (OSError, ValueError):
        return None
    return path if path.is_file() and root in path.parents else None


@router.get("/runs/{name}/media/{kind}/{key:path}", summary="A turn's audio, video, image or face crop")
async def media(request: Request, name: str, kind: str, key: str, s: Session = Depends(session)):
    """The turn's media file from the data folder, or (``face``) the primary face cropped from its image."""
    try:
        record = (await load_run(request, name)).turn(key)
    except RunNotFound as exc:
        return error_page(request, 404, str(exc))
    if kind == "face":
        parsed = record_result(record)
        path, box = media_path(request, record, "image"), face_box(parsed.model_dump() if parsed else {})
        if path is None or box is None:
            return error_page(request, 404, "this turn has no face crop")
        return Response(crop_png(path, box.get("box") or []), media_type="image/png")
    if kind not in ("audio", "video", "image"):
        return error_page(request, 404, f"no media kind '{kind[:20]}'")
    path = media_path(request, record, kind)
    if path is None:
        return error_page(request, 404, f"this turn has no {kind} file in the data folder")
    return FileResponse(path)


def crop_png(path: Path, box: list[float]) -> bytes:
    """The face box of an image as a PNG (at most 256 px a side)."""
    from PIL import Image

    with Image.open(path) as img:
        x0, y0, x1, y1 = (int(round(v)) for v in (list(box) + [0, 0, 0, 0])[:4])
        face = img.convert("RGB").crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))
        face.thumbnail((256, 256))
        buf = io.BytesIO()
        face.save(buf, format="PNG")
    return buf.getvalue()


@router.post("/runs/{name}/why", response_class=HTMLResponse, summary="Ask why about a turn of a run")
async def ask_why(request: Request, name: str, key: str = Form(...), question: str = Form(""),
                  csrf: str = Form(""), s: Session = Depends(session)):
    """Answer an analyst's question about a turn from its stored evidence (the API's why service)."""
    check_csrf(request, s, csrf)
    try:
        record = (await load_run(request, name)).turn(key)
    except RunNotFound as exc:
        return error_page(request, 404, str(exc))
    if not question.strip():
        return error_page(request, 422, "type a question, e.g. “why not anger?”")
    result = record_result(record)
    if result is None:
        return error_page(request, 422, "this turn's stored result cannot be read, so there is nothing to answer from")
    answer = answer_why(result, question[:500])
    return render(request, "_why.html" if request.headers.get("hx-request") else "why.html", answer=answer,
                  labels=LABELS)


@router.post("/runs/{name}/ask", response_class=HTMLResponse, summary="Ask the agent about a turn of a run")
async def ask_agent(request: Request, name: str, key: str = Form(...), question: str = Form(""),
                    csrf: str = Form(""), s: Session = Depends(session)):
    """Answer an analyst's own question about a turn with the ask agent (the LLM calling tools bound to this run
    and turn); the answer is checked for grounding. The fixed "why" (``/why``) stays the instant path."""
    check_csrf(request, s, csrf)
    try:
        run = await load_run(request, name)
        run.turn(key)
    except RunNotFound as exc:
        return error_page(request, 404, str(exc))
    if not question.strip():
        return error_page(request, 422, "type a question, e.g. “would it still be anger without the voice?”")
    ctx = ctx_of(request)
    agent = ctx.get_agent()
    try:
        answer = await ctx.llm_worker.run(lambda: agent.ask(question[:500], run=run.path, turn=key),
                                          ask_timeout(ctx), "ask")
    except Exception as exc:  # the model is missing or timed out: say so on the page
        return error_page(request, 503, f"the ask agent could not answer ({type(exc).__name__}: {str(exc)[:200]})")
    return render(request, "_ask.html" if request.headers.get("hx-request") else "ask.html", question=question[:500],
                  answer=answer)
