"""Ask tools over one stored conversation (real Chroma memory, real MiniLM embedder) and the grounded summary."""

import pytest
from langchain_core.messages import AIMessage

from emotion_agent.agent.ask_memory_tools import ConversationTools, SimilarQuery, TurnIndex, TurnRange
from emotion_agent.agent.conversation_summary import summarize_conversation
from emotion_agent.agent.memory import ConversationMemory


def _record(label, conf, shares, evidence):
    return {"label": label, "confidence": conf, "distribution": {label: 1.0}, "contributions": shares,
            "evidence": [{"id": f"{m}-0", "modality": m, "label": lab, "confidence": c} for m, lab, c in evidence],
            "explanation": f"{label} from the evidence."}


TURNS = [  # (text, label, confidence, contributions, evidence)
    ("Hi, thanks for calling.", "neutral", 0.8, {"text": 1.0}, [("text", "neutral", 0.8)]),
    ("My order never arrived, again!", "anger", 0.7, {"text": 0.3, "audio": 0.7},
     [("text", "neutral", 0.5), ("audio", "anger", 0.9)]),
    ("It was supposed to come on Monday.", "anger", 0.6, {"text": 0.5, "audio": 0.5}, [("audio", "anger", 0.6)]),
    ("Oh wow, it is at my door right now!", "surprise", 0.75, {"text": 0.8, "audio": 0.2},
     [("text", "surprise", 0.8), ("audio", "neutral", 0.4)]),
]


def store(memory, cid, turns=TURNS):
    for i, (text, label, conf, shares, ev) in enumerate(turns):
        memory.remember(conversation_id=cid, turn_index=i, speaker="caller", text=text, label=label,
                        confidence=conf, record=_record(label, conf, shares, ev))


@pytest.fixture()
def memory(settings):
    m = ConversationMemory(settings)
    store(m, "alice~c1")
    store(m, "bob~c1", [("Secret words of bob.", "joy", 0.9, {"text": 1.0}, [("text", "joy", 0.9)])])
    return m


def test_summary_is_the_trajectory_and_turning_points_with_their_driver(memory):
    s = summarize_conversation(memory.conversation("alice~c1", with_records=True))
    assert [p.label for p in s.trajectory] == ["neutral", "anger", "anger", "surprise"]
    assert [(p.turn_index, p.from_label, p.to_label, p.driver) for p in s.turning_points] == [
        (1, "neutral", "anger", "audio"), (3, "anger", "surprise", "text")]
    assert s.turning_points[0].driver_share == 0.7 and s.label_counts == {"neutral": 1, "anger": 2, "surprise": 1}
    assert "Turn 1: neutral -> anger (audio drove it, share 0.70)" in s.text
    assert summarize_conversation(memory.conversation("alice~c1", with_records=True)) == s  # deterministic
    assert summarize_conversation([]).text == "No stored turns."


def test_conversation_tools_stay_in_their_conversation(memory):
    tools = ConversationTools(memory, "alice~c1")
    got = tools.turns(TurnRange(first=1, last=2))
    assert got.total == 4 and [t.label for t in got.turns] == ["anger", "anger"]
    ev = tools.turn_evidence(TurnIndex(turn_index=1))
    assert ev.contributions == {"text": 0.3, "audio": 0.7} and ev.evidence[1].label == "anger"
    assert ev.top_modality == "audio"
    from emotion_agent.agent.ask_memory_tools import LabelQuery
    angry = tools.label_turns(LabelQuery(label="anger"))
    assert (angry.count, angry.turn_indices, angry.first_turn) == (2, [1, 2], 1)
    assert tools.label_turns(LabelQuery(label="fear")).count == 0
    assert tools.turn_evidence(TurnIndex(turn_index=9)) == {"error": "this conversation has no turn 9"}
    sim = tools.similar(SimilarQuery(text="the parcel did not arrive", k=2))
    assert sim.turns and all("bob" not in t.text.lower() for t in sim.turns)
    assert sim.turns[0].turn_index == 1  # the order complaint is the closest
    bob = ConversationTools(memory, "bob~c1")
    assert [t.text for t in bob.turns(TurnRange()).turns] == ["Secret words of bob."]


class _Scripted:
    def __init__(self, replies):
        self.replies = list(replies)

    def bind_tools(self, tools, **kw):
        if tools:
            self.bound = [t.name for t in tools]
        for t in tools:  # no tool may take a conversation, run or key argument
            assert not {"conversation_id", "conversation", "run", "key"} & set(t.args)
        return self

    def invoke(self, messages):
        return self.replies.pop(0)


def test_emotion_agent_ask_on_a_conversation(settings, memory):
    from emotion_agent.agent.runtime import EmotionAgent
    agent = EmotionAgent(settings, memory=memory, experts={})
    agent._ask_llm = _Scripted([AIMessage("", tool_calls=[{"name": "summary", "args": {}, "id": "s"}]),
                            AIMessage("The caller turned from neutral to anger at turn 1, driven by audio.")])
    ans = agent.ask("When did the caller get angry?", conversation_id="alice~c1")
    assert ans.grounded and ans.citations == ["summary({})"]
    assert agent._ask_llm.bound == ["turns", "turn_evidence", "label_turns", "similar_turns", "summary",
                                    "without_modalities", "word_attributions"]
    agent._ask_llm = _Scripted([AIMessage("", tool_calls=[{"name": "summary", "args": {}, "id": "s"}]),
                            AIMessage("The caller felt joy at turn 7."), AIMessage("Still joy at turn 7.")])
    ans = agent.ask("How did it go?", conversation_id="alice~c1")
    assert not ans.grounded and "labels, turn_indices" in ans.text  # joy and 7 are in no tool result of alice~c1
