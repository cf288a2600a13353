"""``emotion-agent ask``: scope options and clear one-line errors (missing model, bad scope, missing run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args, env=None):
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "emotion_agent", "ask", *args], capture_output=True, text=True,
                          env=e, timeout=120, cwd=ROOT)


def test_ask_needs_exactly_one_scope(tmp_path):
    r = _cli("How many?")
    assert r.returncode == 2 and "exactly one of --conversation ID or --run DIR" in r.stderr
    r = _cli("How many?", "--conversation", "c1", "--run", str(tmp_path))
    assert r.returncode == 2 and "exactly one" in r.stderr
    r = _cli("How many?", "--run", str(tmp_path))
    assert r.returncode == 2 and "has no records.jsonl" in r.stderr and "Traceback" not in r.stderr


def test_ask_says_when_the_model_is_missing(tmp_path):
    (tmp_path / "records.jsonl").write_text(json.dumps({"key": "k", "gold": "joy", "label": "joy"}) + "\n")
    r = _cli("How many?", "--run", str(tmp_path), "--llm", str(tmp_path / "nope.gguf"))
    assert r.returncode == 2 and "is not available" in r.stderr and "models fetch" in r.stderr
    assert "Traceback" not in r.stderr
