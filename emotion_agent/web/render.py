"""Rendering for the analyst pages: the Jinja2 environment (autoescaped: every user string is text),
small display helpers, and an HTML error page."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from emotion_agent.tools.evidence import LABELS

WEB_DIR = Path(str(resources.files("emotion_agent.web")))
STATIC_DIR = WEB_DIR / "static"
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))  # autoescape on for .html
#: Colours per label (always shown with the label's name: colour is never the only signal).
COLOURS = {"neutral": "#8a8f98", "joy": "#e0a800", "surprise": "#2b8fd6", "anger": "#d64541",
           "sadness": "#5a5fc7", "disgust": "#4d8b31", "fear": "#8e44ad"}
WHAT = {"text": "words", "transcript": "transcribed words", "audio": "voice", "vision": "face"}


def pct(x: Any, nd: int = 1) -> str:
    """A 0-1 number as a percentage (``–`` when missing)."""
    try:
        return f"{float(x) * 100:.{nd}f} %"
    except (TypeError, ValueError):
        return "–"


def num(x: Any, nd: int = 1) -> str:
    """A number with ``nd`` decimals (``–`` when missing)."""
    try:
        return f"{float(x):.{nd}f}"
    except (TypeError, ValueError):
        return "–"


def ranked(dist: dict[str, float] | None) -> list[tuple[str, float]]:
    """A distribution's labels, most likely first (MELD's order breaks ties)."""
    dist = dist or {}
    return sorted(((lab, float(dist.get(lab, 0.0))) for lab in LABELS), key=lambda kv: -kv[1])


def word_spans(attributions: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Words with a highlight level for the template: ``up`` pushed toward the label, ``down`` away."""
    out = []
    peak = max((abs(float(w.get("weight", 0))) for w in attributions or []), default=0.0) or 1.0
    for w in attributions or []:
        weight = float(w.get("weight", 0.0))
        share = abs(weight) / peak
        level = 0 if share < 0.15 or abs(weight) < 0.01 else (1 if share < 0.5 else 2)
        out.append({"word": str(w.get("word", "")), "weight": weight, "level": level,
                    "direction": "up" if weight > 0 else "down"})
    return out


templates.env.globals.update(LABELS=LABELS, COLOURS=COLOURS, WHAT=WHAT, pct=pct, num=num, ranked=ranked,
                             urlencode=urlencode, word_spans=word_spans)


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A template rendered with the request (and the session's CSRF token when there is one)."""
    session = getattr(request.state, "web_session", None)
    context.setdefault("csrf", session.csrf if session is not None else "")
    context.setdefault("logged_in", session is not None and not session.via_header)
    return templates.TemplateResponse(request, name, context, status_code=status,
                                      headers={"Cache-Control": "no-store"})


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An HTML error (a fragment for htmx requests, a page otherwise)."""
    if request.headers.get("hx-request"):
        return templates.TemplateResponse(request, "_error.html", {"status": status, "message": message},
                                          status_code=status)
    return render(request, "error.html", status=status, message=message, status_code=status)
