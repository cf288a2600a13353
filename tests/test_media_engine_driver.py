"""``eval media faces`` with an engine (``--engine ray``): the driver builds no agent of its own (it used to
load a whole one just to learn the face model's id); the workers' solvers give the same records as locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emotion_agent.agent import runtime
from emotion_agent.evals import run_media
from emotion_agent.tools.settings import Settings


def labels(folder: Path) -> dict[str, str]:
    return {r["key"]: r["label"] for r in map(json.loads, (folder / "records.jsonl").read_text().splitlines())}


@pytest.mark.slow
def test_faces_driver_builds_no_agent_before_the_engine(tmp_path: Path, data_dir: Path, settings: Settings,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    real_init = runtime.EmotionAgent.__init__

    def counting_init(self: Any, *a: Any, **kw: Any) -> None:
        built.append("agent")
        real_init(self, *a, **kw)

    monkeypatch.setattr(runtime.EmotionAgent, "__init__", counting_init)
    seen: dict[str, Any] = {}

    def engine(units: list, *, build: Any, write: Any, key: str, written: set, bar: Any) -> None:
        """Stands in for the Ray pool: notes what the driver had built, then solves like one actor would."""
        seen["agents_before"] = len(built)
        seen["units"] = [[it[key] for it in unit] for unit in units]
        solve = build()  # in a real run this happens in each actor's process
        for unit in units:
            for item in unit:
                write(solve(item))
                bar.update(1)

    on_engine = run_media.run("faces", out=tmp_path / "engine", settings=settings, limit=3, engine=engine)
    assert seen["agents_before"] == 0, "the driver built an agent before handing the work to the engine"
    assert len(seen["units"]) == 3 and all(len(u) == 1 for u in seen["units"])
    local = run_media.run("faces", out=tmp_path / "local", settings=settings, limit=3)
    assert on_engine["n"] == local["n"] == 3
    assert labels(tmp_path / "engine") == labels(tmp_path / "local")
    # the resume rule still sees the face model's id: a rerun redoes nothing
    seen.clear()
    again = run_media.run("faces", out=tmp_path / "engine", settings=settings, limit=3, engine=engine)
    assert again["n"] == 3 and "units" not in seen
    assert len((tmp_path / "engine" / "records.jsonl").read_text().splitlines()) == 3
