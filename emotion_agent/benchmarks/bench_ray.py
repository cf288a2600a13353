"""Local engine against ``--engine ray`` in one run, through the CLI a user runs (``emotion-agent batch``).

On the same inputs (speech clips from ``speech/labels.csv`` and MELD dev dialogues as text turns with their
conversation ids) it runs ``batch --engine local`` and ``batch --engine ray --workers 2 --threads-per-worker 1``,
then a third ``--engine ray`` run on the first ``--kill-inputs`` inputs during which one actor process is
killed (SIGKILL) once ``--kill-after`` lines are written. It reports:

- label identity of the Ray run (and of the killed run) against the local run, input by input;
- throughput in steady state: inputs per second from the moment 10 % of the lines are written to the last
  line (the models load lazily on each worker's first inputs, so this leaves loading and Ray start-up out),
  and the ratio Ray / local;
- for the killed run: inputs lost (no line), duplicated (more than one line), and whether a kill happened;
- the CPU model, core count and load average, since timings on a shared machine are upper bounds.

Each run gets its own conversation-memory folder, so no run sees another's turns. Results go to
``results/bench_ray.json`` (rewritten after each phase, so a cut run keeps what it measured).

    python -m emotion_agent.benchmarks.bench_ray --clips 100 --dialogues 10
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from emotion_agent.tools.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def cpu_info() -> dict[str, Any]:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() \
        else platform.processor()
    return {"cpu_model": model, "cores": os.cpu_count(), "load_avg_at_start": list(os.getloadavg()),
            "note": "machine shared with other jobs: timings are upper bounds"}


def build_inputs(data_dir: Path, n_clips: int, n_dialogues: int, path: Path) -> dict[str, int]:
    """A JSONL of ``n_clips`` speech clips (spread evenly over labels.csv) and the first ``n_dialogues``
    MELD dev dialogues, one text turn per line with ``conversation_id`` and ``speaker``."""
    with (data_dir / "speech" / "labels.csv").open(encoding="utf-8") as fh:
        clips = [r["path"] for r in csv.DictReader(fh)]
    step = max(1, len(clips) // max(n_clips, 1))
    chosen = clips[::step][:n_clips]
    rows: list[dict[str, str]] = [{"audio": str(data_dir / "speech" / c)} for c in chosen]
    dialogues: dict[str, list[dict[str, str]]] = {}
    with (data_dir / "meld" / "dev_sent_emo.csv").open(encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            did = r["Dialogue_ID"]
            if did not in dialogues and len(dialogues) == n_dialogues:
                continue
            dialogues.setdefault(did, []).append({"text": r["Utterance"], "conversation_id": f"meld-dev-{did}",
                                                  "speaker": r["Speaker"]})
    turns = [t for d in dialogues.values() for t in d]
    # Each dialogue is placed whole after an even share of the clips, so any prefix mixes both kinds.
    mixed: list[dict[str, str]] = []
    share = max(1, len(rows) // max(len(dialogues), 1))
    for k, dialogue in enumerate(dialogues.values()):
        mixed += rows[k * share:(k + 1) * share] + dialogue
    mixed += rows[len(dialogues) * share:]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in mixed), encoding="utf-8")
    return {"speech_clips": len(rows), "meld_dialogues": len(dialogues), "meld_turns": len(turns)}


def lines_of(out: Path) -> list[dict[str, Any]]:
    if not out.is_file():
        return []
    return [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines() if x.strip()]


def batch_cmd(src: Path, out: Path, engine: str) -> list[str]:
    cmd = [sys.executable, "-m", "emotion_agent", "batch", str(src), "--out", str(out), "--engine", engine]
    return cmd + (["--workers", "2", "--threads-per-worker", "1"] if engine == "ray" else [])


def env_for(memory: Path) -> dict[str, str]:
    pp = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "EMOTION_AGENT_EXPLAIN": "0", "EMOTION_AGENT_MEMORY_DIR": str(memory),
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


def run_batch(src: Path, out: Path, engine: str, memory: Path, kill_after: int | None = None) -> dict[str, Any]:
    """One ``emotion-agent batch`` run, its output file polled every 0.5 s (lines written over time); with
    ``kill_after``, SIGKILL one actor process once that many lines are written. Returns its summary, wall
    time, the steady-state rate and the kill record."""
    log = out.with_suffix(".stderr.txt")
    with log.open("w") as err:
        proc = subprocess.Popen(batch_cmd(src, out, engine), env=env_for(memory), cwd=REPO_ROOT,
                                stdout=err, stderr=err, text=True)
        killed: dict[str, Any] = {"killed_pid": None}
        t0 = time.perf_counter()
        progress: list[tuple[float, int]] = []
        while proc.poll() is None:
            time.sleep(0.5)
            n = len(lines_of(out))
            if not progress or n != progress[-1][1]:
                progress.append((time.perf_counter() - t0, n))
            if kill_after is not None and killed["killed_pid"] is None and n >= kill_after:
                pids = actor_pids(proc.pid)
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed = {"killed_pid": pids[0], "lines_written_at_kill": n,
                              "at_s": round(time.perf_counter() - t0, 1)}
    summary_path = Path(f"{out}.summary.json")
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return {"returncode": proc.returncode, "stderr_tail": log.read_text()[-800:] if proc.returncode else "",
            "wall_s": round(time.perf_counter() - t0, 1), "summary": {k: v for k, v in summary.items()
                                                                     if k != "refusals"},
            "steady": steady_rate(progress), **killed}


def steady_rate(progress: list[tuple[float, int]]) -> dict[str, Any] | None:
    """Inputs per second between the moment 10 % of the lines (at least 4) were written and the last line:
    the models load lazily on the first inputs of each worker, so this window leaves loading out (the tail,
    where one worker may idle, stays in)."""
    if not progress:
        return None
    total = progress[-1][1]
    warm = next(((t, n) for t, n in progress if n >= max(4, total // 10)), None)
    if warm is None or warm[1] >= total:
        return None
    return {"from_line": warm[1], "to_line": total, "seconds": round(progress[-1][0] - warm[0], 1),
            "inputs_per_s": round((total - warm[1]) / (progress[-1][0] - warm[0]), 4)}


def compare(reference: dict[str, str], recs: list[dict[str, Any]], expected_ids: list[str]) -> dict[str, Any]:
    ids = [r["input"] for r in recs]
    got = {r["input"]: r.get("label") for r in recs}
    differ = [i for i in expected_ids if i in got and got[i] != reference.get(i)]
    return {"inputs": len(expected_ids), "lines": len(ids), "lost": len(set(expected_ids) - set(ids)),
            "duplicated": len(ids) - len(set(ids)), "same_label": len(expected_ids) - len(differ)
            - len(set(expected_ids) - set(ids)), "differing": differ[:20]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--dialogues", type=int, default=10)
    ap.add_argument("--kill-inputs", type=int, default=60, help="inputs in the kill run (the first ones)")
    ap.add_argument("--kill-after", type=int, default=10, help="lines written before one actor is killed")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "bench_ray.json")
    args = ap.parse_args()
    settings = Settings.from_env()
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    src = work / "inputs.jsonl"
    report: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, "-m",
                                                   "emotion_agent.benchmarks.bench_ray", *sys.argv[1:]]),
                              "machine": cpu_info(), "inputs": build_inputs(settings.data_dir, args.clips,
                                                                            args.dialogues, src)}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    local = run_batch(src, work / "local.jsonl", "local", work / "mem_local")
    report["local"] = local
    save()
    reference = {r["input"]: r.get("label") for r in lines_of(work / "local.jsonl")}
    all_ids = list(reference)
    on_ray = run_batch(src, work / "ray.jsonl", "ray", work / "mem_ray")
    report["ray"] = {**on_ray, "vs_local": compare(reference, lines_of(work / "ray.jsonl"), all_ids)}
    if local["steady"] and on_ray["steady"]:
        report["throughput_ratio_ray_over_local"] = round(
            on_ray["steady"]["inputs_per_s"] / local["steady"]["inputs_per_s"], 3)
    save()
    print(json.dumps({k: report[k] for k in ("inputs", "throughput_ratio_ray_over_local") if k in report}))

    kill_src = work / "kill_inputs.jsonl"
    kill_src.write_text("".join(src.read_text(encoding="utf-8").splitlines(keepends=True)[:args.kill_inputs]),
                        encoding="utf-8")
    kill_ids = [i for i in all_ids if int(i.split()[1]) <= args.kill_inputs]
    killed = run_batch(kill_src, work / "killed.jsonl", "ray", work / "mem_killed", kill_after=args.kill_after)
    report["kill_mid_run"] = {**killed, "vs_local": compare(reference, lines_of(work / "killed.jsonl"), kill_ids)}
    report["work_dir"] = str(work)
    save()
    print(json.dumps({"ray_vs_local": report["ray"]["vs_local"], "kill": report["kill_mid_run"]["vs_local"],
                      "killed_pid": killed["killed_pid"], "ratio": report.get("throughput_ratio_ray_over_local")}))


if __name__ == "__main__":
    main()
