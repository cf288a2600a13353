"""``eval meld|media --engine ray`` on a local Ray (2 CPUs, loopback, no dashboard, no usage stats) with the real
agent on a few real MELD dev dialogues and face crops: the same labels as the local engine through the CLI, no
dialogue split across actors, and a cut run resumed on Ray while one actor is killed loses and duplicates
nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

import emotion_agent
from emotion_agent.evals.meld import Utterance
from emotion_agent.evals.meld_solver import dialogue_units
from emotion_agent.evals.records import read_records

ray = pytest.importorskip("ray")
SRC_ROOT = str(Path(emotion_agent.__file__).resolve().parents[1])
MELD = ("meld", "--split", "dev", "--limit", "10")


def utt(dia: int, pos: int) -> Utterance:
    return Utterance(split="dev", dialogue_id=dia, utterance_id=pos, speaker="A", text="hi", emotion="neutral",
                     sentiment="neutral", start_s=None, end_s=None, position=pos)


def test_meld_units_are_whole_dialogues_in_order() -> None:
    todo = [utt(1, 0), utt(2, 0), utt(1, 2), utt(1, 1)]
    assert [[(u.dialogue_id, u.position) for u in unit] for unit in dialogue_units(todo)] == \
        [[(1, 0), (1, 1), (1, 2)], [(2, 0)]]


def private_cache(tmp_path: Path, name: str) -> Path:
    """A cache folder with the real models but an empty expert cache, so each engine computes every expert."""
    from emotion_agent.tools.settings import Settings

    cache = tmp_path / name
    cache.mkdir()
    (cache / "models").symlink_to(Settings.from_env().models_dir)
    return cache


def env_for(cache: Path) -> dict[str, str]:
    return {**os.environ, "EMOTION_AGENT_CACHE_DIR": str(cache), "EMOTION_AGENT_MEMORY_DIR": str(cache / "memory"),
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": os.pathsep.join(p for p in (SRC_ROOT, os.environ.get("PYTHONPATH")) if p)}


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emotion_agent", "eval", *args], capture_output=True, text=True,
                          env=env_for(cache), cwd=cache, timeout=1200)


def labels(folder: Path) -> dict[str, str]:
    lines = [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines() if x.strip()]
    keys = [r["key"] for r in lines]
    assert len(keys) == len(set(keys)), f"duplicate records in {folder}"
    return {r["key"]: r["label"] for r in lines}


@pytest.mark.slow
def test_eval_on_ray_same_labels_as_local_then_resume_with_a_killed_actor(tmp_path: Path, data_dir: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    local_cache, ray_cache = private_cache(tmp_path, "local"), private_cache(tmp_path, "ray")
    local = cli(*MELD, "--out", str(tmp_path / "meld_local"), cache=local_cache)
    assert local.returncode == 0, local.stderr[-2000:]
    on_ray = cli(*MELD, "--out", str(tmp_path / "meld_ray"), "--engine", "ray", "--workers", "2", cache=ray_cache)
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    expected = labels(tmp_path / "meld_local")
    assert len(expected) == 10
    assert labels(tmp_path / "meld_ray") == expected
    summary = json.loads((tmp_path / "meld_ray" / "summary.json").read_text())
    assert summary["complete"] and summary["n"] == 10
    assert json.loads((tmp_path / "meld_ray" / "sessions.jsonl").read_text().splitlines()[-1])["engine"] == "ray"

    # Resume on Ray a run cut after 3 records, killing one actor as soon as the pool is live: its dialogue goes
    # to the replacement; the run ends with every record once and the local labels.
    from emotion_agent.cli.ray_engine import connect, run_units
    from emotion_agent.evals import run_media, run_meld
    from emotion_agent.tools.settings import Settings

    for k, v in env_for(ray_cache).items():
        monkeypatch.setenv(k, v)  # the actors inherit this environment
    cut = tmp_path / "meld_cut"
    shutil.copytree(tmp_path / "meld_ray", cut)
    (cut / "records.jsonl").write_text("".join((cut / "records.jsonl").read_text().splitlines(keepends=True)[:3]))
    (cut / "summary.json").unlink()
    killed: list[int] = []

    def kill_first(actors: list) -> None:
        ray.kill(actors[0])
        killed.append(1)

    engine = partial(run_units, address=None, workers=2, threads_per_worker=1, on_started=kill_first)
    connect(None, num_cpus=2)
    try:
        settings = Settings.from_env()
        resumed = run_meld.run("dev", limit=10, out=cut, context="online", settings=settings, engine=engine, progress=False)
        assert killed and resumed["complete"]
        assert labels(cut) == expected
        assert len(read_records(cut / "records.jsonl")) == 10

        # eval media on the same pool: four face crops, the same labels as the local solver.
        faces_ray = run_media.run("faces", out=tmp_path / "faces_ray", settings=settings, limit=4,
                                  engine=partial(run_units, address=None, workers=2, threads_per_worker=1))
    finally:
        ray.shutdown()
    faces_local = run_media.run("faces", out=tmp_path / "faces_local", settings=settings, limit=4)
    assert faces_ray["n"] == faces_local["n"] == 4
    assert labels(tmp_path / "faces_ray") == labels(tmp_path / "faces_local")
