"""``--engine local`` against ``--engine ray`` in one run, through the CLI a user runs.

Phases (each writes ``results/bench_ray.json`` again, so a cut run keeps what it measured):

1. **rounds** (``emotion-agent batch``): ``--rounds`` short rounds, each on its own inputs — ``--round-clips``
   RAVDESS clips and whole MELD dev dialogues of at least ``--round-turns`` text turns (with their conversation
   ids, so a dialogue is one unit on Ray) — run by ``--engine local`` and ``--engine ray --workers 2
   --threads-per-worker 1``, the order swapped every round, so the load of a shared machine weighs on both
   alike. Per round: label identity input by input, and the rate = inputs per second from the moment 10 % (at
   least 4) of the lines are written to the last one (models load lazily on each worker's first inputs; this
   leaves loading and Ray's start out); the ratio Ray / local per round and the median. Rounds use distinct
   inputs, so the label check covers rounds × (clips + turns) inputs.
2. **kill** (``emotion-agent eval meld``): ``--kill-utterances`` MELD dev utterances, once locally and once
   with ``--engine ray`` during which one actor is SIGKILLed once ``--kill-after`` records are written:
   records lost, duplicated, labels against the local run (each run with a private, empty expert cache); then
   the same Ray run stopped as a whole (Ctrl-C) after ``--kill-after`` records and run again: it resumes, and
   ends with every record once and the local labels.

The CPU model, flags, core count and load average go in the JSON: on a shared machine timings are upper bounds.

    python -m emotion_agent.benchmarks.bench_ray --phases kill,rounds --rounds 3 --round-clips 40 --round-turns 28
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


def round_inputs(data_dir: Path, n_rounds: int, n_clips: int, n_turns: int) -> list[list[dict[str, str]]]:
    """Distinct inputs per round: ``n_clips`` RAVDESS clips (a label-balanced sample, cut in rounds) and the next
    whole MELD dev dialogues until at least ``n_turns`` turns; each dialogue placed whole after an even share of
    the clips, so any prefix mixes both kinds."""
    clips = [{"audio": it["path"]} for it in balanced(speech_items(data_dir, "ravdess"), n_rounds * n_clips)]
    dialogues: dict[str, list[dict[str, str]]] = {}
    with (data_dir / "meld" / "dev_sent_emo.csv").open(encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            dialogues.setdefault(r["Dialogue_ID"], []).append(
                {"text": r["Utterance"], "conversation_id": f"meld-dev-{r['Dialogue_ID']}", "speaker": r["Speaker"]})
    queue = list(dialogues.values())
    rounds = []
    for k in range(n_rounds):
        mine: list[list[dict[str, str]]] = []
        while queue and sum(map(len, mine)) < n_turns:
            mine.append(queue.pop(0))
        rows = clips[k * n_clips:(k + 1) * n_clips]
        share = max(1, len(rows) // max(len(mine), 1))
        mixed: list[dict[str, str]] = []
        for j, dialogue in enumerate(mine):
            mixed += rows[j * share:(j + 1) * share] + dialogue
        rounds.append(mixed + rows[len(mine) * share:])
    return rounds


def lines_of(path: Path) -> list[dict[str, Any]]:
    out = []
    for x in (path.read_text(encoding="utf-8").splitlines() if path.is_file() else []):
        try:
            out.append(json.loads(x))
        except ValueError:  # a line being written
            continue
    return out


def records(folder: Path) -> list[dict[str, Any]]:
    return lines_of(folder / "records.jsonl")


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


def share_priority(pids: list[int]) -> None:
    """Give ``pids`` this process's autogroup priority (``echo 5 > /proc/<pid>/autogroup`` on a shared machine):
    a run started in a session of its own would otherwise get a fresh autogroup at the default priority."""
    try:
        mine = Path("/proc/self/autogroup").read_text().split("nice")[1].strip()
    except (OSError, IndexError):
        return
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/autogroup").read_text().split("nice")[1].strip() != mine:
                Path(f"/proc/{pid}/autogroup").write_text(mine)
        except (OSError, IndexError):
            continue


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


def run_cli(args: list[str], out: Path, cache: Path, kill_after: int | None = None,
            interrupt_after: int | None = None) -> dict[str, Any]:
    """One ``emotion-agent ...`` run into ``out``, its lines polled every 0.5 s (lines over time); with
    ``kill_after``, SIGKILL one actor process once that many lines are written; with ``interrupt_after``, stop
    the whole run (SIGINT, as Ctrl-C; SIGKILL to its process group if it is still there after 60 s)."""
    cmd = [sys.executable, "-m", "emotion_agent", *args, "--out", str(out)]
    log = out.with_name(out.name + ".log")

    def count() -> int:
        return len(lines_of(out) if out.suffix == ".jsonl" else records(out))

    killed: dict[str, Any] = {"killed_pid": None}
    t0 = time.perf_counter()
    progress: list[tuple[float, int]] = []
    with log.open("w") as err:
        # SIGINT back to its default: a bench started in the background (``cmd &``) passes SIGINT on ignored,
        # and Python then installs no KeyboardInterrupt handler, so the Ctrl-C of the resume check would be lost
        proc = subprocess.Popen(cmd, env=env_for(cache), cwd=cache, stdout=err, stderr=err, text=True,
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        polls = 0
        while proc.poll() is None:
            time.sleep(0.5)
            if polls % 10 == 0:  # every 5 s: the run's new processes (Ray's, in sessions of their own) too
                share_priority([proc.pid, *descendants(proc.pid)])
            polls += 1
            n = count()
            if not progress or n != progress[-1][1]:
                progress.append((time.perf_counter() - t0, n))
            if kill_after is not None and killed["killed_pid"] is None and n >= kill_after:
                pids = actor_pids(proc.pid)
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed = {"killed_pid": pids[0], "records_at_kill": n, "at_s": round(time.perf_counter() - t0, 1)}
            if interrupt_after is not None and n >= interrupt_after and "interrupted_at" not in killed:
                killed["interrupted_at"] = n
                stop(proc)
    n = count()
    if not progress or n != progress[-1][1]:
        progress.append((time.perf_counter() - t0, n))
    return {"command": "emotion-agent " + " ".join(args), "returncode": proc.returncode,
            "log_tail": log.read_text()[-800:] if proc.returncode else "", "wall_s": round(time.perf_counter() - t0, 1),
            "steady": steady_rate(progress), **killed}


def stop(proc: subprocess.Popen) -> None:
    """Interrupt a whole run as a user would (SIGINT); SIGKILL its process group if it lingers."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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


