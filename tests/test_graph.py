"""The graph on its own, with fake experts and a fake chat model: routing, round cap, edges, failures (fast)."""

from __future__ import annotations

from typing import Any, ClassVar

from langchain_core.messages import AIMessage

from emotion_agent.agent.adjudicate import Adjudicator
from emotion_agent.agent.explain import Explainer
from emotion_agent.agent.graph import AgentContext, graph
from emotion_agent.agent.state import TurnOptions
from emotion_agent.tools.base import Expert, TurnInput
from emotion_agent.tools.evidence import LABELS, EmotionEvidence, TranscriptInfo, new_id
from emotion_agent.tools.settings import Settings


def dist(label: str, p: float) -> dict[str, float]:
    rest = (1.0 - p) / (len(LABELS) - 1)
    return {k: (p if k == label else rest) for k in LABELS}


class FakeExpert(Expert):
    """Answers a fixed distribution for the modality it accepts; counts its calls."""

    name: ClassVar[str] = "fake"
    description: ClassVar[str] = "fake expert"

    def __init__(self, name: str, modality: str, label: str, p: float, needs: str, stage: int = 0,
                 raises: Exception | None = None):
        self.name, self.modality, self.stage = name, modality, stage  # type: ignore[misc]
        self.label, self.p, self.needs, self.raises, self.calls = label, p, needs, raises, 0

    def accepts(self, turn: TurnInput) -> bool:
        return getattr(turn, self.needs) is not None

    def _analyze(self, turn: TurnInput) -> EmotionEvidence:
        self.calls += 1
        if self.raises is not None:
            raise self.raises
        return EmotionEvidence(id=new_id(self.name), modality=self.modality, expert=self.name, model_id="fake",
                               distribution=dist(self.label, self.p), confidence=self.p)


class FakeChat:
    """A chat model that answers with scripted messages (or raises) and records what it was asked."""

    def __init__(self, replies: list[Any]):
        self.replies, self.calls = list(replies), 0

    def bind_tools(self, tools: Any, **kw: Any) -> "FakeChat":
        return self

    def bind(self, **kw: Any) -> "FakeChat":
        return self

    def invoke(self, messages: Any) -> AIMessage:
        self.calls += 1
        reply = self.replies.pop(0) if self.replies else AIMessage(content="")
        if isinstance(reply, Exception):
            raise reply
        return reply


def run(experts: dict[str, Expert], turn: TurnInput, chat: FakeChat | None = None, **opts: Any) -> dict[str, Any]:
    chat = chat or FakeChat([])
    settings = Settings(max_tool_rounds=opts.pop("max_tool_rounds", 3))
    ctx = AgentContext(settings=settings, experts=experts, memory=None,
                       explainer=Explainer(lambda: chat), adjudicator=Adjudicator(lambda: chat),
                       chat_model=lambda: chat)
    options = TurnOptions(explain=opts.pop("explain", False), fusion="weighted", **opts)
    return graph.invoke({"turn": turn, "options": options}, context=ctx)


def test_auto_planner_runs_experts_by_stage_and_skips_those_without_input():
    text = FakeExpert("text_emotion", "text", "anger", 0.8, needs="text", stage=1)
    face = FakeExpert("facial_emotion", "vision", "joy", 0.9, needs="image_path")
    out = run({"text_emotion": text, "facial_emotion": face}, TurnInput(text="I am furious"))
    assert [e.expert for e in out["result"].evidence] == ["text_emotion"]
    assert face.calls == 0 and text.calls == 1
    assert out["result"].label == "anger"


def test_explain_and_adjudicate_nodes_are_skipped_when_off():
    text = FakeExpert("text_emotion", "text", "joy", 0.9, needs="text")
    out = run({"text_emotion": text}, TurnInput(text="yay"))
    assert "explain" not in out["timings"] and "adjudicate" not in out["timings"]
    assert out["result"].explanation is None


def test_explain_node_falls_back_to_the_template_with_a_warning_when_the_llm_fails():
    text = FakeExpert("text_emotion", "text", "joy", 0.9, needs="text")
    chat = FakeChat([RuntimeError("model crashed"), RuntimeError("model crashed")])
    out = run({"text_emotion": text}, TurnInput(text="yay"), chat, explain=True)
    r = out["result"]
    assert "explain" in out["timings"]
    assert r.explanation_source == "template" and r.explanation
    assert any("LLM explanation not used" in w for w in r.warnings)


def test_an_expert_that_raises_becomes_evidence_of_its_own_modality_with_the_failure():
    text = FakeExpert("text_emotion", "text", "anger", 0.8, needs="text")
    voice = FakeExpert("speech_emotion", "audio", "joy", 0.9, needs="audio_path", raises=ZeroDivisionError("bug"))
    out = run({"text_emotion": text, "speech_emotion": voice}, TurnInput(text="hm", audio_path="x.wav"))
    by = {e.expert: e for e in out["result"].evidence}
    assert by["speech_emotion"].modality == "audio" and by["speech_emotion"].confidence == 0.0
    assert "ZeroDivisionError" in by["speech_emotion"].warnings[0]
    assert by["speech_emotion"].extra.get("failed") is True
    assert out["result"].label == "anger"


