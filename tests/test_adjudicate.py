"""LLM adjudication of close calls: only the two fused candidates can ever come out (unit + real LLM)."""

from __future__ import annotations

import pytest

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from emotion_agent.agent.adjudicate import Adjudicator, adjudication_schema, top_two
from emotion_agent.agent.recall import MemoryRecall
from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.evidence import EmotionEvidence, FusedResult


def close_call(label="neutral", dist=None):
    dist = dist or {"neutral": 0.40, "joy": 0.36, "surprise": 0.24}
    ev = EmotionEvidence(id="text-abc123", modality="text", expert="text_emotion", model_id="m",
                         distribution=dist, confidence=0.4)
    return FusedResult(label=label, confidence=0.4, distribution=dist, evidence=[ev], fusion_policy="learned")


def test_top_two_and_schema_admit_only_the_candidates():
    cands, margin = top_two(close_call().distribution)
    assert cands == ["neutral", "joy"] and abs(margin - 0.04) < 1e-6
    assert adjudication_schema(cands)["properties"]["label"]["enum"] == ["neutral", "joy"]


def test_pick_of_the_second_candidate_changes_the_label_and_says_so():
    adj = Adjudicator(lambda: FakeListChatModel(responses=['{"label": "joy"}']), threshold=0.1)
    r = close_call()
    a = adj.choose(TurnInput(text="Oh wow, great."), r, MemoryRecall())
    assert a.status == "applied" and a.chosen == "joy" and a.changed
    out = adj.apply(r, a)
    assert out.label == "joy" and out.fusion_policy == "learned+llm_adjudication"
    assert out.confidence == round(r.distribution["joy"], 4) and out.adjudication.fused_label == "neutral"


def test_wide_margin_is_not_adjudicated_and_bad_answers_keep_the_fused_label():
    never = Adjudicator(lambda: (_ for _ in ()).throw(AssertionError("LLM must not be called")), threshold=0.1)
    wide = close_call(dist={"anger": 0.8, "neutral": 0.2}, label="anger")
    assert never.choose(TurnInput(text="x"), wide, MemoryRecall()).status == "not_needed"
    for answer in ('{"label": "fear"}', "joy", '{"label": 3}', ""):  # not a candidate / not JSON
        adj = Adjudicator(lambda a=answer: FakeListChatModel(responses=[a]), threshold=0.1)
        a = adj.choose(TurnInput(text="x"), close_call(), MemoryRecall())
        out = adj.apply(close_call(), a)
        assert a.status == "failed" and out.label == "neutral" and any("adjudication failed" in w for w in out.warnings)


@pytest.mark.slow
@pytest.mark.llm
def test_adjudication_on_real_meld_turns_with_the_real_llm(settings, data_dir, tmp_path):
    """Margin 1.0 adjudicates every turn: each label is one of its two fused candidates, and the run's
    records re-score the whole margin curve."""
    from emotion_agent.evals.records import read_records
    from emotion_agent.evals.run_meld import run

    s = settings.replace(data_dir=data_dir)
    summary = run("dev", limit=4, out=tmp_path / "adj", settings=s, cache_path=tmp_path / "cache.sqlite",
                  progress=False, adjudicate=True, adjudicate_margin=1.0)
    recs = read_records(tmp_path / "adj" / "records.jsonl")
    assert len(recs) == 4
    for r in recs:
        a = r["result"]["adjudication"]
        assert a["status"] == "applied", a
        assert a["chosen"] in a["candidates"] and r["label"] == a["chosen"]
        assert a["fused_label"] == a["candidates"][0]
    adj = summary["adjudication"]
    assert adj["asked"] == 4 and adj["failed"] == 0 and adj["margin"] == 1.0
    assert adj["curve"][0]["margin"] == 0.0 and adj["curve"][0]["changed"] == 0
    assert adj["curve"][-1]["adjudicated"] == 4 and adj["curve"][-1]["changed"] == adj["changed"]
    assert "llm" in summary["model_ids"]


def test_invalid_free_answer_is_re_asked_under_the_enum_schema():
    calls = []

    class Recording(FakeListChatModel):
        def _call(self, messages, stop=None, run_manager=None, **kwargs):
            calls.append(kwargs.get("json_schema"))
            return super()._call(messages, stop=stop, run_manager=run_manager, **kwargs)

    llm = Recording(responses=["I think it is joy.", '{"label": "neutral"}'])
    a = Adjudicator(lambda: llm, threshold=0.1).choose(TurnInput(text="ok."), close_call(), MemoryRecall())
    assert a.status == "applied" and a.chosen == "neutral" and not a.changed
    assert calls[0] is None and calls[1]["properties"]["label"]["enum"] == ["neutral", "joy"]
