"""One decode per media file: audio (16 kHz mono float32) and sampled RGB frames, via PyAV.

Both the audio experts and the vision experts read a turn's video through :func:`decode`,
which is cached by (path, size, mtime): a video is demuxed once per turn, not once per expert.
No torchaudio, no system ffmpeg (PyAV bundles FFmpeg).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion_agent.tools.base import ExpertError
from emotion_agent.tools.media_checks import limit_hint

SAMPLE_RATE = 16_000
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass
class Media:
    """A decoded media file: 16 kHz mono audio and sampled RGB frames with their times."""

    path: Path
    audio: np.ndarray | None  # float32, mono, 16 kHz
    duration_s: float
    frames: list[np.ndarray] = field(default_factory=list)  # RGB uint8 (H, W, 3)
    frame_times: list[float] = field(default_factory=list)
    fps: float | None = None
    source_sample_rate: int | None = None
    source_channels: int | None = None
    width: int | None = None
    height: int | None = None

    @property
    def has_audio(self) -> bool:
        """Whether any audio samples were decoded."""
        return self.audio is not None and len(self.audio) > 0


_CACHE: OrderedDict[tuple, Media] = OrderedDict()
_LOCK = threading.Lock()
_CACHE_SIZE = 4
_FILE_LOCKS: dict[tuple, threading.Lock] = {}


def too_long(p: Path, seconds: float | None, max_seconds: float) -> ExpertError:
    """The decoders' one over-the-duration-limit error (it names the variable that changes the limit)."""
    length = f"{p.name} is {seconds:.1f} s long; " if seconds is not None else f"{p.name} is too long: "
    return ExpertError(f"{length}the limit is {max_seconds:g} s {limit_hint('max_audio_s')}")


def decode(path: Path | str, *, max_frames: int = 16, max_seconds: float | None = None,
           want_audio: bool = True, want_frames: bool = True, fast_frames: bool = False) -> Media:
    """Decode ``path`` once; frames are sampled uniformly in time (at most ``max_frames``).

    A cached decode that holds *more* than asked is reused: an audio-only request is served by an
    earlier audio+frames decode of the same file, a frames-only request by an audio+frames decode with
    the same frame sampling. ``fast_frames`` skips non-reference video frames when the clip has more
    than twice ``max_frames`` frames, and B-frames when it has more than four times as many (a half to
    a third of the decode time; a sampled frame can then lie a few frames after its target time, and
    fewer than ``max_frames`` frames may come back for very short clips).

    Raises :class:`ExpertError` (user-facing) for missing, empty, huge, corrupt or non-media files,
    and for media longer than ``max_seconds``.
    """
    p = Path(path)
    if not p.is_file():
        raise ExpertError(f"file not found: {p.name}")
    st = p.stat()
    if st.st_size == 0:
        raise ExpertError(f"{p.name} is empty")
    if st.st_size > MAX_FILE_BYTES:
        raise ExpertError(f"{p.name} is {st.st_size >> 20} MB; the limit is {MAX_FILE_BYTES >> 20} MB")
    file_key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    key = file_key + (max_frames, want_audio, want_frames, fast_frames)
    with _LOCK:
        file_lock = _FILE_LOCKS.setdefault(file_key, threading.Lock())
    # One decode of a file at a time: experts running in parallel (LangGraph ToolNode) wait for the
    # first decode of the clip and then reuse it instead of demuxing it again beside it.
    with file_lock:
        with _LOCK:
            hit, hit_key = _lookup(file_key, max_frames, want_audio, want_frames, fast_frames)
            audio_only = None
            if hit is None and want_audio and want_frames:
                audio_only, _ = _lookup(file_key, max_frames, True, False, fast_frames)
            if hit is not None:
                _CACHE.move_to_end(hit_key)
                if max_seconds is not None and hit.duration_s > max_seconds * 1.05:
                    raise too_long(p, hit.duration_s, max_seconds)
                return hit
        if audio_only is not None:
            # The audio track is already decoded (an audio expert came first): decode the frames only.
            media = _decode(p, max_frames=max_frames, max_seconds=max_seconds, want_audio=False,
                            want_frames=True, fast_frames=fast_frames)
            media.audio = audio_only.audio
            media.source_sample_rate = audio_only.source_sample_rate
            media.source_channels = audio_only.source_channels
            media.duration_s = max(media.duration_s, audio_only.duration_s)
        else:
            media = _decode(p, max_frames=max_frames, max_seconds=max_seconds, want_audio=want_audio,
                            want_frames=want_frames, fast_frames=fast_frames)
        with _LOCK:
            _CACHE[key] = media
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
            live = {k[:3] for k in _CACHE}
            for fk in [fk for fk in _FILE_LOCKS if fk not in live and fk != file_key]:
                del _FILE_LOCKS[fk]
        return media


def _lookup(file_key: tuple, max_frames: int, want_audio: bool, want_frames: bool,
            fast_frames: bool) -> tuple[Media | None, tuple | None]:
    """A cached decode of the file holding at least what is asked (caller holds ``_LOCK``)."""
    key = file_key + (max_frames, want_audio, want_frames, fast_frames)
    if key in _CACHE:
        return _CACHE[key], key
    for k, m in _CACHE.items():
        if k[:3] != file_key or (want_audio and not k[4]):
            continue
        if want_frames and not (k[5] and k[3] == max_frames and k[6] == fast_frames):
            continue
        return m, k
    return None, None


def _decode(p: Path, *, max_frames: int, max_seconds: float | None, want_audio: bool, want_frames: bool,
            fast_frames: bool = False) -> Media:
    import av

    try:
        container = av.open(str(p))
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise ExpertError(f"{p.name} is not a readable audio/video file ({type(exc).__name__})") from None
    with container:
        astreams = list(container.streams.audio) if want_audio else []
        vstreams = list(container.streams.video) if want_frames else []
        # Still images are demuxed as one-frame "video" by FFmpeg's image2; callers use PIL for images.
        if not astreams and not vstreams:
            raise ExpertError(f"{p.name} has no {'audio' if want_audio and not want_frames else 'audio or video'} "
                              "stream")
        duration = float(container.duration / 1_000_000) if container.duration else 0.0
        if max_seconds is not None and duration > max_seconds:
            raise too_long(p, duration, max_seconds)
        astream = astreams[0] if astreams else None
        vstream = vstreams[0] if vstreams else None
        media = Media(path=p, audio=None, duration_s=duration)
        chunks: list[np.ndarray] = []
        resampler = None
        if astream is not None:
            media.source_sample_rate = astream.codec_context.sample_rate
            media.source_channels = astream.codec_context.channels
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        targets: list[float] = []
        if vstream is not None:
            media.fps = float(vstream.average_rate) if vstream.average_rate else None
            media.width, media.height = vstream.codec_context.width, vstream.codec_context.height
            vdur = float(vstream.duration * vstream.time_base) if vstream.duration else duration
            n = max(1, max_frames)
            targets = [(i + 0.5) * vdur / n for i in range(n)] if vdur > 0 else [0.0]
            if fast_frames and vstream.frames and vstream.frames > 2 * n:
                # Skip frames nothing else references (and, when far more frames than needed, B-frames too).
                vstream.codec_context.skip_frame = "BIDIR" if vstream.frames > 4 * n else "NONREF"
        streams = [s for s in (astream, vstream) if s is not None]
        next_target = 0
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if packet.stream is astream and resampler is not None:
                        for out in resampler.resample(frame):
                            chunks.append(out.to_ndarray().reshape(-1))
                    elif packet.stream is vstream and next_target < len(targets):
                        t = float(frame.time) if frame.time is not None else 0.0
                        if t + 1e-6 >= targets[next_target] or vstream.frames == 1:
                            media.frames.append(frame.to_ndarray(format="rgb24"))
                            media.frame_times.append(t)
                            while next_target < len(targets) and targets[next_target] <= t + 1e-6:
                                next_target += 1
                if max_seconds is not None and chunks and sum(map(len, chunks)) > max_seconds * SAMPLE_RATE * 1.05:
                    raise too_long(p, None, max_seconds)
                if astream is None and vstream is not None and next_target >= len(targets):
                    break  # frames only and every target sampled: skip decoding the tail
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            if not chunks and not media.frames:
                raise ExpertError(f"{p.name} could not be decoded ({type(exc).__name__})") from None
            # A truncated file: keep what decoded.
        if chunks:
            media.audio = np.concatenate(chunks).astype(np.float32)
            if not duration:
                media.duration_s = len(media.audio) / SAMPLE_RATE
        if vstream is not None and not media.frames and astream is None:
            raise ExpertError(f"{p.name}: no video frame could be decoded")
        return media


def load_audio(path: Path | str, max_seconds: float, what: str = "analyse") -> tuple[np.ndarray, float]:
    """16 kHz mono audio of ``path`` (its audio track for a video) and its duration, or ExpertError."""
    p = Path(path)
    media = decode(p, max_seconds=max_seconds, want_frames=False)
    if not media.has_audio or media.audio is None:
        raise ExpertError(f"{p.name} has no audio to {what}")
    duration = len(media.audio) / SAMPLE_RATE
    if duration > max_seconds:
        raise too_long(p, duration, max_seconds)
    return media.audio, duration