def test_llm_planner_failure_is_a_visible_warning_and_the_auto_planner_takes_over():
    text = FakeExpert("text_emotion", "text", "sadness", 0.7, needs="text")
    chat = FakeChat([RuntimeError("llama exploded")])
    out = run({"text_emotion": text}, TurnInput(text="sigh"), chat, planner="llm")
    assert any("LLM planner failed" in w for w in out["result"].warnings)
    assert [e.expert for e in out["result"].evidence] == ["text_emotion"]


def test_llm_planner_choice_is_used_when_it_works():
    text = FakeExpert("text_emotion", "text", "sadness", 0.7, needs="text")
    call = AIMessage(content="", tool_calls=[{"name": "text_emotion", "args": {}, "id": "c1", "type": "tool_call"}])
    chat = FakeChat([call, AIMessage(content="")])
    out = run({"text_emotion": text}, TurnInput(text="sigh"), chat, planner="llm")
    assert not any("planner failed" in w for w in out["result"].warnings)
    assert chat.calls >= 1 and text.calls == 1


def test_round_cap_stops_planning_even_when_experts_remain():
    # Three stages of experts, cap of 2 rounds: the third stage never runs.
    experts = {f"e{i}": FakeExpert(f"e{i}", "text", "joy", 0.6, needs="text", stage=i) for i in range(3)}
    out = run(experts, TurnInput(text="x"), max_tool_rounds=2)
    assert [e.expert for e in out["result"].evidence] == ["e0", "e1"]
    assert experts["e2"].calls == 0


def test_confident_voice_outweighs_lexically_neutral_words_and_disagreement_is_reported():
    words = FakeExpert("text_emotion", "transcript", "neutral", 0.67, needs="text")
    voice = FakeExpert("speech_emotion", "audio", "anger", 0.8, needs="audio_path")
    out = run({"text_emotion": words, "speech_emotion": voice}, TurnInput(text="Kids are talking by the door",
                                                                          audio_path="x.wav"))
    r = out["result"]
    assert r.label == "anger"
    assert {(v.modality, v.label) for v in r.disagreement} == {("transcript", "neutral"), ("audio", "anger")}
    assert any("disagree" in w for w in r.warnings)


def test_clear_words_outweigh_an_unsure_voice():
    words = FakeExpert("text_emotion", "text", "anger", 0.85, needs="text")
    voice = FakeExpert("speech_emotion", "audio", "sadness", 0.45, needs="audio_path")
    out = run({"text_emotion": words, "speech_emotion": voice}, TurnInput(text="I am furious!", audio_path="x.wav"))
    assert out["result"].label == "anger"


def test_no_usable_evidence_gives_neutral_with_zero_confidence():
    out = run({}, TurnInput(text="x"))
    assert out["result"].confidence == 0.0 and out["result"].warnings


class FakeTranscriber(FakeExpert):
    """Stage-0 transcription: uninformative evidence carrying a transcript, as the real one does."""

    def _analyze(self, turn: TurnInput) -> EmotionEvidence:
        self.calls += 1
        return EmotionEvidence(id=new_id("transcribe"), modality="transcript", expert="transcribe", model_id="fake",
                               distribution=dist("neutral", 1 / 7), confidence=0.0,
                               transcript=TranscriptInfo(text="kids are talking by the door"))


class ListMemory:
    """The memory calls the graph makes, recorded."""

    def __init__(self) -> None:
        self.stored: list[dict[str, Any]] = []

    def recall(self, conversation_id: str, text: str | None, **kw: Any) -> Any:
        from emotion_agent.agent.recall import MemoryRecall

        return MemoryRecall()

    def next_turn_index(self, conversation_id: str) -> int:
        return len(self.stored)

    def remember(self, **kw: Any) -> None:
        self.stored.append(kw)


def test_an_audio_only_turn_is_remembered_with_its_transcript():
    from pathlib import Path

    memory = ListMemory()
    experts = {"transcribe": FakeTranscriber("transcribe", "transcript", "neutral", 0.0, needs="audio_path"),
               "speech_emotion": FakeExpert("speech_emotion", "audio", "anger", 0.9, needs="audio_path", stage=1),
               "text_emotion": FakeExpert("text_emotion", "text", "neutral", 0.6, needs="transcript", stage=1)}
    ctx = AgentContext(settings=Settings(), experts=experts, memory=memory, explainer=Explainer(lambda: None),
                       adjudicator=Adjudicator(lambda: None), chat_model=lambda: None)
    turn = TurnInput(audio_path=Path("clip.wav"), conversation_id="c1", turn_index=0)
    out = graph.invoke({"turn": turn, "options": TurnOptions(explain=False, fusion="weighted")}, context=ctx)
    assert memory.stored and memory.stored[0]["text"] == "kids are talking by the door"
    assert out["transcript"] == "kids are talking by the door"  # written to the state once, by run_experts
    assert experts["text_emotion"].calls == 1
