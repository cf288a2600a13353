"""``eval meld --workers N``: parallel utterances give the same records, resume after a crash, bad counts refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emotion_agent.evals.records import read_records
from emotion_agent.evals.run_meld import RunConfigError, run

#: every test here runs the real eval (real models on real MELD utterances): not in make test-fast
pytestmark = pytest.mark.slow

LIMIT = 12


@pytest.fixture
def harness(settings, data_dir, tmp_path):
    """Settings on the real data + a private expert cache."""
    return settings.replace(data_dir=data_dir), tmp_path / "expert_cache.sqlite"


def keys(path: Path) -> list[str]:
    return [json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()]


def test_three_workers_give_the_same_labels_as_one(harness, tmp_path):
    settings, _ = harness
    # separate caches: the three workers really compute the experts concurrently
    one = run("dev", limit=LIMIT, out=tmp_path / "w1", settings=settings, cache_path=tmp_path / "c1.sqlite",
              progress=False)
    three = run("dev", limit=LIMIT, out=tmp_path / "w3", settings=settings, cache_path=tmp_path / "c3.sqlite",
                progress=False, workers=3)
    k1, k3 = keys(tmp_path / "w1" / "records.jsonl"), keys(tmp_path / "w3" / "records.jsonl")
    assert len(k3) == len(set(k3)) == LIMIT and set(k1) == set(k3)

    def by_key(folder: str) -> dict:
        return {r["key"]: (r["label"], r["confidence"], r["context"])
                for r in read_records(tmp_path / folder / "records.jsonl")}

    assert by_key("w3") == by_key("w1")
    assert three["expert_cache"].get("hit", 0) < LIMIT  # computed, not read back
    assert one["complete"] is True and three["complete"] is True
    assert one["metrics"]["weighted_f1"] == three["metrics"]["weighted_f1"]
    sessions = [json.loads(x) for x in (tmp_path / "w3" / "sessions.jsonl").read_text().splitlines()]
    assert [s["workers"] for s in sessions] == [3]


def test_crash_and_resume_with_three_workers(harness, tmp_path):
    settings, cache = harness
    out = tmp_path / "run"
    part = run("dev", limit=LIMIT, out=out, settings=settings, cache_path=cache, progress=False, workers=3,
               stop_after=5)
    assert part == {"partial": True, "written": 5} and len(keys(out / "records.jsonl")) == 5
    summary = run("dev", limit=LIMIT, out=out, settings=settings, cache_path=cache, progress=False, workers=3)
    ks = keys(out / "records.jsonl")
    assert len(ks) == len(set(ks)) == LIMIT
    assert summary["n"] == LIMIT and summary["complete"] is True
    sessions = [json.loads(x) for x in (out / "sessions.jsonl").read_text().splitlines()]
    assert [(s["workers"], s["written"]) for s in sessions] == [(3, 5), (3, LIMIT - 5)]


def test_a_failing_worker_keeps_the_written_records_and_reraises(harness, tmp_path, monkeypatch):
    import emotion_agent.evals.run_meld as rm

    settings, cache = harness
    out = tmp_path / "run"
    real = rm.make_record
    calls = []

    def flaky(u, *a, **kw):
        calls.append(u.key)
        if len(calls) == 4:
            raise RuntimeError("expert crashed")
        return real(u, *a, **kw)

    monkeypatch.setattr(rm, "make_record", flaky)
    with pytest.raises(RuntimeError, match="expert crashed"):
        run("dev", limit=LIMIT, out=out, settings=settings, cache_path=cache, progress=False, workers=2)
    ks = keys(out / "records.jsonl")
    assert 3 <= len(ks) < LIMIT and len(set(ks)) == len(ks)
    assert calls[3] not in ks  # the failed one is not written; the others stop being submitted
    monkeypatch.setattr(rm, "make_record", real)
    s = run("dev", limit=LIMIT, out=out, settings=settings, cache_path=cache, progress=False, workers=2)
    assert s["complete"] is True and len(keys(out / "records.jsonl")) == LIMIT


def test_worker_count_is_validated(harness, tmp_path):
    settings, cache = harness
    for bad in (0, -2, 33):
        with pytest.raises(RunConfigError, match="workers"):
            run("dev", limit=2, out=tmp_path / "bad", settings=settings, cache_path=cache, progress=False,
                workers=bad)
    assert not (tmp_path / "bad").exists()  # refused before the run folder is made


@pytest.mark.slow
def test_cli_workers_zero_is_a_one_line_user_error(tmp_path):
    exe = Path(sys.executable).parent / "emotion-agent"
    proc = subprocess.run([str(exe), "eval", "meld", "--limit", "2", "--workers", "0", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert err.startswith("error:") and "--workers" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
