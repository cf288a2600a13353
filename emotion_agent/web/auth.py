"""Who is using the pages: the same API keys as the service, as a session cookie or the key header.

* ``POST /ui/login`` with a valid key opens a session: a random token in an ``HttpOnly``,
  ``SameSite=Strict`` cookie (``Secure`` over https) that maps, on the server only, to the key's tenant
  and a CSRF token. The key itself is never stored in the cookie or the page.
* Requests that present the key header (``Authorization: Bearer`` / ``X-API-Key``) are served without a
  session, as the API is (a browser never sends that header on its own, so they cannot be forged).
* Every state-changing form (analyse, ask why, delete, log out) carries the session's CSRF token, as a
  hidden field or the ``X-CSRF-Token`` header htmx sends; a POST without it is refused (403).
* The login form itself uses a double-submit token (a cookie and a hidden field that must match).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import Request

from emotion_agent.service.context import ctx_of
from emotion_agent.service.security import SecurityError, presented_key

COOKIE = "ea_session"
LOGIN_COOKIE = "ea_login"
SESSION_TTL_S = 8 * 3600.0


@dataclass
class Session:
    """A logged-in browser: its tenant (None when the server runs without keys) and CSRF token."""

    tenant: str | None
    csrf: str
    expires: float
    token: str = ""
    via_header: bool = False


class LoginRequired(Exception):
    """The page needs a session (answered with a redirect to the login form)."""


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token (answered 403)."""


class Sessions:
    """Server-side sessions (in memory: a restart logs everyone out, which is the safe default)."""

    def __init__(self, ttl_s: float = SESSION_TTL_S):
        self.ttl_s = ttl_s
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, tenant: str | None) -> Session:
        """A new session for ``tenant``."""
        s = Session(tenant=tenant, csrf=secrets.token_urlsafe(24), expires=time.time() + self.ttl_s,
                    token=secrets.token_urlsafe(32))
        with self._lock:
            self._prune()
            self._by_token[s.token] = s
        return s

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie value, or None."""
        if not token:
            return None
        with self._lock:
            s = self._by_token.get(token)
            if s is None or s.expires < time.time():
                self._by_token.pop(token, None)
                return None
            return s

    def close(self, token: str | None) -> None:
        """Forget a session (log out)."""
        with self._lock:
            self._by_token.pop(token or "", None)

    def _prune(self) -> None:
        now = time.time()
        for t in [t for t, s in self._by_token.items() if s.expires < now]:
            del self._by_token[t]


def sessions_of(request: Request) -> Sessions:
    """The app's session store."""
    return request.app.state.web_sessions


def session(request: Request) -> Session:
    """Dependency: the caller's session (cookie), or a header-key pseudo-session; else :class:`LoginRequired`.

    A presented but wrong key header is a 401, as on the API."""
    ctx = ctx_of(request)
    s = sessions_of(request).get(request.cookies.get(COOKIE))
    if s is None:
        key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if not key:
            raise LoginRequired()
        tenant = ctx.tenant_for(key)  # raises 401 for a wrong key
        s = Session(tenant=tenant, csrf="", expires=time.time() + 60, via_header=True)
    request.state.web_session = s
    return s


def check_csrf(request: Request, s: Session, form_token: str | None) -> None:
    """Refuse a state-changing request whose CSRF token (form field or header) is not the session's."""
    if s.via_header:
        return
    sent = form_token or request.headers.get("x-csrf-token") or ""
    if not (s.csrf and hmac.compare_digest(sent.encode(), s.csrf.encode())):
        raise CsrfRefused()


def login(request: Request, key: str, form_token: str) -> Session:
    """Open a session for a valid key (double-submit token checked first); 401 :class:`SecurityError` else."""
    cookie = request.cookies.get(LOGIN_COOKIE) or ""
    if not (cookie and form_token and hmac.compare_digest(cookie.encode(), form_token.encode())):
        raise CsrfRefused()
    ctx = ctx_of(request)
    if not ctx.cfg.keys.enabled and ctx.cfg.allow_no_auth:
        return sessions_of(request).open(None)
    tenant = ctx.tenant_for(key.strip() or None)
    return sessions_of(request).open(tenant)


def auth_optional(request: Request) -> bool:
    """Whether the server runs without keys (loopback, ``--allow-no-auth``): the login needs no key."""
    cfg = ctx_of(request).cfg
    return not cfg.keys.enabled and cfg.allow_no_auth


__all__ = ["COOKIE", "LOGIN_COOKIE", "CsrfRefused", "LoginRequired", "SecurityError", "Session", "Sessions",
           "auth_optional", "check_csrf", "login", "session", "sessions_of"]
