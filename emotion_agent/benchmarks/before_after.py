"""Behaviour before and after a change, measured side by side through the CLI in one session.

    git worktree add --detach ../before <commit>
    python -m emotion_agent.benchmarks.before_after --before ../before --after . \\
        [--work DIR] [--meld-limit 500] [--ravdess-limit 56] [--emodb-limit 28] \\
        [--faces-limit 350] [--latency-n 8] [--out results/before_after_typed.json]

Each tree is run by the same Python (this venv) with ``PYTHONPATH`` set to the tree, from the tree's root, so
each side imports its own code. Steps alternate between the trees, and the order flips from one step to the
next (before/after, then after/before, ...), so the machine's load falls on both sides alike.

Steps, each the command a user types:

- ``emotion-agent eval meld --split test --no-explain [--limit N]`` (MELD test W-F1, stratified sample, seed 13);
- ``emotion-agent eval media speech --corpus ravdess|emodb --limit N --heads H`` (leave-speakers-out fold heads,
  trained once into the work folder by ``training.train_speech_head --fold-heads``, the same files for both);
- ``emotion-agent eval media faces --limit N`` (class-balanced FER2013 crops);
- ``python -m emotion_agent.{evals|benchmarks}.bench_latency --n N --skip-llm`` (wherever the tree keeps it).

The expert cache (``<cache>/expert_cache.sqlite``) is keyed by the experts' inputs and weights, not by the code,
so one side could read the other's expert outputs. Each side therefore gets its own cache folder: links to the
shared cache's models and data files, but a fresh, empty ``expert_cache.sqlite`` and memory store of its own.

Besides the figures, every step compares the two sides item by item (same keys scored, same label).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIDES = ("before", "after")
PRIVATE = {"expert_cache.sqlite", "expert_cache.sqlite-wal", "expert_cache.sqlite-shm", "memory"}


def cpu_model() -> str:
    """The CPU model name and core count, for the JSON."""
    name = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
        simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f" {f}" in flags]
    except OSError:
        simd = []
    return f"{name}, {os.cpu_count()} cores, {'/'.join(simd) or 'no AVX2'}"


def side_cache(shared: Path, folder: Path) -> Path:
    """A cache folder whose models and data are links to ``shared``, with no expert cache or memory of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in shared.iterdir():
        link = folder / entry.name
        if entry.name in PRIVATE or link.exists() or link.is_symlink():
            continue
        link.symlink_to(entry)
    return folder


def run_step(tree: Path, args: list[str], env: dict[str, str], log: Path, timeout: float,
             stop_at: tuple[Path, int] | None = None) -> dict[str, Any]:
    """Run ``python args`` in ``tree`` (its code on PYTHONPATH) under nice; wall time, exit code, load.

    ``stop_at`` = (records.jsonl, n): stop the run once it has written ``n`` records (the first ``n`` items of its
    fixed sample; a media sample is dealt round-robin over the labels, so its first 7k items are balanced).
    """
    cmd = ["nice", "-n", "10", sys.executable, *args]
    load0 = os.getloadavg()[0]
    t0 = time.time()
    stopped = False
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=tree, env={**env, "PYTHONPATH": str(tree)}, stdout=fh,
                                stderr=subprocess.STDOUT)
        while proc.poll() is None:
            if time.time() - t0 > timeout:
                proc.kill()
            if stop_at and stop_at[0].is_file() and len(stop_at[0].read_text().splitlines()) >= stop_at[1]:
                proc.terminate()
                stopped = True
            time.sleep(1.0)
    return {"command": " ".join(["python", *args]), "rc": 0 if stopped else proc.returncode,
            "stopped_after_records": stop_at[1] if stopped else None, "wall_s": round(time.time() - t0, 1),
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2), "log": str(log)}


def raw_records(folder: Path, first: int | None = None) -> list[dict[str, Any]]:
    """The records of a run folder's records.jsonl, in order (the first ``first`` distinct keys)."""
    out: dict[str, dict[str, Any]] = {}
    path = folder / "records.jsonl"
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("key"), str):
                out[rec["key"]] = rec
    return list(out.values())[:first] if first else list(out.values())


def records(folder: Path, first: int | None = None) -> dict[str, tuple[str, float]]:
    """key → (label, confidence) of a run folder's records.jsonl (later lines win, as on resume)."""
    return {r["key"]: (r.get("label"), float(r.get("confidence") or 0.0)) for r in raw_records(folder, first)}


def compare(a: dict[str, tuple[str, float]], b: dict[str, tuple[str, float]]) -> dict[str, Any]:
    """Item-by-item comparison of two runs' labels and confidences."""
    common = sorted(set(a) & set(b))
    differ = [k for k in common if a[k][0] != b[k][0]]
    gaps = [abs(a[k][1] - b[k][1]) for k in common]
    return {"items_before": len(a), "items_after": len(b), "common": len(common), "same_label": len(common) - len(differ),
            "max_confidence_difference": round(max(gaps), 6) if gaps else None,
            "different": [{"key": k, "before": a[k][0], "after": b[k][0]} for k in differ[:50]]}


