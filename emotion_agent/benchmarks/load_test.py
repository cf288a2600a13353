"""Load test for the HTTP service: N concurrent chatbot clients for T seconds, on loopback only.

Each client plays one conversation: it sends a turn, "thinks" (exponential, mean ``--think`` s), sends
the next; a mix of request types (label-only analyze, streamed analyze with explanation, why, reading
the conversation, health). Reports p50/p95/p99 latency per request type, throughput, errors by
status, and the server's RSS sampled every second (start / peak / end), as JSON in results/.

    python -m emotion_agent.benchmarks.load_test --clients 50 --duration 300            # spawns a server on a free port
    python -m emotion_agent.benchmarks.load_test --url http://127.0.0.1:8000 --api-key K  # against a running one
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from emotion_agent.evals.paths import RESULTS_DIR

RESULTS = RESULTS_DIR
TEXTS = [
    "Hi, I'm checking on my order from last week.",
    "This is the third time the package arrived broken. I'm really fed up!",
    "Oh wow, I didn't expect the refund so quickly!",
    "Thanks a lot, that solved it, you're great.",
    "I'm worried someone else has access to my account.",
    "Honestly this whole thing makes me sad, I saved for months for it.",
    "Ugh, the replacement smells awful and it's covered in stains.",
    "Can you tell me when the store opens on Sunday?",
    "Why does nobody ever call me back?!",
    "Okay, fine. Let's try that.",
]
KINDS = ("analyze", "analyze_explain_stream", "why", "conversation", "health")


# ---- spawning a server on loopback (also used by the fault test) --------------------------------------
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None, timeout: float, ok: tuple[int, ...] = (200,)) -> None:
    """Poll ``url`` until its status is in ``ok``; raise if ``proc`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=3).status_code in ok:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


@dataclass
class Spawned:
    """A service process started by :func:`spawn_server`, with what it takes to restart it."""

    proc: subprocess.Popen
    url: str
    api_key: str
    log: Path
    env: dict[str, str]
    args: list[str]

    def stop(self, sig_kill: bool = False) -> None:
        """Terminate (or kill) the process if it is running, and wait for it to exit."""
        if self.proc.poll() is None:
            self.proc.kill() if sig_kill else self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def spawn_server(workdir: Path, *, port: int | None = None, llm: str | None = None, timeout_s: float = 60.0,
                 extra_env: dict[str, str] | None = None, api_key: str | None = None,
                 ready_timeout: float = 300.0) -> Spawned:
    """Start ``emotion-agent serve`` on loopback with a fresh API key; return once healthy."""
    port = port or free_port()
    api_key = api_key or "load-" + secrets.token_hex(16)
    env = {**os.environ, "EMOTION_AGENT_API_KEYS": api_key, "EMOTION_AGENT_MEMORY_DIR": str(workdir / "memory"),
           "EMOTION_AGENT_LLM_THREADS": os.environ.get("EMOTION_AGENT_LLM_THREADS", "1"),
           "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", **(extra_env or {})}
    args = [sys.executable, "-m", "emotion_agent", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--timeout", str(timeout_s), "--log-level", "warning"]
    if llm:
        args += ["--llm", llm]
    log = workdir / f"server-{port}.log"
    proc = subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            cwd=Path(__file__).resolve().parent.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc, ready_timeout)
    except Exception:
        proc.kill()
        raise
    return Spawned(proc, url, api_key, log, env, args)


def respawn(s: Spawned, ready_timeout: float = 300.0) -> Spawned:
    """Restart a stopped server with the same command, environment and port; wait until healthy."""
    proc = subprocess.Popen(s.args, env=s.env, stdout=s.log.open("ab"), stderr=subprocess.STDOUT,
                            cwd=Path(__file__).resolve().parent.parent)
    wait_http(s.url + "/healthz", proc, ready_timeout)
    return Spawned(proc, s.url, s.api_key, s.log, s.env, s.args)


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (None when unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# ---- the load ---------------------------------------------------------------------------------------
@dataclass
class Stats:
    """Latencies and errors collected by all clients, per request type."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: dict[str, dict[str, int]] = field(default_factory=lambda: {k: {} for k in KINDS})
    first_event_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def error(self, kind: str, what: str, detail: str = "") -> None:
        """Count one error of ``kind``; keep the first 20 as samples."""
        self.errors[kind][what] = self.errors[kind].get(what, 0) + 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{kind}: {what} {detail[:200]}")


def pick(mix: dict[str, float], rng: random.Random) -> str:
    """Draw a request type from ``mix`` (relative weights)."""
    r, acc = rng.random() * sum(mix.values()), 0.0
    for k, w in mix.items():
        acc += w
        if r <= acc:
            return k
    return "analyze"


async def client_loop(i: int, url: str, headers: dict[str, str], deadline: float, mix: dict[str, float],
                      think: float, stats: Stats, run_id: str, timeout: float) -> None:
    """One client: requests drawn from ``mix`` on its own conversation until ``deadline``."""
    rng = random.Random(i)
    conv = f"load-{run_id}-{i}"
    turns = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as http:
        await asyncio.sleep(rng.random() * min(think, 2.0))  # stagger the start
        while time.monotonic() < deadline:
            kind = pick(mix, rng)
            if kind in ("why", "conversation") and turns == 0:
                kind = "analyze"
            start = time.perf_counter()
            try:
                if kind == "analyze":
                    r = await http.post("/v1/analyze", json={"text": rng.choice(TEXTS), "conversation_id": conv,
                                                             "speaker": "customer"})
                    ok = r.status_code == 200
                    turns += ok
                elif kind == "analyze_explain_stream":
                    events, first, err_data = [], None, ""
                    async with http.stream("POST", "/v1/analyze?stream=true",
                                           json={"text": rng.choice(TEXTS), "conversation_id": conv,
                                                 "speaker": "customer", "explain": True}) as r:
                        async for line in r.aiter_lines():
                            if line.startswith("event: "):
                                events.append(line[7:])
                                if first is None:
                                    first = (time.perf_counter() - start) * 1000
                            elif line.startswith("data: ") and events[-1:] == ["error"]:
                                err_data = line[6:]
                    ok = r.status_code == 200 and events[:1] == ["label"] and "done" in events and "error" not in events
                    if ok and first is not None:
                        stats.first_event_ms.append(first)
                        turns += 1
                elif kind == "why":
                    r = await http.post("/v1/why", json={"conversation_id": conv,
                                                         "question": "Which evidence supports this label?"})
                    ok = r.status_code == 200
                elif kind == "conversation":
                    r = await http.get(f"/v1/conversations/{conv}")
                    ok = r.status_code == 200
                else:
                    r = await http.get("/healthz")
                    ok = r.status_code == 200
                elapsed = (time.perf_counter() - start) * 1000
                if ok:
                    stats.latencies[kind].append(elapsed)
                else:
                    if kind == "analyze_explain_stream":
                        code = json.loads(err_data)["error"]["code"] if err_data else "incomplete"
                        stats.error(kind, f"http_{r.status_code}" if r.status_code != 200 else f"stream_{code}",
                                    err_data)
                    else:
                        stats.error(kind, f"http_{r.status_code}", r.text)
            except (httpx.HTTPError, asyncio.TimeoutError) as exc:
                stats.error(kind, type(exc).__name__, str(exc))
            await asyncio.sleep(rng.expovariate(1.0 / think) if think > 0 else 0)


def pct(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values`` (nearest sorted value), or None when empty."""
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))], 1)


async def run_load(url: str, api_key: str, clients: int, duration: float, think: float, mix: dict[str, float],
                   pid: int | None, timeout: float) -> dict[str, Any]:
    """Run ``clients`` concurrent clients for ``duration`` s; summary of latencies, errors, RSS."""
    stats = Stats()
    headers = {"Authorization": f"Bearer {api_key}"}
    run_id = secrets.token_hex(3)
    rss: list[tuple[float, float]] = []
    t0 = time.monotonic()
    deadline = t0 + duration
    stop = asyncio.Event()

    async def sample_rss() -> None:
        """Sample the server's RSS every second until the load stops."""
        while not stop.is_set():
            if pid is not None and (m := rss_mb(pid)) is not None:
                rss.append((round(time.monotonic() - t0, 1), round(m, 1)))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample_rss())
    load1 = os.getloadavg()[0]
    await asyncio.gather(*(client_loop(i, url, headers, deadline, mix, think, stats, run_id, timeout)
                           for i in range(clients)))
    wall = time.monotonic() - t0
    stop.set()
    await sampler
    per_type = {}
    total_ok = 0
    for k in KINDS:
        lat = stats.latencies[k]
        n_err = sum(stats.errors[k].values())
        total_ok += len(lat)
        if lat or n_err:
            per_type[k] = {"ok": len(lat), "errors": n_err, "errors_by_kind": stats.errors[k],
                           "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99),
                           "max_ms": round(max(lat), 1) if lat else None,
                           "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
                           "throughput_rps": round(len(lat) / wall, 2)}
    if stats.first_event_ms:
        per_type["analyze_explain_stream"]["first_event_label_p50_ms"] = pct(stats.first_event_ms, 50)
        per_type["analyze_explain_stream"]["first_event_label_p95_ms"] = pct(stats.first_event_ms, 95)
    errors = sum(sum(v.values()) for v in stats.errors.values())
    rss_values = [m for _, m in rss]
    return {
        "clients": clients, "duration_s": duration, "wall_s": round(wall, 1), "think_mean_s": think, "mix": mix,
        "requests_ok": total_ok, "errors": errors, "throughput_rps": round(total_ok / wall, 2),
        "per_type": per_type, "error_samples": stats.error_samples,
        "rss_series": rss,
        "server_rss_mb": {"start": rss_values[0] if rss_values else None,
                          "peak": max(rss_values) if rss_values else None,
                          "end": rss_values[-1] if rss_values else None,
                          "samples_every_10s": [r for j, r in enumerate(rss) if j % 10 == 0],
                          **rss_trend(rss)},
        "load_average_1m_at_start": round(load1, 2), "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def rss_trend(rss: list[tuple[float, float]]) -> dict[str, Any]:
    """How RSS moves after warm-up: the least-squares slope (MB per minute) over the second half of the run,
    and the rise from the end of the first half to the end (a flat curve has both near 0)."""
    half = rss[len(rss) // 2:]
    if len(half) < 10:
        return {}
    import numpy as np

    t = np.array([x for x, _ in half]) / 60.0
    m = np.array([y for _, y in half])
    slope = float(np.polyfit(t, m, 1)[0])
    return {"second_half_slope_mb_per_min": round(slope, 2),
            "second_half_rise_mb": round(float(m[-1] - m[0]), 1), "second_half_from_s": half[0][0]}


def plot_rss(rss: list[list[float]], out: Path, title: str) -> None:
    """The server's RSS over the run (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.2), dpi=110)
    ax.plot([x / 60.0 for x, _ in rss], [y for _, y in rss], lw=1.2)
    ax.set_xlabel("minutes under load")
    ax.set_ylabel("server RSS (MB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def parse_mix(raw: str) -> dict[str, float]:
    """Parse ``type=weight,...`` into a dict; exit on an unknown request type."""
    mix = {}
    for part in raw.split(","):
        k, _, v = part.partition("=")
        if k.strip() not in KINDS:
            raise SystemExit(f"unknown request type {k!r} (known: {', '.join(KINDS)})")
        mix[k.strip()] = float(v)
    return mix


def main(argv: list[str] | None = None) -> None:
    """Run the load test against ``--url`` or a spawned server and write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="Running server (loopback only). Default: spawn one on a free port.")
    ap.add_argument("--api-key", default=os.environ.get("EMOTION_AGENT_LOAD_KEY"), help="Key for --url.")
    ap.add_argument("--pid", type=int, help="Server pid for RSS (default: from /healthz).")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=300.0, help="Seconds of load (bounded: at most 1800).")
    ap.add_argument("--think", type=float, default=2.0, help="Mean think time between a client's requests (s).")
    ap.add_argument("--mix", default="analyze=0.74,analyze_explain_stream=0.03,why=0.01,conversation=0.12,health=0.10")
    ap.add_argument("--llm", default=None, help="LLM of a spawned server (default: settings).")
    ap.add_argument("--server-timeout", type=float, default=60.0, help="Per-request timeout of a spawned server.")
    ap.add_argument("--client-timeout", type=float, default=120.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "service_load.json")
    ap.add_argument("--plot", type=Path, default=None, help="Also draw the server's RSS curve to this PNG "
                                                             "(a soak test: --duration 660 --plot soak.png).")
    args = ap.parse_args(argv)
    duration = min(args.duration, 1800.0)
    mix = parse_mix(args.mix)
    spawned = None
    tmp = Path(tempfile.mkdtemp(prefix="emotion-agent-load-"))
    try:
        if args.url:
            host = urlparse(args.url).hostname or ""
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise SystemExit("load tests run against loopback only")
            if not args.api_key:
                raise SystemExit("--api-key (or EMOTION_AGENT_LOAD_KEY) is needed with --url")
            url, key = args.url.rstrip("/"), args.api_key
        else:
            t = time.monotonic()
            spawned = spawn_server(tmp, llm=args.llm, timeout_s=args.server_timeout)
            url, key = spawned.url, spawned.api_key
            print(f"server up on {url} in {time.monotonic() - t:.0f} s", flush=True)
        health = httpx.get(url + "/healthz", timeout=10).json()
        pid = args.pid or health.get("pid")
        print(f"{args.clients} clients for {duration:.0f} s against {url} (llm {health.get('llm')})", flush=True)
        result = asyncio.run(run_load(url, key, args.clients, duration, args.think, mix, pid, args.client_timeout))
        result["server"] = {"url": url, "spawned": spawned is not None, "llm": health.get("llm"),
                            "memory_backend": health.get("memory_backend"),
                            "request_timeout_s": args.server_timeout if spawned else None,
                            "llm_threads": os.environ.get("EMOTION_AGENT_LLM_THREADS", "1") if spawned else None}
        result["command"] = "python -m emotion_agent.benchmarks.load_test " + " ".join(argv if argv is not None else sys.argv[1:])
        result["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        if args.plot and result["rss_series"]:
            plot_rss(result["rss_series"], args.plot, f"{args.clients} clients, {duration / 60:.0f} min: server RSS")
            print(f"wrote {args.plot}")
        summary = {k: (v["ok"], v["errors"], v["p50_ms"], v["p95_ms"]) for k, v in result["per_type"].items()}
        print(json.dumps({"errors": result["errors"], "throughput_rps": result["throughput_rps"],
                          "rss_mb": result["server_rss_mb"]["peak"], "per_type(ok,err,p50,p95)": summary}, indent=1))
        print(f"wrote {args.out}")
    finally:
        if spawned is not None:
            spawned.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
