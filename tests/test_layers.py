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
