"""The harness builds agents through their constructor, never by patching a built one (issue 21, point 5).

Fast units (no model is loaded: the agents get no experts); the real eval runs are in test_eval_harness.py and
test_eval_workers.py.
"""

from __future__ import annotations

from types import SimpleNamespace

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from emotion_agent.agent.recall import MemoryRecall, RecalledTurn
from emotion_agent.agent.runtime import PAUSED_STATE_TYPES, EmotionAgent
from emotion_agent.evals.meld import Utterance
from emotion_agent.evals.meld_config import RunConfig
from emotion_agent.evals.meld_memory import EvalMemory, conv_id
from emotion_agent.evals.meld_solver import worker_agents


def utterance(dialogue: int, position: int, text: str) -> Utterance:
    return Utterance(split="dev", dialogue_id=dialogue, utterance_id=position, speaker="Ross", text=text,
                     emotion="neutral", sentiment="neutral", start_s=None, end_s=None, position=position)


class FixedTextExpert:
    """Labels every earlier utterance joy at 0.8 (a double for the text expert the memory asks)."""

    def analyze(self, turn):
        return SimpleNamespace(label="joy", confidence=0.8, distribution={"joy": 0.8, "neutral": 0.2})


def test_a_given_explainer_and_adjudicator_are_the_ones_the_graph_uses(settings):
    first = EmotionAgent(settings, memory=False, experts={})
    second = EmotionAgent(settings, memory=False, experts={}, explainer=first.explainer,
                          adjudicator=first.adjudicator)
    assert second.context.explainer is first.explainer and second.context.adjudicator is first.adjudicator
    assert EmotionAgent(settings, memory=False, experts={}).context.explainer is not first.explainer


def test_worker_agents_share_the_primary_explainer_but_keep_their_own_memory(settings):
    utts = [utterance(1, 0, "Hi."), utterance(1, 1, "How are you?")]
    primary = EmotionAgent(settings, memory=EvalMemory(utts, FixedTextExpert(), settings, 3), experts={})
    workers = worker_agents(primary, 3, settings, RunConfig())
    assert len(workers) == 3 and workers[0] is primary
    for w in workers[1:]:
        assert w.context.explainer is primary.explainer  # the old `w.explainer = ...` left the graph another one
        assert w.context.adjudicator is primary.adjudicator
        assert isinstance(w.context.memory, EvalMemory) and w.context.memory is not primary.memory
        assert w.context.memory.dias is primary.memory.dias
        assert w.experts is primary.experts


def test_eval_memory_recalls_only_the_asked_conversation(settings):
    utts = [utterance(1, 0, "Hi."), utterance(1, 1, "How are you?"), utterance(2, 0, "Go away.")]
    memory = EvalMemory(utts, FixedTextExpert(), settings, 3)
    memory.current = utts[1]
    own = memory.recall(conv_id(utts[1]), "How are you?")
    assert [t.text for t in own.previous] == ["Hi."]
    assert type(own.previous[0]) is RecalledTurn and own.previous[0].distribution == {"joy": 0.8, "neutral": 0.2}
    assert memory.recall(conv_id(utts[2]), "Go away.").previous == []  # another conversation: nothing recalled
    assert memory.recall("somebody-else", None).previous == []


def test_a_paused_run_keeps_recalled_distributions_with_only_agent_types_allowed():
    assert all(not module.startswith("emotion_agent.evals") for module, _ in PAUSED_STATE_TYPES)
    serde = JsonPlusSerializer(allowed_msgpack_modules=PAUSED_STATE_TYPES)
    recall = MemoryRecall(previous=[RecalledTurn(id="c:0", conversation_id="c", turn_index=0, text="Hi.",
                                                 label="joy", confidence=0.8, distribution={"joy": 1.0})])
    back = serde.loads_typed(serde.dumps_typed(recall))
    assert isinstance(back, MemoryRecall) and back.previous[0].distribution == {"joy": 1.0}
