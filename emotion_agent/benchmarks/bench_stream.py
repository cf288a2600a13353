"""Streamed voice turns through ``emotion-agent serve``: end of speech → final label, 20 streams, a vanishing client.

The server is started as a user starts it (``python -m emotion_agent serve`` in a subprocess, one API key, its
own memory folder); clients are :func:`service.stream_client.stream_audio` sending 16 kHz PCM in 100 ms frames on a
real-time schedule. Each clip is followed by silence, so the utterance ends by the VAD (not by the end message).

1. **Latency**, one stream at a time: for each clip (seeded 3-4 s RAVDESS clips, then the MELD media clips),
   ``end of speech → final`` = the final's arrival minus the moment the client sent the last speech sample (the
   VAD's ``speech_end_s`` on the real-time schedule). It contains the VAD's end silence
   (``stream_end_silence_ms``) plus the analysis; ``after the VAD's decision`` is the analysis alone (the
   server's ``latency_ms``).
2. **Load**: ``N`` concurrent streams (default 20), each playing two RAVDESS clips with silence between, plus
   one client that drops its connection (no close handshake) in the middle of its first utterance. Counted:
   errors (``error``/``final_error`` events, closes other than 1000) and lost utterances (a clip of a client
   that stayed with no final overlapping it).
3. The server's peak RSS (``VmHWM``).

``python -m emotion_agent.benchmarks.bench_stream [N_LATENCY_CLIPS] [N_STREAMS]`` prints the figures and writes
``results/bench_stream.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from emotion_agent.benchmarks.asr_wer import cpu_model
from emotion_agent.benchmarks.bench_voice_latency import percentiles, short_ravdess
from emotion_agent.service.stream_client import StreamRun, stream_audio
from emotion_agent.tools.media import load_audio
from emotion_agent.tools.settings import Settings

KEY = "bench-stream-key-0123456789"
SR = 16_000
GAP_S = 1.5  # silence after each clip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, memory: Path, streams: int) -> subprocess.Popen:
    """``emotion-agent serve`` on ``port`` (auth on); waits for /healthz to say ok."""
    env = {**os.environ, "EMOTION_AGENT_API_KEYS": f"bench={KEY}", "EMOTION_AGENT_MEMORY_DIR": str(memory),
           "EMOTION_AGENT_STREAM_MAX_PER_KEY": str(streams + 4),
           # 20 streams on 2 shared cores queue up: a long request timeout keeps slow finals from becoming 504s
           "EMOTION_AGENT_REQUEST_TIMEOUT_S": "600", "EMOTION_AGENT_MAX_QUEUE": "256"}
    proc = subprocess.Popen([sys.executable, "-m", "emotion_agent", "serve", "--port", str(port),
                             "--log-level", "warning"], env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                if json.loads(r.read())["status"] == "ok":
                    return proc
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(2)
    proc.kill()
    raise RuntimeError("the server did not become ready within 600 s")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def with_gaps(clips: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The clips one after the other, each followed by :data:`GAP_S` of silence; (audio, clip spans in s)."""
    parts, spans, at = [], [], 0.0
    gap = np.zeros(int(GAP_S * SR), dtype=np.float32)
    for c in clips:
        parts += [c, gap]
        spans.append((at, at + len(c) / SR))
        at += (len(c) + len(gap)) / SR
    return np.concatenate(parts), spans


def problems(run: StreamRun) -> list[str]:
    """Errors of one stream: error events and a close other than normal."""
    out = [f"{e['type']}: {e.get('code')} {e.get('message')}" for e in run.events
           if e["type"] in ("error", "final_error")]
    if run.close_code != 1000:
        out.append(f"closed {run.close_code} {run.close_reason}")
    return out


def lost(run: StreamRun, spans: list[tuple[float, float]]) -> int:
    """Clips with no final whose utterance overlaps them."""
    finals = [(f["start_s"], f["start_s"] + f["duration_s"]) for f in run.of("final")]
    return sum(not any(a < e and s < b for a, b in finals) for s, e in spans)


async def latency_phase(url: str, clips: list[tuple[str, np.ndarray]]) -> list[dict]:
    rows = []
    for name, audio in clips:
        full, _ = with_gaps([audio])
        run = await stream_audio(url, full, key=KEY, conversation="lat", options={"partials": True})
        for f in run.of("final"):
            rows.append({"clip": name, "end_to_final_ms": round((f["at"] - f["speech_end_s"]) * 1000, 1),
                         "after_vad_ms": f["latency_ms"], "speech_end_s": f["speech_end_s"],
                         "expert_ms": f["result"]["timings_ms"], "label": f["result"]["label"]})
        rows.append({"clip": name, "partials": len(run.of("partial")), "errors": problems(run)})
    return rows


async def staggered(delay: float, job):  # noqa: ANN001 - a coroutine
    """Start ``job`` after ``delay`` seconds (streams that do not all begin on the same frame)."""
    await asyncio.sleep(delay)
    return await job


async def load_phase(url: str, clips: list[np.ndarray], n_streams: int) -> dict:
    jobs, spans_of = [], []
    for i in range(n_streams):
        audio, spans = with_gaps([clips[(2 * i) % len(clips)], clips[(2 * i + 1) % len(clips)]])
        spans_of.append(spans)
        jobs.append(stream_audio(url, audio, key=KEY, conversation=f"load-{i}", speaker=f"s{i}"))
    first = clips[0]
    jobs.append(stream_audio(url, with_gaps([first])[0], key=KEY, conversation="vanish", stop_after_s=1.5))
    t0 = time.monotonic()
    runs = await asyncio.gather(*[staggered(0.15 * i, j) for i, j in enumerate(jobs)], return_exceptions=True)
    wall = time.monotonic() - t0
    stayed = runs[:n_streams]
    errors = [f"stream {i}: {r!r}" for i, r in enumerate(stayed) if isinstance(r, BaseException)]
    errors += [f"stream {i}: {p}" for i, r in enumerate(stayed) if isinstance(r, StreamRun) for p in problems(r)]
    n_lost = sum(lost(r, s) for r, s in zip(stayed, spans_of) if isinstance(r, StreamRun))
    n_lost += sum(len(s) for r, s in zip(stayed, spans_of) if isinstance(r, BaseException))
    lat = [f["at"] - f["speech_end_s"] for r in stayed if isinstance(r, StreamRun) for f in r.of("final")]
    vanished = runs[-1]
    return {"streams": n_streams, "utterances_expected": sum(len(s) for s in spans_of),
            "finals": sum(len(r.of("final")) for r in stayed if isinstance(r, StreamRun)),
            "errors": errors, "lost_utterances": n_lost, "wall_s": round(wall, 1),
            "end_to_final_ms": percentiles([x * 1000 for x in lat]) if lat else None,
            "vanishing_client": repr(vanished) if isinstance(vanished, BaseException) else
            {"sent_s": vanished.sent_s, "events": [e["type"] for e in vanished.events]}}


def main(n_latency: int = 16, n_streams: int = 20) -> dict:
    settings = Settings.from_env()
    data = settings.data_dir
    ravdess = [(p.name, load_audio(p, 60)[0]) for p in short_ravdess(data, max(n_latency, 8))]
    meld = [(p.name, load_audio(p, 60)[0]) for p in sorted((data / "meld" / "media").glob("*.wav"))]
    port = free_port()
    url = f"ws://127.0.0.1:{port}/v1/stream"
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(port, Path(tmp) / "memory", n_streams)
        try:
            asyncio.run(latency_phase(url, ravdess[:1]))  # warm-up, not counted
            lat_rows = asyncio.run(latency_phase(url, ravdess[:n_latency] + meld))
            load = asyncio.run(load_phase(url, [a for _, a in ravdess], n_streams))
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finals = [r for r in lat_rows if "end_to_final_ms" in r]
    by = {"ravdess": [r for r in finals if r["clip"].endswith(".flac")],
          "meld": [r for r in finals if not r["clip"].endswith(".flac")]}
    out = {
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "load_avg_at_end": os.getloadavg(),
        "machine_note": "shared machine (other jobs running): figures are upper bounds",
        "asr_mode": settings.asr_mode, "end_silence_ms": settings.stream_end_silence_ms,
        "latency": {k: {"end_to_final_ms": percentiles([r["end_to_final_ms"] for r in v]),
                        "after_vad_decision_ms": percentiles([r["after_vad_ms"] for r in v])}
                    for k, v in by.items() if v},
        "latency_errors": [e for r in lat_rows for e in r.get("errors", [])],
        "load": load, "server_peak_rss_mb": rss, "rows": lat_rows,
    }
    Path("results").mkdir(exist_ok=True)
    Path("results/bench_stream.json").write_text(json.dumps(out, indent=1))
    print(out["cpu"], f"({out['cpu_count']} CPUs, shared; load {out['load_avg_at_end'][0]:.1f})")
    for k, v in out["latency"].items():
        print(f"{k}: end of speech -> final p50 {v['end_to_final_ms']['p50']:.0f} ms p95 "
              f"{v['end_to_final_ms']['p95']:.0f} ms (n={v['end_to_final_ms']['n']}); after the VAD's decision "
              f"p50 {v['after_vad_decision_ms']['p50']:.0f} ms")
    print(f"load: {load['streams']} streams + 1 vanishing, finals {load['finals']}/{load['utterances_expected']}, "
          f"errors {len(load['errors'])}, lost {load['lost_utterances']}, wall {load['wall_s']} s, end->final "
          f"{load['end_to_final_ms']}; server peak RSS {rss} MB")
    return out


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
