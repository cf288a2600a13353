"""Batch mode with the real agent on small real inputs: a folder, a glob, a CSV and a JSONL; bad inputs are
refused one by one with their reason (exit 1), a rerun resumes, a usage mistake is exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emotion_agent.cli.batch import read_inputs

pytestmark = pytest.mark.slow


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMOTION_AGENT_EXPLAIN": "0", "EMOTION_AGENT_MEMORY_DIR": str(cwd / "memory")}
    return subprocess.run([sys.executable, "-m", "emotion_agent", "batch", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_folder_with_a_bad_file_then_resume(tmp_path: Path, data_dir: Path) -> None:
    clips = tmp_path / "clips"
    (clips / "sub").mkdir(parents=True)
    src = sorted((data_dir / "speech" / "ravdess").glob("*.flac"))[:2]
    shutil.copy(src[0], clips / src[0].name)
    shutil.copy(src[1], clips / "sub" / src[1].name)
    (clips / "notes.wav").write_text("not audio at all")  # a renamed text file
    (clips / "readme.txt").write_text("ignored: not media")
    out = tmp_path / "out.jsonl"
    first = cli(str(clips), "--out", str(out), cwd=tmp_path)
    assert first.returncode == 1, first.stderr + first.stdout
    recs = {Path(r["input"]).name: r for r in lines(out)}
    assert set(recs) == {src[0].name, src[1].name, "notes.wav"}
    assert recs["notes.wav"]["status"] == "refused" and recs["notes.wav"]["error"]
    assert all(recs[s.name]["status"] == "ok" and recs[s.name]["label"] for s in src)
    rec = recs[src[0].name]  # each expert's own reading, the transcript, shares and timings
    voice = next(m for m in rec["modalities"] if m["modality"] == "audio")
    assert voice["label"] in voice["distribution"] and abs(sum(voice["distribution"].values()) - 1) < 0.01
    assert "door" in rec["transcript"]["text"].lower() and rec["transcript"]["reliable"] is True and any(m["modality"] == "transcript" for m in rec["modalities"])
    assert abs(sum(rec["contributions"].values()) - 1) < 0.01 and rec["timings_ms"]
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    assert summary["analysed"] == 2 and summary["refused"] == 1 and summary["kind"] == "folder"
    again = cli(str(clips), "--out", str(out), cwd=tmp_path)  # resume: nothing new, same verdict
    assert again.returncode == 1 and len(lines(out)) == 3 and "3 already done" in again.stdout.replace("\n", " ")


def test_csv_and_jsonl_with_broken_rows(tmp_path: Path) -> None:
    (tmp_path / "turns.csv").write_text("conversation_id,speaker,text\nc1,ann,I am so happy for you!\n"
                                        "c1,bob,\nc2,ann,This is the third time my order is late! I am furious.\n")
    out = tmp_path / "csv.jsonl"
    r = cli("turns.csv", "--out", str(out), cwd=tmp_path)
    recs = lines(out)
    assert r.returncode == 1 and [x["status"] for x in recs] == ["ok", "refused", "ok"]
    assert recs[0]["label"] == "joy" and recs[2]["label"] == "anger"
    (tmp_path / "turns.jsonl").write_text('{"text": "Oh wow, really?"}\n{not json\n[1, 2]\n')
    r = cli("turns.jsonl", "--out", str(tmp_path / "j.jsonl"), cwd=tmp_path)
    recs = lines(tmp_path / "j.jsonl")
    assert r.returncode == 1 and [x["status"] for x in recs] == ["ok", "refused", "refused"]
    assert "not JSON" in recs[1]["error"] and "JSON object" in recs[2]["error"]


def test_usage_mistakes_exit_2(tmp_path: Path) -> None:
    assert cli("nope/*.wav", "--out", "o.jsonl", cwd=tmp_path).returncode == 2
    assert cli("missing.jsonl", "--out", "o.jsonl", cwd=tmp_path).returncode == 2
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert cli("bad.csv", "--out", "o.jsonl", cwd=tmp_path).returncode == 2


def test_glob_reads_only_media(tmp_path: Path, data_dir: Path) -> None:
    pattern = str(data_dir / "speech" / "ravdess" / "03-01-05-*-01-01-0[12].flac")
    kind, items = read_inputs(pattern)
    assert kind == "glob" and len(items) >= 2 and all("audio" in it for _, it in items)