def meld_figures(folder: Path) -> dict[str, Any]:
    """The headline figures of a MELD run's summary.json."""
    s = json.loads((folder / "summary.json").read_text())
    m = s["metrics"]
    return {"n": s["n"], "weighted_f1": m.get("weighted_f1"), "weighted_f1_ci95": m.get("weighted_f1_ci95"),
            "macro_f1": m.get("macro_f1"), "accuracy": m.get("accuracy"), "ece": m.get("ece"),
            "latency_ms": s.get("latency_ms", {}).get("total") or s.get("latency_ms")}


def media_figures(folder: Path, first: int | None = None) -> dict[str, Any]:
    """Accuracy / macro-F1 per ablation row of a media run's summary.json (or accuracy over its first records)."""
    if first:
        recs = raw_records(folder, first)
        fields = {"fused (agent)": "label", "voice only": "voice", "words only (transcript)": "words"}
        walls = sorted(r["wall_s"] for r in recs)
        return {"n": len(recs), "latency_s": {"p50": walls[len(walls) // 2]} if walls else None,
                "rows": {name: {"accuracy": 100.0 * sum((r.get(f) or "neutral") == r["gold"] for r in recs)
                                / max(1, len(recs))} for name, f in fields.items()}}
    s = json.loads((folder / "summary.json").read_text())
    return {"n": s["n"], "latency_s": s.get("latency_s"),
            "rows": {name: {k: row.get(k) for k in ("accuracy", "macro_f1", "weighted_f1")}
                     for name, row in s.get("rows", {}).items()}}


def latency_figures(path: Path) -> dict[str, Any]:
    """p50/p95 and stage p50s per row of a bench_latency JSON."""
    s = json.loads(path.read_text())
    return {"peak_rss_mb": s.get("peak_rss_mb"), "rows": s["rows"]}


def latency_module(tree: Path) -> str:
    """Where the tree keeps bench_latency (moved from evals/ to benchmarks/ by issue 21)."""
    for room in ("benchmarks", "evals"):
        if (tree / "emotion_agent" / room / "bench_latency.py").is_file():
            return f"emotion_agent.{room}.bench_latency"
    raise SystemExit(f"no bench_latency in {tree}")


def _fig(side: dict[str, Any], step: str) -> str:
    """The headline figure of one side of one step, as a table cell."""
    f = side.get("figures") or {}
    if step == "meld":
        lo, hi = f.get("weighted_f1_ci95") or (None, None)
        ci = f" ({lo:.1f}–{hi:.1f})" if lo is not None else ""
        return f"W-F1 {f['weighted_f1']:.1f}{ci}, acc {f['accuracy']:.1f}, ECE {f['ece']:.1f}"
    rows = f.get("rows", {})
    return ", ".join(f"{name.split(' ')[0]} {row['accuracy']:.1f} %" for name, row in rows.items())


def table(result: dict[str, Any]) -> str:
    """The comparison as a markdown table (one row per step)."""
    lines = ["| step | n | before | after | same label (item by item) | max confidence difference | "
             "wall s before / after |", "|---|---|---|---|---|---|---|"]
    for step, e in result["steps"].items():
        if step.startswith("latency"):
            continue
        b, a = e.get("before", {}), e.get("after", {})
        items = e.get("items")
        same = f"{items['same_label']}/{items['common']}" if items else "–"
        n = (b.get("figures") or {}).get("n", "–")
        gap = items.get("max_confidence_difference") if items else None
        lines.append(f"| {step} | {n} | {_fig(b, step)} | {_fig(a, step)} | {same} | "
                     f"{'–' if gap is None else f'{gap:.3f}'} | "
                     f"{b.get('wall_s', '–')} / {a.get('wall_s', '–')} |")
    lat = result["steps"].get("latency")
    if lat:
        rows = {side: (lat.get(side, {}).get("figures") or {}).get("rows", {}) for side in SIDES}
        lines += ["", "| latency row (bench_latency) | n | before p50 / p95 ms | after p50 / p95 ms |", "|---|---|---|---|"]
        for name in dict.fromkeys([*rows["before"], *rows["after"]]):
            b, a = rows["before"].get(name, {}), rows["after"].get(name, {})
            lines.append(f"| {name} | {b.get('n', a.get('n', '–'))} | {b.get('p50_ms', '–')} / {b.get('p95_ms', '–')} | "
                         f"{a.get('p50_ms', '–')} / {a.get('p95_ms', '–')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every step on both trees, alternating, and write the comparison JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, default=Path("."))
    ap.add_argument("--work", type=Path, default=None,
                    help="Run folders and per-side caches (default: <cache>/before-after).")
    ap.add_argument("--meld-limit", type=int, default=0, help="0 = the full test split (2,610 utterances)")
    ap.add_argument("--ravdess-limit", type=int, default=56)
    ap.add_argument("--emodb-limit", type=int, default=28)
    ap.add_argument("--faces-limit", type=int, default=350)
    ap.add_argument("--latency-n", type=int, default=8)
    ap.add_argument("--speech-first", type=int, default=0, help="Score only the first N items of each speech "
                                                                  "sample (stops the run there; 0 = all)")
    ap.add_argument("--steps", default="meld,faces,ravdess,emodb,latency")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", type=Path, default=Path("results/before_after_typed.json"))
    ap.add_argument("--reuse", action="store_true", help="Keep a step's finished outputs in --work (resume; "
                                                          "or rebuild the JSON without rerunning)")
    ap.add_argument("--table", type=Path, default=None, help="Only print the markdown table of this JSON")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    if args.work is None:
        from emotion_agent.tools.settings import Settings

        args.work = Settings.from_env().cache_dir / "before-after"
    work = args.work.resolve()
    shared_cache = Path(os.environ.get("EMOTION_AGENT_CACHE_DIR", Path.home() / ".cache" / "emotion-agent"))
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    envs = {side: {**base_env, "EMOTION_AGENT_CACHE_DIR": str(side_cache(shared_cache, work / side / "cache"))}
            for side in SIDES}
    heads = work / "speech_fold_heads"
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    if {"ravdess", "emodb"} & set(steps) and not (heads / "folds.json").is_file():
        print("training the fold heads once (shared by both sides)", flush=True)
        info = run_step(trees["after"], ["-m", "emotion_agent.training.train_speech_head", "--fold-heads", str(heads)],
                        envs["after"], work / "fold_heads.log", args.timeout)
        if info["rc"] != 0:
            raise SystemExit(f"fold heads failed: see {info['log']}")

    def cli(step: str, side: str) -> tuple[list[str], Path]:
        """The command of ``step`` for ``side`` and its output folder or file."""
        out = work / side / step
        if step == "meld":
            extra = ["--limit", str(args.meld_limit)] if args.meld_limit else []
            return ["-m", "emotion_agent", "eval", "meld", "--split", "test", "--no-explain", *extra,
                    "--out", str(out)], out
        if step == "faces":
            return ["-m", "emotion_agent", "eval", "media", "faces", "--limit", str(args.faces_limit),
                    "--out", str(out)], out
        if step in ("ravdess", "emodb"):
            limit = args.ravdess_limit if step == "ravdess" else args.emodb_limit
            return ["-m", "emotion_agent", "eval", "media", "speech", "--corpus", step, "--limit", str(limit),
                    "--heads", str(heads), "--out", str(out)], out
        path = out.with_suffix(".json")
        return ["-m", latency_module(trees[side]), "--n", str(args.latency_n), "--skip-llm", "--out", str(path)], path

    result: dict[str, Any] = {
        "command": "python -m emotion_agent.benchmarks.before_after " + " ".join(argv or sys.argv[1:]),
        "cpu": cpu_model(), "machine_note": "shared machine (other jobs running): timings are upper bounds",
        "trees": {side: {"path": str(t), "commit": subprocess.run(["git", "-C", str(t), "rev-parse", "--short", "HEAD"],
                                                                  capture_output=True, text=True).stdout.strip()}
                  for side, t in trees.items()},
        "expert_cache": "one fresh expert_cache.sqlite per side (models linked from the shared cache)",
        "steps": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()).get("steps", {}) if args.reuse and args.out.is_file() else {}
    for i, step in enumerate(steps):
        order = SIDES if i % 2 == 0 else SIDES[::-1]
        entry: dict[str, Any] = {"order": list(order)}
        for side in order:
            argv_side, out = cli(step, side)
            (work / side).mkdir(parents=True, exist_ok=True)
            first = args.speech_first if step in ("ravdess", "emodb") and args.speech_first else None
            done = out.is_file() if step == "latency" else (out / "summary.json").is_file() or bool(
                first and len(raw_records(out)) >= first)
            if args.reuse and done and previous.get(step, {}).get(side):
                entry[side] = previous[step][side]
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {step} / {side}: {' '.join(argv_side)}", flush=True)
            if first and len(raw_records(out)) >= first:  # an earlier, longer run already holds the first items
                info = {"command": " ".join(["python", *argv_side]), "rc": 0, "reused_records": str(out)}
            else:
                info = run_step(trees[side], argv_side, envs[side], work / side / f"{step}.log", args.timeout,
                                (out / "records.jsonl", first) if first else None)
            if info["rc"] == 0:
                info["figures"] = (meld_figures(out) if step == "meld" else latency_figures(out)
                                   if step == "latency" else media_figures(out, first))
            entry[side] = info
            print(json.dumps(info)[:600], flush=True)
        if step != "latency":
            first = args.speech_first if step in ("ravdess", "emodb") and args.speech_first else None
            entry["items"] = compare(records(work / "before" / step, first), records(work / "after" / step, first))
        result["steps"][step] = entry
        args.out.write_text(json.dumps(result, indent=1))  # after every step, so a cut-off run keeps its figures
    print(table(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
