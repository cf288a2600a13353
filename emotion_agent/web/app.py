"""The analyst pages mounted on the HTTP service: ``/ui`` (runs, a run, a turn, live), login and logout.

``create_web_app`` is ``service.create_app`` plus these routes, the package's static files (the
stylesheet and htmx, never a CDN: the pages work offline) and HTML answers for the pages' errors.
The API routes, keys, memory, lanes and why service are the service's own.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from emotion_agent.service.config import ServiceConfig
from emotion_agent.service.security import SecurityError
from emotion_agent.service.server import create_app
from emotion_agent.tools.settings import Settings
from emotion_agent.web import live_pages, run_pages
from emotion_agent.web.auth import (
    COOKIE,
    LOGIN_COOKIE,
    CsrfRefused,
    LoginRequired,
    Sessions,
    auth_optional,
    login,
    sessions_of,
)
from emotion_agent.web.live_pages import Jobs
from emotion_agent.web.render import STATIC_DIR, error_page, render
from emotion_agent.web.runs import RunStore

router = APIRouter(prefix="/ui")
#: Sent with every page: no framing, no sniffing, scripts and styles only from this server.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                                           "style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
                                           "form-action 'self'; base-uri 'none'",
                "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def create_web_app(settings: Settings | None = None, agent: Any = None, *, config: ServiceConfig | None = None,
                   runs_dir: Path | None = None, **overrides: Any) -> FastAPI:
    """The service's app with the analyst pages; ``runs_dir`` is the eval runs folder they browse."""
    from emotion_agent.evals.paths import runs_dir as default_runs_dir

    app = create_app(settings, agent, config=config, routers=[router, run_pages.router, live_pages.router],
                     **overrides)
    app.state.run_store = RunStore(runs_dir or default_runs_dir())
    app.state.web_sessions = Sessions()
    app.state.web_jobs = Jobs()
    app.mount("/ui/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired):  # noqa: ANN202
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/ui/login"})
        return RedirectResponse(f"/ui/login?next={request.url.path}", status_code=303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused):  # noqa: ANN202
        return error_page(request, 403, "the form's security token is missing or stale: reload the page and "
                                        "try again")

    @app.middleware("http")
    async def _page_headers(request: Request, call_next):  # noqa: ANN001, ANN202
        response = await call_next(request)
        if request.url.path.startswith("/ui"):
            for k, v in PAGE_HEADERS.items():
                response.headers.setdefault(k, v)
        return response

    return app


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a local /ui path only (never another site)."""
    target = target or "/ui/"
    return target if target.startswith("/ui") and "//" not in target and "\\" not in target else "/ui/"


@router.get("/login", response_class=HTMLResponse, summary="Log in with an API key")
async def login_form(request: Request, next: str | None = None):
    """The login form (a double-submit token guards it)."""
    token = secrets.token_urlsafe(16)
    response = render(request, "login.html", login_token=token, next=safe_next(next),
                      optional=auth_optional(request), message=None)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/ui",
                        secure=request.url.scheme == "https")
    return response


@router.post("/login", summary="Open a session")
async def login_submit(request: Request, key: str = Form(""), login_token: str = Form(""),
                       next: str = Form("/ui/")):
    """Check the key and set the session cookie; the form again with the reason when refused."""
    try:
        s = login(request, key, login_token)
    except SecurityError:
        token = secrets.token_urlsafe(16)
        response = render(request, "login.html", status=401, login_token=token, next=safe_next(next),
                          optional=False, message="That key is not valid.")
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/ui",
                            secure=request.url.scheme == "https")
        return response
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(COOKIE, s.token, httponly=True, samesite="strict", path="/ui",
                        secure=request.url.scheme == "https", max_age=int(sessions_of(request).ttl_s))
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout", summary="Close the session")
async def logout(request: Request, csrf: str = Form("")):
    """Forget the session (its CSRF token is required, so another site cannot log you out)."""
    s = sessions_of(request).get(request.cookies.get(COOKIE))
    if s is not None:
        from emotion_agent.web.auth import check_csrf

        check_csrf(request, s, csrf)
        sessions_of(request).close(s.token)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response
