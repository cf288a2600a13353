"""``--engine local`` against ``--engine ray`` in one run, through the CLI a user runs (``emotion-agent eval``).

Phases (each writes ``results/bench_ray.json`` again, so a cut run keeps what it measured):

1. **labels**: ``eval media speech`` on ``--clips`` RAVDESS clips and ``eval meld --split dev`` on ``--utterances``
   MELD dev utterances (the run groups them into whole dialogues on Ray), once per engine, each run with a private
   expert cache (the real models, an empty cache: every expert computes) — label identity input by input.
2. **kill**: ``eval media speech --engine ray`` on the first ``--kill-clips`` clips, one actor SIGKILLed once
   ``--kill-after`` records are written: records lost, duplicated, labels against the local run.
3. **throughput**: ``--rounds`` short rounds on the same ``--round-clips`` clips, ``--engine local`` and
   ``--engine ray --workers 2 --threads-per-worker 1`` in each, the order swapped every round, so the load of a
   shared machine weighs on both alike. Rate = records per second from the moment 10 % (at least 4) of the
   records are written to the last one (models load lazily on each worker's first items; this leaves loading
   and Ray's start out). Each round's ratio Ray / local and the median of the rounds.

The CPU model, flags, core count and load average go in the JSON: on a shared machine timings are upper bounds.

    python -m emotion_agent.benchmarks.bench_ray --clips 100 --utterances 120 --rounds 4 --round-clips 24
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from emotion_agent.evals.run_media import balanced, speech_items
from emotion_agent.tools.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
RAY = ["--engine", "ray", "--workers", "2", "--threads-per-worker", "1"]


def cpu_info() -> dict[str, Any]:
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    return {"cpu_model": model, "cores": os.cpu_count(), "simd": [f for f in ("avx2", "avx512f", "fma") if f in flags],
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
            "note": "machine shared with other jobs: timings are upper bounds"}


def records(folder: Path) -> list[dict[str, Any]]:
    path = folder / "records.jsonl"
    if not path.is_file():
        return []
    out = []
    for x in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(x))
        except ValueError:  # a line being written
            continue
    return out


def private_cache(work: Path, name: str) -> Path:
    """A cache folder with the real models and an empty expert cache."""
    cache = work / "cache" / name
    cache.mkdir(parents=True)
    (cache / "models").symlink_to(Settings.from_env().models_dir)
    return cache


def env_for(cache: Path) -> dict[str, str]:
    pp = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "EMOTION_AGENT_CACHE_DIR": str(cache), "EMOTION_AGENT_MEMORY_DIR": str(cache / "memory"),
            "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": pp}


def descendants(root: int) -> list[int]:
    """Pids of every live process below ``root`` (read from /proc)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        frontier += kids
    return found


def actor_pids(root: int) -> list[int]:
    pids = []
    for pid in descendants(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "AgentWorker" in cmd:
            pids.append(pid)
    return pids


def run_eval(args: list[str], out: Path, cache: Path, kill_after: int | None = None) -> dict[str, Any]:
    """One ``emotion-agent eval ...`` run into ``out``, its records polled every 0.5 s (records over time); with
    ``kill_after``, SIGKILL one actor process once that many records are written."""
    cmd = [sys.executable, "-m", "emotion_agent", "eval", *args, "--out", str(out)]
    log = out.with_suffix(".log")
    killed: dict[str, Any] = {"killed_pid": None}
    t0 = time.perf_counter()
    progress: list[tuple[float, int]] = []
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=env_for(cache), cwd=cache, stdout=err, stderr=err, text=True)
        while proc.poll() is None:
            time.sleep(0.5)
            n = len(records(out))
            if not progress or n != progress[-1][1]:
                progress.append((time.perf_counter() - t0, n))
            if kill_after is not None and killed["killed_pid"] is None and n >= kill_after:
                pids = actor_pids(proc.pid)
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed = {"killed_pid": pids[0], "records_at_kill": n, "at_s": round(time.perf_counter() - t0, 1)}
    n = len(records(out))
    if not progress or n != progress[-1][1]:
        progress.append((time.perf_counter() - t0, n))
    return {"command": "emotion-agent eval " + " ".join(args), "returncode": proc.returncode,
            "log_tail": log.read_text()[-800:] if proc.returncode else "", "wall_s": round(time.perf_counter() - t0, 1),
            "steady": steady_rate(progress), **killed}


