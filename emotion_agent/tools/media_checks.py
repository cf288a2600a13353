"""Is this file really the media it claims to be, and within limits? One check for the CLI and the HTTP API.

The container type is read from the first bytes (the name and declared content type are ignored); the
file is then fully demuxed / decoded, so truncated, corrupt, renamed or bomb-like files are refused with
a status code and a one-line reason before any expert sees them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emotion_agent.tools.settings import Settings


class MediaCheckError(Exception):
    """A file refused by the media checks; ``status`` is the HTTP code, ``message`` is user-facing."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


#: The environment variable that sets each limit (a limit not named here is fixed). Every limit's error
#: message ends with :func:`limit_hint`, so users are told how to change it.
LIMIT_ENV = {"max_audio_s": "EMOTION_AGENT_MAX_AUDIO_S", "max_video_s": "EMOTION_AGENT_MAX_AUDIO_S",
             "max_text_chars": "EMOTION_AGENT_MAX_TEXT_CHARS", "max_upload_bytes": "EMOTION_AGENT_MAX_UPLOAD_MB",
             "max_request_bytes": "EMOTION_AGENT_MAX_UPLOAD_MB"}


def limit_hint(name: str) -> str:
    """How to change the limit ``name`` (a :class:`Limits` or ``Settings`` field), for its error message."""
    env = LIMIT_ENV.get(name)
    return f"(set {env} to change it)" if env else "(a fixed limit)"


def check_file(path: Path, slot: str, limits: "Limits | None" = None) -> str:
    """Sniff and probe a local file for ``slot`` (audio, image, video); return its kind or raise MediaCheckError."""
    limits = limits or Limits()
    if not path.exists():
        raise MediaCheckError(404, f"{slot} file not found: {path}", "not_found")
    if not path.is_file():
        raise MediaCheckError(422, f"{slot} path is not a regular file: {path}", "bad_media")
    size = path.stat().st_size
    if size == 0:
        raise MediaCheckError(422, f"the {slot} file {path.name} is empty", "bad_media")
    if size > limits.max_local_bytes:
        raise MediaCheckError(413, f"the {slot} file {path.name} is {size / 1e6:.0f} MB; at most "
                                   f"{limits.max_local_bytes / 1e6:.0f} MB {limit_hint('max_local_bytes')}",
                               "too_large")
    with path.open("rb") as fh:
        head = fh.read(64)
    kind = sniff(head)
    if kind is None:
        raise MediaCheckError(415, f"{path.name} is {describe(head)}, not {slot}", "unsupported_media")
    if kind not in ALLOWED[slot]:
        raise MediaCheckError(415, f"{path.name} is {kind}, which is not accepted as {slot} "
                                   f"(accepted: {', '.join(sorted(ALLOWED[slot]))})", "unsupported_media")
    probe(path, slot, kind, limits)
    return kind


@dataclass(frozen=True)
class Limits:
    """Size, duration and pixel limits for requests, uploads and local media files."""

    max_upload_bytes: int = 25 * 1024 * 1024       # per file
    max_request_bytes: int = 60 * 1024 * 1024      # whole body
    max_json_bytes: int = 64 * 1024
    max_audio_s: float = 60.0
    max_video_s: float = 60.0
    max_image_pixels: int = 40_000_000
    max_local_bytes: int = 2 * 1024 * 1024 * 1024  # a local file given to the CLI

    @classmethod
    def from_settings(cls, settings: "Settings", **overrides: int) -> "Limits":
        """The limits ``settings`` set (``EMOTION_AGENT_MAX_AUDIO_S`` bounds audio and video)."""
        return cls(max_audio_s=settings.max_audio_s, max_video_s=settings.max_audio_s, **overrides)


