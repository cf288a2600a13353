"""CTranslate2's OpenMP runtime is loaded passive (no spin-waiting), torch's keeps its default; checked by libgomp."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import os, sys
import torch
print("torch loaded", flush=True)
from emotion_agent.tools.openmp import import_ctranslate2
import_ctranslate2()
print("ct2 loaded", os.environ.get("OMP_WAIT_POLICY"), flush=True)
"""


def spin_counts(env_extra: dict[str, str]) -> tuple[list[str], str]:
    """libgomp's GOMP_SPINCOUNT of each OpenMP runtime loaded, in load order (torch's, then CTranslate2's)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update({"OMP_DISPLAY_ENV": "VERBOSE", **env_extra})
    out = subprocess.run([sys.executable, "-u", "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    lines = (out.stdout + out.stderr).splitlines()
    counts = [ln.split("=")[1].strip().strip("'") for ln in lines if "GOMP_SPINCOUNT" in ln]
    return counts, next(ln for ln in lines if ln.startswith("ct2 loaded"))


@pytest.mark.slow
def test_ctranslate2_openmp_threads_do_not_spin_and_torch_keeps_its_default():
    counts, last = spin_counts({})
    assert counts == ["300000", "0"]  # torch's runtime: default spinning; CTranslate2's: passive
    assert last == "ct2 loaded None"  # the environment is restored
    off, _ = spin_counts({"EMOTION_AGENT_CT2_PASSIVE": "0"})
    assert off == ["300000", "300000"]
