"""Install the wheel the way a user would — outside the checkout — and use the CLI and the Python API.

Builds the wheel, installs it (no dependencies: they come from the current environment through a
``.pth`` file) into a fresh virtualenv in a temporary folder, changes to another directory and runs
``emotion-agent --help``, ``python -m emotion_agent --help``, ``analyze --text … --json`` with an
explanation, and the documented Python API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.llm]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    import shutil

    tmp = tmp_path_factory.mktemp("install")
    wheels = tmp / "wheels"
    # Build from a clean copy of the source (a stale build/ folder in the checkout would leak old files).
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "runs", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(src)], check=True, timeout=600, cwd=tmp)
    wheel = next(wheels.glob("emotion_agent-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=600)
    work = tmp / "elsewhere"
    work.mkdir()
    return {"wheel": wheel, "venv": venv, "work": work, "site": site}


def test_wheel_holds_one_top_level_package_with_prompts_and_weights(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"emotion_agent"}
    prompts = {Path(n).name for n in names if n.startswith("emotion_agent/prompts/")}
    assert prompts == {p.name for p in (REPO / "emotion_agent" / "prompts").glob("*.md")}
    weights = {Path(n).name for n in names if n.startswith("emotion_agent/tools/weights/")}
    shipped = {p.name for p in (REPO / "emotion_agent" / "tools" / "weights").iterdir() if p.is_file()}
    assert shipped <= weights
    pages = {n.split("emotion_agent/web/", 1)[1] for n in names if n.startswith("emotion_agent/web/")
             and ("/templates/" in n or "/static/" in n)}
    own = {str(p.relative_to(REPO / "emotion_agent" / "web")) for sub in ("templates", "static")
           for p in (REPO / "emotion_agent" / "web" / sub).iterdir() if p.is_file()}
    assert own and own <= pages  # the analyst pages' templates, stylesheet and htmx ship in the wheel
    # run artifacts stay in the checkout's results/: no measured figures, logs or plots ship
    artifacts = [n for n in names if "/results/" in n or n.endswith((".jsonl", ".png"))
                 or (n.endswith(".json") and not n.startswith("emotion_agent/tools/weights/"))]
    assert artifacts == [] and (REPO / "results" / "bench_latency.json").is_file()


def _env(installed) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["EMOTION_AGENT_MEMORY_DIR"] = str(installed["work"] / "memory")
    return env


def test_installed_cli_and_module_run_from_another_directory(installed):
    bin_ = installed["venv"] / "bin"
    for cmd in ([str(bin_ / "emotion-agent"), "--help"], [str(bin_ / "python"), "-m", "emotion_agent", "--help"]):
        r = subprocess.run(cmd, cwd=installed["work"], env=_env(installed), capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        assert "analyze" in r.stdout and "eval" in r.stdout and "serve" in r.stdout
    r = subprocess.run([str(bin_ / "emotion-agent"), "analyze", "--text", "I can't believe you lied to me again!",
                        "--json"], cwd=installed["work"], env=_env(installed), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["label"] in ("anger", "surprise", "sadness", "disgust") and out["explanation"]
    assert out["explanation_source"] in ("llm", "template")


def test_installed_python_api(installed):
    code = ("import emotion_agent, json; from emotion_agent import EmotionAgent, make_turn, FusedResult;"
            "a = EmotionAgent(memory=False); r = a.analyze(make_turn(text='We won! This is amazing!'), explain=False);"
            "assert isinstance(r, FusedResult); print(json.dumps({'file': emotion_agent.__file__, 'label': r.label}))")
    r = subprocess.run([str(installed["venv"] / "bin" / "python"), "-c", code], cwd=installed["work"],
                       env=_env(installed), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(installed["site"])), out  # the installed copy, not the checkout
    assert out["label"] == "joy"