#: kind → (extension, allowed slots)
KINDS = {
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
    """A readable guess at what an unaccepted file is, from its first bytes (for error messages)."""
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




def probe(path: Path, slot: str, kind: str, limits: Limits) -> float | None:
    """Check a saved upload really decodes and is within limits. Returns its duration (audio/video)."""
    if slot == "image":
        from PIL import Image

        try:
            with Image.open(path) as im:  # DecompressionBombError is raised here for absurd sizes
                w, h = im.size
                if w * h > limits.max_image_pixels:
                    raise MediaCheckError(413, f"image is {w}x{h}; at most {limits.max_image_pixels} pixels "
                                               f"{limit_hint('max_image_pixels')}",
                                        "image_too_large")
                im.load()  # raises on truncated data
        except MediaCheckError:
            raise
        except Image.DecompressionBombError as exc:
            raise MediaCheckError(413, f"image is too large to decode safely ({_short(exc)})", "image_too_large") from exc
        except Exception as exc:
            raise MediaCheckError(422, f"the image could not be decoded (truncated or corrupt {kind}): "
                                     f"{_short(exc)}", "bad_media") from exc
        return None
    if kind == "wav":
        _check_riff_size(path)
    import av

    limit = "max_audio_s" if slot == "audio" else "max_video_s"
    max_s = getattr(limits, limit)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            streams = [s for s in container.streams if s.type in ("audio", "video")]
            if slot == "audio" and not container.streams.audio:
                raise MediaCheckError(422, "the audio upload has no audio stream", "bad_media")
            if slot == "video" and not container.streams.video:
                raise MediaCheckError(422, "the video upload has no video stream", "bad_media")
            declared = container.duration / 1e6 if container.duration else None
            if declared is not None and declared > max_s + 0.5:
                raise MediaCheckError(413, f"{slot} is {declared:.1f} s long; at most {max_s:g} s "
                                         f"{limit_hint(limit)}",
                                    "too_long")
            # Demux everything: truncated or corrupt files fail here, not inside an expert. An audio upload
            # is decoded in full; in a video upload each stream is decoded only until its first frame (the
            # codecs work) and the rest is demuxed (packet timestamps give the length): the experts decode
            # it once more anyway, so a video turn is not decoded twice.
            seconds, decoded = 0.0, 0
            first_frame: set[int] = set()
            for packet in container.demux(*streams[:2]):
                if packet.pts is not None and packet.time_base is not None:
                    seconds = max(seconds, float(packet.pts * packet.time_base))
                if slot == "video" and packet.stream.index in first_frame:
                    continue
                for frame in packet.decode():
                    decoded += 1
                    first_frame.add(packet.stream.index)
                    if frame.time is not None:
                        seconds = max(seconds, float(frame.time))
                if seconds > max_s + 0.5:
                    raise MediaCheckError(413, f"{slot} is longer than {max_s:g} s {limit_hint(limit)}",
                                          "too_long")
            if decoded == 0:
                raise MediaCheckError(422, f"the {slot} upload contains no decodable data (empty or truncated)",
                                    "bad_media")
            if declared and seconds > 0 and seconds + 0.5 < declared * 0.8:
                raise MediaCheckError(422, f"the {slot} upload is truncated: it declares {declared:.1f} s but only "
                                         f"{seconds:.1f} s could be decoded", "truncated")
            return declared if declared is not None else seconds
    except MediaCheckError:
        raise
    except Exception as exc:
        raise MediaCheckError(422, f"the {slot} upload could not be decoded (truncated or corrupt {kind}): "
                                 f"{_short(exc)}", "bad_media") from exc


def _check_riff_size(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
    declared = int.from_bytes(head[4:8], "little") + 8
    if declared > size and declared != 0xFFFFFFFF + 8:  # streaming writers put 0xFFFFFFFF
        raise MediaCheckError(422, f"the WAV file is truncated: its header declares {declared} bytes but "
                                 f"{size} arrived", "truncated")


def _short(exc: BaseException) -> str:
    text = str(exc).split("\n")[0]
    # Never echo server paths back to the client.
    text = re.sub(r"(/[^\s'\"]+)+", "<file>", text)
    return text[:160] or type(exc).__name__