def steady_rate(progress: list[tuple[float, int]]) -> dict[str, Any] | None:
    """Records per second between the moment 10 % (at least 4) were written and the last one."""
    if not progress:
        return None
    total = progress[-1][1]
    warm = next(((t, n) for t, n in progress if n >= max(4, total // 10)), None)
    if warm is None or warm[1] >= total:
        return None
    return {"from_record": warm[1], "to_record": total, "seconds": round(progress[-1][0] - warm[0], 1),
            "records_per_s": round((total - warm[1]) / (progress[-1][0] - warm[0]), 4)}


def compare(reference: dict[str, str], recs: list[dict[str, Any]], expected: list[str]) -> dict[str, Any]:
    keys = [r["key"] for r in recs]
    got = {r["key"]: r.get("label") for r in recs}
    differ = [k for k in expected if k in got and got[k] != reference.get(k)]
    lost = set(expected) - set(keys)
    return {"inputs": len(expected), "records": len(keys), "lost": len(lost), "duplicated": len(keys) - len(set(keys)),
            "same_label": len(expected) - len(differ) - len(lost), "differing": differ[:20]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=100, help="RAVDESS clips for the label phase")
    ap.add_argument("--utterances", type=int, default=120, help="MELD dev utterances for the label phase")
    ap.add_argument("--kill-clips", type=int, default=40)
    ap.add_argument("--kill-after", type=int, default=10, help="records written before one actor is killed")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--round-clips", type=int, default=24)
    ap.add_argument("--heads", type=Path, default=None, help="speech fold heads (eval media --heads)")
    ap.add_argument("--phases", default="labels,kill,throughput")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "bench_ray.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    heads = ["--heads", str(args.heads)] if args.heads else []
    speech = ["media", "speech", "--corpus", "ravdess", *heads]
    report: dict[str, Any] = {"command": " ".join(["python -m emotion_agent.benchmarks.bench_ray", *sys.argv[1:]]),
                              "machine": cpu_info(), "work_dir": str(work)}
    phases = args.phases.split(",")

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    def pair(name: str, cmd: list[str]) -> dict[str, str]:
        """Both engines on ``cmd``; the local labels (the reference)."""
        local = run_eval(cmd, work / f"{name}_local", private_cache(work, f"{name}_local"))
        on_ray = run_eval(cmd + RAY, work / f"{name}_ray", private_cache(work, f"{name}_ray"))
        ref = {r["key"]: r["label"] for r in records(work / f"{name}_local")}
        report.setdefault("labels", {})[name] = {"local": local, "ray": on_ray,
                                                 "vs_local": compare(ref, records(work / f"{name}_ray"), list(ref))}
        save()
        return ref

    speech_ref: dict[str, str] = {}
    if "labels" in phases:
        speech_ref = pair("speech", [*speech, "--limit", str(args.clips)])
        pair("meld", ["meld", "--split", "dev", "--limit", str(args.utterances)])
        n = sum(v["vs_local"]["inputs"] for v in report["labels"].values())
        same = sum(v["vs_local"]["same_label"] for v in report["labels"].values())
        report["labels_total"] = {"inputs": n, "same_label": same}
        save()
        print(json.dumps({"labels_total": report["labels_total"]}), flush=True)
    if "kill" in phases:
        cmd = [*speech, "--limit", str(args.kill_clips)]
        expected = [it["key"] for it in balanced(speech_items(Settings.from_env().data_dir, "ravdess"),
                                                 args.kill_clips)]
        ref = speech_ref
        if not set(expected) <= set(ref):  # the kill run's clips were not all in the label phase
            run_eval(cmd, work / "kill_ref", private_cache(work, "kill_ref"))
            ref = {r["key"]: r["label"] for r in records(work / "kill_ref")}
        killed = run_eval(cmd + RAY, work / "killed", private_cache(work, "killed"), kill_after=args.kill_after)
        report["kill_mid_run"] = {**killed, "vs_local": compare(ref, records(work / "killed"), expected)}
        save()
        print(json.dumps({"kill": report["kill_mid_run"]["vs_local"], "pid": killed["killed_pid"]}), flush=True)
    if "throughput" in phases:
        rounds = []
        cmd = [*speech, "--limit", str(args.round_clips)]
        for k in range(args.rounds):
            row: dict[str, Any] = {"round": k + 1, "order": "local,ray" if k % 2 == 0 else "ray,local"}
            for engine in row["order"].split(","):
                run = run_eval(cmd + (RAY if engine == "ray" else []), work / f"round{k + 1}_{engine}",
                               private_cache(work, f"round{k + 1}_{engine}"))
                row[engine] = {"records_per_s": (run["steady"] or {}).get("records_per_s"), "wall_s": run["wall_s"],
                               "returncode": run["returncode"], "steady": run["steady"],
                               "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
            if row["local"]["records_per_s"] and row["ray"]["records_per_s"]:
                row["ratio_ray_over_local"] = round(row["ray"]["records_per_s"] / row["local"]["records_per_s"], 3)
            rounds.append(row)
            report["throughput"] = {"inputs_per_round": args.round_clips, "rounds": rounds}
            ratios = [r["ratio_ray_over_local"] for r in rounds if "ratio_ray_over_local" in r]
            if ratios:
                report["throughput"]["median_ratio_ray_over_local"] = round(statistics.median(ratios), 3)
            save()
            print(json.dumps(row), flush=True)
    report["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save()


if __name__ == "__main__":
    main()
