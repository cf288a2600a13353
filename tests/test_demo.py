"""``emotion-agent demo`` without the data folder: one clear line, the embedded dialogue, clips skipped, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_without_the_data_folder_degrades_clearly(tmp_path) -> None:
    env = {**os.environ, "EMOTION_AGENT_DATA_DIR": str(tmp_path / "missing"), "COLUMNS": "200",
           "EMOTION_AGENT_MEMORY_DIR": str(tmp_path / "memory")}
    proc = subprocess.run([sys.executable, "-m", "emotion_agent", "demo", "--no-explain"], capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "not found" in proc.stdout and "embedded example" in proc.stdout
    assert proc.stdout.count("skipped:") == 3   # audio clip, video clip, and the why about the audio clip
    assert "Memory now holds 3 turns" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