def compare(reference: dict[str, str], recs: list[dict[str, Any]], expected: list[str], key: str = "key") -> dict[str, Any]:
    keys = [r[key] for r in recs]
    got = {r[key]: r.get("label") for r in recs}
    differ = [k for k in expected if k in got and got[k] != reference.get(k)]
    lost = set(expected) - set(keys)
    return {"inputs": len(expected), "records": len(keys), "lost": len(lost), "duplicated": len(keys) - len(set(keys)),
            "same_label": len(expected) - len(differ) - len(lost), "differing": differ[:20]}


def rounds_phase(args: argparse.Namespace, work: Path, report: dict[str, Any], save: Callable[[], None]) -> None:
    """Throughput and labels: ``emotion-agent batch`` per round with both engines, alternating the order."""
    rounds: list[dict[str, Any]] = []
    inputs = round_inputs(Settings.from_env().data_dir, args.rounds, args.round_clips, args.round_turns)
    for k, rows in enumerate(inputs, start=1):
        src = work / f"round{k}.jsonl"
        src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        row: dict[str, Any] = {"round": k, "clips": sum("audio" in r for r in rows),
                               "meld_turns": sum("text" in r for r in rows),
                               "meld_dialogues": len({r.get("conversation_id") for r in rows} - {None}),
                               "order": "local,ray" if k % 2 else "ray,local"}
        for engine in row["order"].split(","):
            out = work / f"round{k}_{engine}.jsonl"
            before = [round(x, 2) for x in os.getloadavg()]
            run = run_cli(["batch", str(src), "--engine", engine, *(RAY[2:] if engine == "ray" else [])], out,
                          private_cache(work, f"round{k}_{engine}"))
            row[engine] = {"inputs_per_s": (run["steady"] or {}).get("records_per_s"), "wall_s": run["wall_s"],
                           "returncode": run["returncode"], "steady": run["steady"], "log_tail": run["log_tail"],
                           "load_avg_before": before, "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
        ref = {r["input"]: r.get("label") for r in lines_of(work / f"round{k}_local.jsonl")}
        row["ray_vs_local"] = compare(ref, lines_of(work / f"round{k}_ray.jsonl"), list(ref), key="input")
        if row["local"]["inputs_per_s"] and row["ray"]["inputs_per_s"]:
            row["ratio_ray_over_local"] = round(row["ray"]["inputs_per_s"] / row["local"]["inputs_per_s"], 3)
        rounds.append(row)
        ratios = [r["ratio_ray_over_local"] for r in rounds if "ratio_ray_over_local" in r]
        report["rounds"] = {"rounds": rounds, "ratios": ratios,
                            "median_ratio_ray_over_local": round(statistics.median(ratios), 3) if ratios else None,
                            "ratio_spread": [min(ratios), max(ratios)] if ratios else None,
                            "labels": {f: sum(r["ray_vs_local"][f] for r in rounds)
                                       for f in ("inputs", "same_label", "lost", "duplicated")}}
        save()
        print(json.dumps({k: row.get(k) for k in ("round", "order", "ratio_ray_over_local", "ray_vs_local")}),
              flush=True)


def kill_phase(args: argparse.Namespace, work: Path, report: dict[str, Any], save: Callable[[], None]) -> None:
    """Faults on the eval path: one actor SIGKILLed mid-run; a whole run interrupted, then resumed."""
    cmd = ["eval", "meld", "--split", "dev", "--limit", str(args.kill_utterances)]
    run_cli(cmd, work / "kill_ref", private_cache(work, "kill_ref"))
    ref = {r["key"]: r["label"] for r in records(work / "kill_ref")}
    killed = run_cli(cmd + RAY, work / "killed", private_cache(work, "killed"), kill_after=args.kill_after)
    report["kill_mid_run"] = {**killed, "vs_local": compare(ref, records(work / "killed"), list(ref))}
    save()
    print(json.dumps({"kill": report["kill_mid_run"]["vs_local"], "pid": killed["killed_pid"]}), flush=True)
    # a whole run interrupted (Ctrl-C) after --kill-after records, then the same command again
    cut_cache = private_cache(work, "interrupted")
    cut = run_cli(cmd + RAY, work / "interrupted", cut_cache, interrupt_after=args.kill_after)
    at_cut = len(records(work / "interrupted"))
    resumed = run_cli(cmd + RAY, work / "interrupted", cut_cache)
    report["interrupted_then_resumed"] = {
        "interrupted_after_records": cut.get("interrupted_at"), "records_at_stop": at_cut,
        "first_returncode": cut["returncode"], "cut_short": at_cut < len(ref), "resume": {k: resumed[k] for k in ("command", "returncode", "wall_s")},
        "vs_local": compare(ref, records(work / "interrupted"), list(ref))}
    save()
    print(json.dumps({"resume": report["interrupted_then_resumed"]}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-clips", type=int, default=40)
    ap.add_argument("--round-turns", type=int, default=28, help="MELD dev text turns per round (whole dialogues)")
    ap.add_argument("--kill-utterances", type=int, default=30)
    ap.add_argument("--kill-after", type=int, default=8, help="records written before one actor is killed")
    ap.add_argument("--phases", default="kill,rounds", help="in this order, comma-separated")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "bench_ray.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    report: dict[str, Any] = {"command": " ".join(["python -m emotion_agent.benchmarks.bench_ray", *sys.argv[1:]]),
                              "machine": cpu_info(), "work_dir": str(work)}

    def save() -> None:
        labels = [report[k]["vs_local"] for k in ("kill_mid_run",) if k in report]
        labels += [report["rounds"]["labels"]] if "rounds" in report else []
        report["labels_all_phases"] = {f: sum(x[f] for x in labels) for f in ("inputs", "same_label", "lost",
                                                                               "duplicated")}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    for phase in args.phases.split(","):
        {"rounds": rounds_phase, "kill": kill_phase}[phase](args, work, report, save)
    report["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save()


if __name__ == "__main__":
    main()
