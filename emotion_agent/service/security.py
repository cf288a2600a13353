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
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: what a client may call a conversation: letters, digits and ``._-``, 1-64 characters.
CONVERSATION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SPEAKER_MAX = 64
TENANT_SEP = "~"


class SecurityError(Exception):
    """A request refused for a safety reason; ``status`` is the HTTP code, ``message`` user-facing."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


# ---- API keys ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiKeys:
    """Configured keys → tenant names. Empty means auth is off (only allowed on loopback)."""

    keys: dict[str, str] = field(default_factory=dict)  # key -> tenant

    @classmethod
    def parse(cls, raw: str | None) -> "ApiKeys":
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
        return cls.parse(os.environ.get("EMOTION_AGENT_API_KEYS"))

    @property
    def enabled(self) -> bool:
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
        return list(self.keys)


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def is_loopback(host: str) -> bool:
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
    if cid is None or cid == "":
        return None
    if not CONVERSATION_ID_RE.fullmatch(cid):
        raise SecurityError(422, "conversation_id must be 1-64 characters: letters, digits, '.', '_' or '-', "
                                 "starting with a letter or digit", "bad_conversation_id")
    return cid


def scoped_id(tenant: str | None, cid: str) -> str:
    """The id stored in memory: tenant-prefixed when auth is on (clients never see the prefix)."""
    return f"{tenant}{TENANT_SEP}{cid}" if tenant else cid


def unscoped_id(tenant: str | None, stored: str) -> str:
    prefix = f"{tenant}{TENANT_SEP}" if tenant else ""
    return stored[len(prefix):] if prefix and stored.startswith(prefix) else stored


def validate_speaker(speaker: str | None) -> str | None:
    if speaker is None:
        return None
    speaker = " ".join(speaker.split())
    if not speaker:
        return None
    if len(speaker) > SPEAKER_MAX or not speaker.isprintable():
        raise SecurityError(422, f"speaker must be at most {SPEAKER_MAX} printable characters", "bad_speaker")
    return speaker


# ---- uploads ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 25 * 1024 * 1024       # per file
    max_request_bytes: int = 60 * 1024 * 1024      # whole body
    max_json_bytes: int = 64 * 1024
    max_audio_s: float = 60.0
    max_video_s: float = 60.0
    max_image_pixels: int = 40_000_000


#: kind → (extension, allowed slots)
_KINDS = {
    "wav": ("audio", ".wav"), "flac": ("audio", ".flac"), "ogg": ("audio", ".ogg"), "mp3": ("audio", ".mp3"),
    "m4a": ("audio", ".m4a"), "webm": ("video", ".webm"), "mp4": ("video", ".mp4"), "mov": ("video", ".mov"),
    "mkv": ("video", ".mkv"), "avi": ("video", ".avi"),
    "jpeg": ("image", ".jpg"), "png": ("image", ".png"), "gif": ("image", ".gif"), "webp": ("image", ".webp"),
    "bmp": ("image", ".bmp"),
}
ALLOWED = {"audio": {"wav", "flac", "ogg", "mp3", "m4a", "mp4", "webm"},
           "image": {"jpeg", "png", "webp", "bmp", "gif"},
           "video": {"mp4", "mov", "webm", "mkv", "avi"}}


def sniff(head: bytes) -> str | None:
    """Container type from the first bytes, or None when unknown (the name/content type are ignored)."""
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return "mp3"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 14:
        return "bmp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "m4a"
        if brand == b"qt  ":
            return "mov"
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if b"webm" in head[:64] else "mkv"
    return None


def describe(head: bytes) -> str:
    if head.startswith(b"MZ"):
        return "a Windows executable"
    if head.startswith(b"\x7fELF"):
        return "an ELF executable"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head.startswith(b"#!"):
        return "a script"
    return "an unrecognised format"


UPLOAD_PREFIX = "emotion-agent-upload-"


class UploadDir:
    """A private (0700) temporary folder for one request's uploads, made on first use; :meth:`cleanup` removes it."""

    def __init__(self) -> None:
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX))  # mkdtemp: 0700, unpredictable name
        return self._path

    def file(self, slot: str, ext: str) -> Path:
        return self.path / f"{slot}{ext}"

    def cleanup(self) -> None:
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


def probe(path: Path, slot: str, kind: str, limits: Limits) -> float | None:
    """Check a saved upload really decodes and is within limits. Returns its duration (audio/video)."""
    if slot == "image":
        from PIL import Image

        try:
            with Image.open(path) as im:
                w, h = im.size
                if w * h > limits.max_image_pixels:
                    raise SecurityError(413, f"image is {w}x{h}; at most {limits.max_image_pixels} pixels",
                                        "image_too_large")
                im.load()  # raises on truncated data
        except SecurityError:
            raise
        except Exception as exc:
            raise SecurityError(422, f"the image could not be decoded (truncated or corrupt {kind}): "
                                     f"{_short(exc)}", "bad_media") from exc
        return None
    if kind == "wav":
        _check_riff_size(path)
    import av

    max_s = limits.max_audio_s if slot == "audio" else limits.max_video_s
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            streams = [s for s in container.streams if s.type in ("audio", "video")]
            if slot == "audio" and not container.streams.audio:
                raise SecurityError(422, "the audio upload has no audio stream", "bad_media")
            if slot == "video" and not container.streams.video:
                raise SecurityError(422, "the video upload has no video stream", "bad_media")
            declared = container.duration / 1e6 if container.duration else None
            if declared is not None and declared > max_s + 0.5:
                raise SecurityError(413, f"{slot} is {declared:.1f} s long; at most {max_s:.0f} s",
                                    "too_long")
            # Demux + decode everything: truncated or corrupt files fail here, not inside an expert.
            seconds, decoded = 0.0, 0
            for frame in container.decode(*streams[:2]):
                decoded += 1
                if frame.time is not None:
                    seconds = max(seconds, float(frame.time))
                if seconds > max_s + 0.5:
                    raise SecurityError(413, f"{slot} is longer than {max_s:.0f} s", "too_long")
            if decoded == 0:
                raise SecurityError(422, f"the {slot} upload contains no decodable data (empty or truncated)",
                                    "bad_media")
            if declared and seconds > 0 and seconds + 0.5 < declared * 0.8:
                raise SecurityError(422, f"the {slot} upload is truncated: it declares {declared:.1f} s but only "
                                         f"{seconds:.1f} s could be decoded", "truncated")
            return declared if declared is not None else seconds
    except SecurityError:
        raise
    except Exception as exc:
        raise SecurityError(422, f"the {slot} upload could not be decoded (truncated or corrupt {kind}): "
                                 f"{_short(exc)}", "bad_media") from exc


def _check_riff_size(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
    declared = int.from_bytes(head[4:8], "little") + 8
    if declared > size and declared != 0xFFFFFFFF + 8:  # streaming writers put 0xFFFFFFFF
        raise SecurityError(422, f"the WAV file is truncated: its header declares {declared} bytes but "
                                 f"{size} arrived", "truncated")


def _short(exc: BaseException) -> str:
    text = str(exc).split("\n")[0]
    # Never echo server paths back to the client.
    text = re.sub(r"(/[^\s'\"]+)+", "<file>", text)
    return text[:160] or type(exc).__name__
