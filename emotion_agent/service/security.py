"""Safety for the HTTP service: API keys, id validation, upload sniffing and limits, log redaction.

* API keys come from ``EMOTION_AGENT_API_KEYS`` (comma list; an entry may be ``name=key`` to give
  the client a stable tenant name). Keys are compared in constant time and never logged.
* Each key is a *tenant*: its conversation ids are stored under a tenant prefix, so one client
  can never read, extend or delete another client's conversations, whatever id it sends.
* Uploads are identified by their magic bytes (the file name and the declared content type are
  ignored), written under a private temporary folder with a server-chosen name, probed (fully
  demuxed / decoded) so truncated files are refused, and checked against size and duration limits.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from emotion_agent.agent.inputs import CONVERSATION_ID_RE, CONVERSATION_ID_RULE, TENANT_SEP  # noqa: E402 - one rule

SPEAKER_MAX = 64


from emotion_agent.tools.media_checks import (  # noqa: E402 - one validation for the CLI and the API
    ALLOWED,
    KINDS,
    Limits,
    MediaCheckError,
    describe,
    probe,
    sniff,
)

#: A request refused for a safety reason (``status`` is the HTTP code); the media checks raise the same type.
SecurityError = MediaCheckError
__all__ = ["ALLOWED", "KINDS", "Limits", "SecurityError", "describe", "probe", "sniff"]


# ---- API keys ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiKeys:
    """Configured keys → tenant names. Empty means auth is off (only allowed on loopback)."""

    keys: dict[str, str] = field(default_factory=dict)  # key -> tenant

    @classmethod
    def parse(cls, raw: str | None) -> "ApiKeys":
        """Parse a comma list of ``key`` or ``name=key`` entries; ValueError for a bad entry."""
        keys: dict[str, str] = {}
        for entry in (raw or "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            name, sep, key = entry.partition("=")
            if not sep:
                name, key = "", entry
            key = key.strip()
            if len(key) < 16:
                raise ValueError("every API key must be at least 16 characters (EMOTION_AGENT_API_KEYS)")
            name = name.strip() or "k" + hashlib.sha256(key.encode()).hexdigest()[:10]
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
                raise ValueError(f"API key name '{name}' must be 1-32 letters, digits, '_' or '-'")
            keys[key] = name
        return cls(keys)

    @classmethod
    def from_env(cls) -> "ApiKeys":
        """The keys configured in ``EMOTION_AGENT_API_KEYS``."""
        return cls.parse(os.environ.get("EMOTION_AGENT_API_KEYS"))

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (auth on)."""
        return bool(self.keys)

    def tenant_for(self, presented: str | None) -> str | None:
        """Tenant of a presented key (constant-time over all keys), or None."""
        if not presented:
            return None
        found = None
        p = presented.encode()
        for key, tenant in self.keys.items():
            if hmac.compare_digest(p, key.encode()):
                found = tenant
        return found

    def secrets(self) -> list[str]:
        """Every configured key (for log redaction)."""
        return list(self.keys)


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key sent as ``X-API-Key`` or as an ``Authorization: Bearer`` token, or None."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth_config(host: str, keys: ApiKeys, allow_no_auth: bool) -> None:
    """Auth may be off only when bound to loopback AND explicitly allowed."""
    if keys.enabled:
        return
    if not allow_no_auth:
        raise ValueError("no API keys configured: set EMOTION_AGENT_API_KEYS (comma list), or on a loopback "
                         "address pass --allow-no-auth")
    if not is_loopback(host):
        raise ValueError(f"refusing to serve without API keys on {host}: auth may be off only on loopback "
                         "(127.0.0.1, ::1); set EMOTION_AGENT_API_KEYS")


# ---- ids ----------------------------------------------------------------------------------------
def validate_conversation_id(cid: str | None) -> str | None:
    """``cid`` if it is a valid conversation id (None when empty); 422 otherwise."""
    if cid is None or cid == "":
        return None
    if not CONVERSATION_ID_RE.fullmatch(cid):
        raise SecurityError(422, f"conversation_id must be {CONVERSATION_ID_RULE}", "bad_conversation_id")
    return cid


def scoped_id(tenant: str | None, cid: str) -> str:
    """The id stored in memory: tenant-prefixed when auth is on (clients never see the prefix)."""
    return f"{tenant}{TENANT_SEP}{cid}" if tenant else cid


def unscoped_id(tenant: str | None, stored: str) -> str:
    """The client's id: ``stored`` without the tenant prefix (inverse of :func:`scoped_id`)."""
    prefix = f"{tenant}{TENANT_SEP}" if tenant else ""
    return stored[len(prefix):] if prefix and stored.startswith(prefix) else stored


def validate_speaker(speaker: str | None) -> str | None:
    """The speaker with whitespace collapsed (None if empty); 422 if too long or unprintable."""
    if speaker is None:
        return None
    speaker = " ".join(speaker.split())
    if not speaker:
        return None
    if len(speaker) > SPEAKER_MAX or not speaker.isprintable():
        raise SecurityError(422, f"speaker must be at most {SPEAKER_MAX} printable characters", "bad_speaker")
    return speaker


# ---- uploads ------------------------------------------------------------------------------------
UPLOAD_PREFIX = "emotion-agent-upload-"


class UploadDir:
    """A private (0700) temporary folder for one request's uploads, made on first use; :meth:`cleanup` removes it."""

    def __init__(self) -> None:
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        """The folder, created (0700, unpredictable name) on first access."""
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX))  # mkdtemp: 0700, unpredictable name
        return self._path

    def file(self, slot: str, ext: str) -> Path:
        """Path for the ``slot`` upload with extension ``ext`` inside the folder."""
        return self.path / f"{slot}{ext}"

    def cleanup(self) -> None:
        """Remove the folder and its contents, if it was created."""
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)


def sweep_stale_uploads(older_than_s: float = 3600.0) -> int:
    """Remove upload folders left by a killed process (a running request never lives this long)."""
    import time

    removed = 0
    for p in Path(tempfile.gettempdir()).glob(UPLOAD_PREFIX + "*"):
        try:
            if p.is_dir() and p.stat().st_uid == os.getuid() and time.time() - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed
