"""Benchmark of the analyst pages: time to first byte and full load of the run page and a turn page
(p50 of N loads in a real headless Chromium), and the service's peak RSS while they are used.

    python -m emotion_agent.benchmarks.bench_pages --runs-dir runs --run meld-test-full [--loads 10]

Spawns ``emotion-agent serve`` on a free loopback port (the real agent, as users run it), logs in through
the form, loads each page ``--loads`` times after one cold load (reported apart), filters the run once
per load (the htmx swap), and samples the server's RSS every 0.2 s. Writes JSON to results/.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from emotion_agent.benchmarks.load_test import free_port, rss_mb, wait_http
from emotion_agent.evals.paths import RESULTS_DIR


def timing(driver: Any) -> dict[str, float]:
    """Navigation timing of the page the browser shows: TTFB and full load (ms)."""
    t = driver.execute_script("const n = performance.getEntriesByType('navigation')[0]; "
                              "return [n.requestStart, n.responseStart, n.loadEventEnd, n.domContentLoadedEventEnd];")
    return {"ttfb_ms": round(t[1] - t[0], 1), "load_ms": round(t[2], 1), "dom_ms": round(t[3], 1)}


def load(driver: Any, url: str, wait_images: bool = True) -> dict[str, float]:
    """Load ``url`` and wait for its load event (and every image) to finish; its timing."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 120, poll_frequency=0.05).until(
        lambda d: d.execute_script("const n = performance.getEntriesByType('navigation')[0];"
                                   "return n && n.loadEventEnd > 0"))
    if wait_images:
        WebDriverWait(driver, 120, poll_frequency=0.05).until(lambda d: d.execute_script(
            "return Array.from(document.images).every(i => i.complete)"))
    return timing(driver)


def p50(values: list[float]) -> float:
    """The median (ms, one decimal)."""
    return round(statistics.median(values), 1)


def main(argv: list[str] | None = None) -> None:
    """Spawn the service, measure the pages, write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--run", required=True, help="Run folder name inside --runs-dir (e.g. the full test run).")
    ap.add_argument("--loads", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_pages.json")
    args = ap.parse_args(argv)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        raise SystemExit("chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    records = (args.runs_dir / args.run / "records.jsonl")
    if not records.is_file():
        raise SystemExit(f"no run at {records.parent}")
    with records.open() as fh:
        first, second = json.loads(fh.readline()), json.loads(fh.readline())
    key, port = secrets.token_urlsafe(24), free_port()
    env = {**os.environ, "EMOTION_AGENT_API_KEYS": f"bench={key}"}
    cmd = [sys.executable, "-m", "emotion_agent", "serve", "--port", str(port), "--runs-dir", str(args.runs_dir),
           "--log-level", "warning"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    driver = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", proc, 600)
        started_s = round(time.monotonic() - t0, 1)

        def sample() -> None:
            """Sample the server's RSS until stopped."""
            while not stop.is_set():
                if (m := rss_mb(proc.pid)) is not None:
                    samples.append((round(time.monotonic() - t0, 2), m))
                time.sleep(0.2)

        threading.Thread(target=sample, daemon=True).start()
        rss_ready = rss_mb(proc.pid)
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
            opts.add_argument(a)
        driver = webdriver.Chrome(options=opts, service=Service(driver_path))
        driver.get(base + "/ui/login")
        driver.find_element(By.ID, "key").send_keys(key)
        driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        pages = {"run": f"{base}/ui/runs/{args.run}", "turn": f"{base}/ui/runs/{args.run}/turn/{first['key']}",
                 "runs": f"{base}/ui/"}
        out: dict[str, Any] = {}
        for name, url in pages.items():
            cold = load(driver, url)
            warm = [load(driver, url) for _ in range(args.loads)]
            out[name] = {"cold": cold, "loads": args.loads, "ttfb_p50_ms": p50([w["ttfb_ms"] for w in warm]),
                         "full_load_p50_ms": p50([w["load_ms"] for w in warm]),
                         "ttfb_max_ms": max(w["ttfb_ms"] for w in warm),
                         "full_load_max_ms": max(w["load_ms"] for w in warm)}
            print(f"{name:5s} cold ttfb {cold['ttfb_ms']:.0f} ms, load {cold['load_ms']:.0f} ms; "
                  f"p50 of {args.loads}: ttfb {out[name]['ttfb_p50_ms']:.0f} ms, load {out[name]['full_load_p50_ms']:.0f} ms",
                  flush=True)
        # the filter swap (htmx) on the full run: wrong only, then one confusion cell
        import httpx

        cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
        swaps = []
        with httpx.Client(base_url=base, cookies=cookies, headers={"HX-Request": "true"}) as client:
            for i in range(args.loads):
                t = time.perf_counter()
                r = client.get(f"/ui/runs/{args.run}/turns", params={"wrong": "1", "page": str(i + 1)})
                r.raise_for_status()
                swaps.append((time.perf_counter() - t) * 1000)
        out["filter_swap"] = {"p50_ms": p50(swaps), "max_ms": round(max(swaps), 1)}
        # the turn page's words fragment (of a turn not opened yet): the text expert's occlusion pass the first
        # time, cached after
        words = []
        with httpx.Client(base_url=base, cookies=cookies, headers={"HX-Request": "true"}, timeout=120) as client:
            for i in range(args.loads):
                t = time.perf_counter()
                client.get(f"/ui/runs/{args.run}/words/{second['key']}").raise_for_status()  # not yet computed
                words.append((time.perf_counter() - t) * 1000)
        out["words_fragment"] = {"first_ms": round(words[0], 1), "cached_p50_ms": p50(words[1:])}
        print(f"words fragment first {words[0]:.0f} ms, cached p50 {p50(words[1:]):.0f} ms", flush=True)
        print(f"filter swap p50 {out['filter_swap']['p50_ms']:.0f} ms", flush=True)
        stop.set()
        rss = [m for _, m in samples]
        result = {"command": "python -m emotion_agent.benchmarks.bench_pages " + " ".join(argv or sys.argv[1:]),
                  "run": args.run, "run_utterances": sum(1 for _ in records.open()), "pages": out,
                  "service": {"ready_after_s": started_s, "rss_ready_mb": rss_ready,
                              "rss_peak_mb": round(max(rss), 1) if rss else None,
                              "rss_end_mb": round(rss[-1], 1) if rss else None},
                  "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
                  "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["service"]), f"\nwrote {args.out}")
    finally:
        stop.set()
        if driver is not None:
            driver.quit()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
