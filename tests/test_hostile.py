"""A quarter of the hostile corpus through the agent path: no crash, no hang, no silent accept (real models)."""

from __future__ import annotations

import pytest

from emotion_agent.benchmarks.hostile import build, judge, run_agent

pytestmark = pytest.mark.slow


def test_hostile_corpus_sample_is_refused_flagged_or_answered(settings, data_dir, tmp_path):
    cases = build(tmp_path / "inputs", data_dir)
    assert len(cases) >= 200
    sample = cases[::4]
    outcomes = run_agent(sample, settings)
    bad = [(c["id"], o) for c, o in zip(sample, outcomes) if o["verdict"] != "ok"]
    assert not bad, bad[:5]


def test_judge_catches_a_silent_accept():
    case = {"id": "x", "expect": "refuse", "audio": "x.wav"}
    assert judge(case, {"status": "answered", "confidence": 0.0, "warnings": []}) == "silent_accept"
    assert judge({"id": "y", "expect": "low"}, {"status": "answered", "confidence": 0.7,
                                                 "warnings": ["w"]}) == "silent_accept"
