"""Fault test for the HTTP service, on loopback only, bounded (a few minutes).

1. Chroma server (``chroma run``) + the service on it; store some turns.
2. Kill the service (SIGKILL) in the middle of a request; restart it: every stored turn is still there.
3. Kill the Chroma server: memory requests get a clear 503 (not a hang, not a 500), health says
   degraded, memory-free turns still work; restart Chroma: everything stored is back.
4. Malformed / huge / truncated / disguised uploads and bad requests: every one gets a 4xx with a
   clear message (no 5xx, no traceback, no server path in the answer).

    python -m emotion_agent.benchmarks.fault_test            # writes results/service_fault.json
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

import httpx

from emotion_agent.benchmarks.load_test import RESULTS, free_port, respawn, spawn_server, wait_http

BIN = Path(sys.executable).parent


def wav(seconds: float, rate: int = 16000) -> bytes:
    """A silent 16-bit mono WAV of ``seconds`` seconds."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


def png() -> bytes:
    """A plain 64x64 PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (180, 140, 120)).save(buf, format="PNG")
    return buf.getvalue()


def mp4(seconds: float = 1.0) -> bytes:
    """A small 64x64 MPEG-4 clip of ``seconds`` seconds at 10 fps."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 10 % 255, np.uint8), format="rgb24")
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def start_chroma(path: Path, port: int) -> subprocess.Popen:
    """Start a Chroma server on ``port`` storing in ``path``; return once it answers."""
    proc = subprocess.Popen([str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc, 120)
    return proc


def check(name: str, r: httpx.Response, want: tuple[int, ...]) -> dict[str, Any]:
    """One case's row: ok when the status is expected, with a message and no path or traceback."""
    try:
        body = r.json()
    except ValueError:
        body = {}
    err = body.get("error", {}) if isinstance(body, dict) else {}
    message = err.get("message", "")
    ok = r.status_code in want and bool(message) and "/tmp/" not in r.text and "Traceback" not in r.text
    return {"case": name, "status": r.status_code, "expected": list(want), "code": err.get("code"),
            "message": message, "ok": ok}


def main(argv: list[str] | None = None) -> None:
    """Run the fault scenarios against a spawned service and Chroma; write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--out", type=Path, default=RESULTS / "service_fault.json")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="emotion-agent-fault-"))
    uploads_before = set(Path(tempfile.gettempdir()).glob("emotion-agent-upload-*"))
    report: dict[str, Any] = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    chroma_port = free_port()
    chroma = start_chroma(tmp / "chroma", chroma_port)
    server = None
    try:
        server = spawn_server(tmp, llm=args.llm, timeout_s=60,
                              extra_env={"EMOTION_AGENT_CHROMA_URL": f"http://127.0.0.1:{chroma_port}",
                                         "EMOTION_AGENT_MAX_UPLOAD_MB": "2"})
        H = {"Authorization": f"Bearer {server.api_key}"}
        c = httpx.Client(base_url=server.url, headers=H, timeout=120)
        texts = ["Hi, my order never arrived.", "I've been waiting two weeks, this is ridiculous!",
                 "Okay, thank you for sorting it out."]
        stored = [c.post("/v1/analyze", json={"text": t, "conversation_id": "fault-1", "speaker": "customer"}).json()
                  for t in texts]
        before = c.get("/v1/conversations/fault-1").json()["turns"]

        # ---- 2. kill the service mid-request ------------------------------------------------------------
        outcome: dict[str, Any] = {}

        def slow_request() -> None:
            """Send an explained analysis and record what the client saw when the server died."""
            try:
                r = httpx.post(server.url + "/v1/analyze", headers=H, timeout=120,
                               json={"text": "And the tracking page still says nothing.", "conversation_id": "fault-1",
                                     "explain": True})
                outcome["status"] = r.status_code
            except httpx.HTTPError as exc:
                outcome["client_saw"] = type(exc).__name__

        th = threading.Thread(target=slow_request)
        th.start()
        time.sleep(1.5)
        server.stop(sig_kill=True)
        th.join(30)
        t = time.monotonic()
        server = respawn(server)
        restart_s = round(time.monotonic() - t, 1)
        after = c.get("/v1/conversations/fault-1").json()["turns"]
        kept = [(x["turn_index"], x["text"], x["label"]) for x in before]
        now = [(x["turn_index"], x["text"], x["label"]) for x in after]
        report["kill_server_mid_request"] = {
            "turns_before": len(before), "turns_after_restart": len(after),
            "all_earlier_turns_intact": now[:len(kept)] == kept,
            "in_flight_request": outcome or "still running when killed",
            "in_flight_turn_stored": len(after) > len(before), "restart_s": restart_s,
            "next_turn_index_after_restart": c.post("/v1/analyze", json={"text": "Are you still there?",
                                                                          "conversation_id": "fault-1"}).json()["turn_index"],
        }

        # ---- 3. kill the Chroma server ---------------------------------------------------------------------
        chroma.kill()
        chroma.wait(10)
        t = time.monotonic()
        r_mem = c.post("/v1/analyze", json={"text": "Hello again?", "conversation_id": "fault-1"})
        mem_s = round(time.monotonic() - t, 2)
        r_get = c.get("/v1/conversations/fault-1")
        r_health = c.get("/healthz")
        r_free = c.post("/v1/analyze", json={"text": "Just a question without memory."})
        chroma = start_chroma(tmp / "chroma", chroma_port)
        r_back = c.post("/v1/analyze", json={"text": "Back online?", "conversation_id": "fault-1"})
        final = c.get("/v1/conversations/fault-1").json()["turns"]
        report["kill_chroma"] = {
            "analyze_with_memory": check("analyze while chroma down", r_mem, (503,)) | {"seconds": mem_s},
            "get_conversation": check("get conversation while chroma down", r_get, (503,)),
            "healthz_status": r_health.status_code, "healthz": r_health.json(),
            "analyze_without_memory_status": r_free.status_code,
            "after_chroma_restart_status": r_back.status_code,
            "after_chroma_restart_turn_index": r_back.json().get("turn_index"),
            "stored_turns_after_restart": len(final),
            "all_earlier_turns_intact": [(x["turn_index"], x["text"], x["label"]) for x in final][:len(kept)] == kept,
        }

        # ---- 4. malformed / huge / truncated uploads and bad requests --------------------------------------------
        exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + b"\x00" * 4000
        elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 4000
        good_mp4 = mp4()
        cases = [
            ("exe renamed .wav", lambda: c.post("/v1/analyze", files={"audio": ("voice.wav", exe, "audio/wav")}), (415,)),
            ("ELF renamed .png", lambda: c.post("/v1/analyze", files={"image": ("face.png", elf, "image/png")}), (415,)),
            ("wav sent as image", lambda: c.post("/v1/analyze", files={"image": ("face.jpg", wav(0.5), "image/jpeg")}), (415,)),
            ("empty audio", lambda: c.post("/v1/analyze", files={"audio": ("a.wav", b"", "audio/wav")}), (422,)),
            ("truncated wav", lambda: c.post("/v1/analyze", files={"audio": ("a.wav", wav(3.0)[:9000], "audio/wav")}), (422,)),
            ("truncated png", lambda: c.post("/v1/analyze", files={"image": ("f.png", png()[:80], "image/png")}), (422,)),
            ("truncated mp4", lambda: c.post("/v1/analyze", files={"video": ("v.mp4", good_mp4[:len(good_mp4) // 3], "video/mp4")}), (422,)),
            ("audio over 60 s", lambda: c.post("/v1/analyze", files={"audio": ("long.wav", wav(61.0), "audio/wav")}), (413,)),
            ("upload over 2 MiB", lambda: c.post("/v1/analyze", files={"audio": ("big.wav", wav(70.0), "audio/wav")}), (413,)),
            ("body over request limit", lambda: c.post("/v1/analyze", files={"audio": ("a.wav", b"RIFF" + b"\x00" * (6 << 20), "audio/wav")}), (413,)),
            ("huge JSON", lambda: c.post("/v1/analyze", json={"text": "x" * 200_000}), (413,)),
            ("malformed JSON", lambda: c.post("/v1/analyze", content=b'{"text": "hi"', headers={"Content-Type": "application/json"}), (422,)),
            ("malformed multipart", lambda: c.post("/v1/analyze", content=b"--xx\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n\r\nRIFF",
                                                   headers={"Content-Type": "multipart/form-data; boundary=xx"}), (400, 415, 422)),
            ("wrong content type", lambda: c.post("/v1/analyze", content=b"hello", headers={"Content-Type": "text/plain"}), (415,)),
            ("server path in JSON", lambda: c.post("/v1/analyze", json={"text": "hi", "audio_path": "/etc/passwd"}), (422,)),
            ("server path as form field", lambda: c.post("/v1/analyze", data={"text": "hi", "audio": "/etc/passwd"}), (422,)),
            ("bad conversation id", lambda: c.post("/v1/analyze", json={"text": "hi", "conversation_id": "../../x"}), (422,)),
            ("empty text", lambda: c.post("/v1/analyze", json={"text": "   "}), (422,)),
            ("no API key", lambda: httpx.post(server.url + "/v1/analyze", json={"text": "hi"}), (401,)),
            ("wrong API key", lambda: httpx.post(server.url + "/v1/analyze", json={"text": "hi"},
                                                 headers={"X-API-Key": "wrong-key-0000000000"}), (401,)),
            ("why on unknown turn", lambda: c.post("/v1/why", json={"conversation_id": "fault-1", "turn_index": 999,
                                                                    "question": "why?"}), (404,)),
            ("unknown conversation", lambda: c.get("/v1/conversations/never-seen"), (404,)),
        ]
        results = []
        for name, fn, want in cases:
            try:
                results.append(check(name, fn(), want))
            except httpx.HTTPError as exc:
                results.append({"case": name, "status": None, "expected": list(want), "ok": False,
                                "message": f"client error {type(exc).__name__}"})
        ok_upload = c.post("/v1/analyze", files={"video": ("v.mp4", good_mp4, "video/mp4")},
                           data={"text": "Look at this, it's all broken.", "conversation_id": "fault-2"})
        report["bad_requests"] = {"cases": results, "all_4xx_with_message": all(r["ok"] for r in results),
                                  "n": len(results), "n_ok": sum(r["ok"] for r in results),
                                  "valid_mp4_upload_status": ok_upload.status_code}
        report["server_still_healthy"] = c.get("/healthz").status_code == 200
        leftover = set(Path(tempfile.gettempdir()).glob("emotion-agent-upload-*")) - uploads_before
        report["upload_dirs_left_in_tmp"] = len(leftover)
        log_text = server.log.read_text(errors="replace") if server.log.exists() else ""
        report["api_key_in_server_log"] = server.api_key in log_text
        report["user_text_in_server_log"] = any(t in log_text for t in texts)
        report["stored_turns_before_kill"] = [s.get("label") for s in stored]
    finally:
        if server is not None:
            server.stop()
        chroma.kill()
        chroma.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    report["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "bad_requests"}, indent=1)[:3000])
    print("bad requests:", report["bad_requests"]["n_ok"], "/", report["bad_requests"]["n"], "ok")
    for r in report["bad_requests"]["cases"]:
        print(f"  {'ok ' if r['ok'] else 'BAD'} {r['status']} {r['case']}: {r['message'][:110]}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
