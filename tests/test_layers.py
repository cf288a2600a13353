"""The package's layers import one way, with no cycles (the check the README's architecture promises)."""

from __future__ import annotations

from pathlib import Path

import emotion_agent
from emotion_agent.devtools.layers import check


def test_layers_import_one_way_without_cycles():
    root = Path(emotion_agent.__file__).resolve().parent
    assert check(root) == []


def test_the_check_catches_an_upward_import(tmp_path):
    pkg = tmp_path / "emotion_agent"
    for layer in ("tools", "agent"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "tools" / "low.py").write_text("def f():\n    from emotion_agent.agent import high\n")
    (pkg / "agent" / "high.py").write_text("from emotion_agent.tools import low\n")
    problems = check(pkg)
    assert any("layer: emotion_agent.tools.low" in p for p in problems)
    assert any(p.startswith("cycle:") for p in problems)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "emotion_agent"
    for layer in ("tools", "agent", "evals"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    return pkg


def test_the_check_catches_a_module_named_upward_in_a_string(tmp_path):
    """The agent naming an evals type as a string (a serializer's allow-list) is an upward dependency too, and so
    is a tool naming an agent module; a docstring or a ``python -m`` hint in a message is not."""
    pkg = _package(tmp_path, {
        "evals/memory.py": "class DistTurn: ...\n",
        "agent/runtime.py": 'ALLOWED = [("emotion_agent.evals.memory", "DistTurn")]\n',
        "tools/expert.py": 'import importlib\nm = importlib.import_module("emotion_agent.agent.runtime")\n',
        "agent/fusion.py": '"""Trained by emotion_agent.evals.memory."""\n'
                           'HINT = "retrain with python -m emotion_agent.evals.memory"\n',
    })
    problems = check(pkg)
    assert "layer: emotion_agent.agent.runtime (agent) names emotion_agent.evals.memory (evals) in a string" in problems
    assert "layer: emotion_agent.tools.expert (tools) names emotion_agent.agent.runtime (agent) in a string" in problems
    assert not any("agent.fusion" in p for p in problems)


def test_the_agent_names_no_evals_module_anywhere():
    """Not in imports, not in strings: the agent layer is free of the harness (issue 21)."""
    root = Path(emotion_agent.__file__).resolve().parent
    for path in (root / "agent").rglob("*.py"):
        assert "emotion_agent.evals" not in path.read_text(encoding="utf-8").replace("-m emotion_agent.evals", ""), path
