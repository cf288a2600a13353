"""``batch --engine ray`` on a local Ray (2 CPUs, loopback, no dashboard, no usage stats) with the real agent on
a few real inputs: the same labels as the local engine, one actor killed mid-run loses and duplicates nothing,
and a cut run resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import emotion_agent
from emotion_agent.cli.ray_engine import dialogue_units

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
# The CLI subprocesses and the Ray workers import this checkout's package, installed or not.
SRC_ROOT = str(Path(emotion_agent.__file__).resolve().parents[1])


def with_src_path(env: dict[str, str]) -> dict[str, str]:
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (SRC_ROOT, env.get("PYTHONPATH")) if p)}


def test_a_dialogue_is_never_split() -> None:
    todo = [("a", {"text": "x", "conversation_id": "d1"}), ("b", {"text": "y"}),
            ("c", {"text": "z", "conversation_id": "d1"}), ("d", "bad line")]
    assert [[i for i, _ in u] for u in dialogue_units(todo)] == [["a", "c"], ["b"], ["d"]]


def inputs_file(tmp_path: Path, data_dir: Path) -> Path:
    clip = sorted((data_dir / "speech" / "ravdess").glob("*.flac"))[0]
    rows = [{"text": "I can't believe you did that, I'm furious!"},
            {"text": "Oh wow, we won the tickets!", "conversation_id": "d1", "speaker": "Ann"},
            {"text": "Really? That is the best news all week.", "conversation_id": "d1", "speaker": "Bob"},
            {"text": "My dog died this morning."},
            {"audio": str(clip)}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = with_src_path({**os.environ, "EMOTION_AGENT_EXPLAIN": "0", "EMOTION_AGENT_MEMORY_DIR": str(cwd / "memory"),
                         "RAY_USAGE_STATS_ENABLED": "0"})
    return subprocess.run([sys.executable, "-m", "emotion_agent", "batch", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=900)


def labels(path: Path) -> dict[str, str]:
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    ids = [r["input"] for r in recs]
    assert len(ids) == len(set(ids)), f"duplicate lines in {path}"
    return {r["input"]: r.get("label") for r in recs}


def test_same_labels_as_local_then_kill_then_resume(tmp_path: Path, data_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    src = inputs_file(tmp_path, data_dir)
    local = cli(str(src), "--out", str(tmp_path / "local.jsonl"), cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-2000:]
    on_ray = cli(str(src), "--out", str(tmp_path / "ray.jsonl"), "--engine", "ray", "--workers", "2",
                 cwd=tmp_path)
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    expected = labels(tmp_path / "local.jsonl")
    assert len(expected) == 5
    assert labels(tmp_path / "ray.jsonl") == expected
    assert Path(f"{tmp_path / 'ray.jsonl'}.summary.json").is_file()

    # Kill one actor as soon as the pool is live: its unit is retried on the replacement; none lost or doubled.
    from emotion_agent.cli.batch import analyse_input, done_ids, read_inputs, write_record
    from emotion_agent.cli.ray_engine import connect
    from emotion_agent.cli.ray_engine import run_on_ray as ray_run

    def run_on_ray(todo, out, **kw):  # the engine as batch calls it
        return ray_run(todo, out, llm=None, explain=False, address=None, workers=2, threads_per_worker=1,
                       analyse=analyse_input, write=write_record, written=done_ids(out), **kw)

    monkeypatch.setenv("EMOTION_AGENT_EXPLAIN", "0")
    monkeypatch.setenv("EMOTION_AGENT_MEMORY_DIR", str(tmp_path / "memory"))
    monkeypatch.setenv("PYTHONPATH", with_src_path(dict(os.environ))["PYTHONPATH"])  # the actors inherit it
    connect(None, num_cpus=2)
    try:
        _, items = read_inputs(str(src))
        killed = tmp_path / "killed.jsonl"
        run_on_ray(items, killed, on_started=lambda actors: ray.kill(actors[0]))
        assert labels(killed) == expected

        # Resume: a run cut after two lines answers only the rest.
        cut = tmp_path / "cut.jsonl"
        cut.write_text("".join(killed.read_text().splitlines(keepends=True)[:2]))
        done = done_ids(cut)
        run_on_ray([(i, it) for i, it in items if i not in done], cut)
        assert labels(cut) == expected
    finally:
        ray.shutdown()
