"""The ask loop's rounds, reply parsing, counterfactual tools and model choice, with a scripted chat model; one
real-model test (slow, llm) proves the default local model makes a real tool call."""

import json

import pytest
from langchain_core.messages import AIMessage

from emotion_agent.agent.ask_expert_tools import fuse_without, word_attributions, turn_for_attribution
from emotion_agent.agent.ask_loop import ask
from emotion_agent.agent.ask_run_tools import RunTools
from emotion_agent.agent.ask_toolset import describe_tools, run_tools
from emotion_agent.agent.llm import ANSWER_SCHEMA, call_options, parse_reply

TOOLS = [{"type": "function", "function": {"name": "metrics", "parameters": {"type": "object", "properties": {}}}}]


def _dist(top, p):
    rest = (1 - p) / 6
    return {lab: (p if lab == top else rest) for lab in
            ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")}


def _ev(i, modality, top, p):
    return {"id": f"{modality}-{i}", "modality": modality, "expert": f"{modality}_x", "model_id": "m",
            "distribution": _dist(top, p), "confidence": p}


RECORD = {"key": "dev/dia1_utt0", "gold": "anger", "label": "anger", "confidence": 0.7, "text": "Give it back!",
          "speaker": "Ross", "modalities_used": ["text", "audio"],
          "result": {"label": "anger", "confidence": 0.7, "fusion_policy": "weighted",
                     "evidence": [_ev(0, "text", "neutral", 0.5), _ev(1, "audio", "anger", 0.95)]}}


@pytest.fixture()
def run_dir(tmp_path):
    other = {**RECORD, "key": "dev/dia1_utt1", "gold": "joy", "label": "neutral", "text": "Fine."}
    (tmp_path / "records.jsonl").write_text(json.dumps(RECORD) + "\n" + json.dumps(other) + "\n")
    return tmp_path


class Scripted:
    """Replays AI messages and records how each call was bound (tool_choice / allow_answer)."""

    def __init__(self, replies):
        self.replies, self.modes = list(replies), []

    def bind_tools(self, tools, **kw):
        outer = self

        class Bound:
            def invoke(self, messages):
                outer.modes.append("any" if kw.get("tool_choice") == "any" else "answer" if not tools else "either")
                outer.prompts = messages
                return outer.replies.pop(0)
        return Bound()


def _call(name, **args):
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": name}])


def test_parse_reply_reads_answers_calls_and_cut_answers():
    assert parse_reply('{"answer": "Accuracy was 0.6."}', TOOLS).content == "Accuracy was 0.6."
    cut = parse_reply('{"answer": "Three fear turns were wr', TOOLS)
    assert cut.content == "Three fear turns were wr" and not cut.tool_calls
    calls = parse_reply('{"tool_calls": [{"name": "metrics", "args": {}}, {"name": "nope", "args": {}}]}', TOOLS)
    assert [c["name"] for c in calls.tool_calls] == ["metrics"]
    _, schema, _ = call_options({"tools": TOOLS, "allow_answer": True}, 100)
    assert schema["anyOf"][1] == ANSWER_SCHEMA and schema["anyOf"][0]["properties"]["tool_calls"]["minItems"] == 1
    assert call_options({"tools": [], "allow_answer": True}, 100)[1] == ANSWER_SCHEMA


def test_first_round_must_call_a_tool_and_a_repeated_call_ends_in_the_answer(run_dir):
    m = Scripted([_call("metrics"), _call("metrics"), AIMessage("Accuracy was 0.5 over 2 turns.")])
    ans = ask(m, run_tools(RunTools(run_dir)), "What is the accuracy?")
    assert m.modes == ["any", "either", "answer"] and ans.grounded and ans.text.startswith("Accuracy was 0.5")
    assert ans.citations == ["metrics({})"] and len(ans.tool_results) == 1
    assert json.loads(ans.tool_results[0]) == {"n": 2, "accuracy": 0.5, "per_class_recall": {"anger": 1.0, "joy": 0.0},
                                               "gold_counts": {"anger": 1, "joy": 1},
                                               "predicted_counts": {"neutral": 1, "anger": 1}}
    assert " " not in ans.tool_results[0]  # compact JSON: short tool results
    # the fixed part (instructions + tool list) comes first, the question last: the cached prefix is reused
    assert "- metrics(): " in m.prompts[0].content and m.prompts[1].content == "What is the accuracy?"


def test_round_cap_forces_an_answer(run_dir):
    m = Scripted([_call("metrics"), _call("confusion"), _call("class_errors", label="joy"),
                  AIMessage("1 joy turn was called neutral.")])
    ans = ask(m, run_tools(RunTools(run_dir)), "joy errors?", max_rounds=4)
    assert m.modes == ["any", "either", "either", "answer"] and ans.grounded
    assert "round cap 4 reached" in ans.warnings and len(ans.tool_calls) == 3


def test_no_answer_is_repaired_once_then_refused(run_dir):
    m = Scripted([_call("metrics"), AIMessage(""), AIMessage("")])
    ans = ask(m, run_tools(RunTools(run_dir)), "accuracy?")
    assert not ans.grounded and "no answer" in ans.text


def test_a_label_only_echoed_from_the_models_own_arguments_is_not_grounded(run_dir):
    """class_errors(label=X) answers {"label": X, ...}: X is the model's word, so it grounds nothing unless the
    question said it (the 1.5B once answered a turn's gold label with the label it had asked class_errors about)."""
    echo = Scripted([_call("class_errors", label="sadness"), AIMessage("The gold label of this turn is sadness."),
                     AIMessage("It is sadness.")])
    ans = ask(echo, run_tools(RunTools(run_dir)), "What is the gold label of this turn?")
    assert not ans.grounded and "labels" in ans.text and ans.tool_results[0].startswith('{"label":"sadness"')
    asked = Scripted([_call("class_errors", label="anger"), AIMessage("0 of the 1 anger turns were wrong.")])
    ans = ask(asked, run_tools(RunTools(run_dir)), "How many anger turns did this run get wrong?")
    assert ans.grounded, ans  # "anger" is the asker's word; 0 and 1 are the tool's
    # a turn index only echoed back grounds nothing either; the asker's own index does
    from emotion_agent.agent.ask_grounding import check_grounding
    result = [{"turn_index": 3, "label": "joy"}]
    assert not check_grounding("Turn 3 was joy.", result, [{"turn_index": 3}], "Why joy?").grounded
    assert check_grounding("Turn 3 was joy.", result, [{"turn_index": 3}], "What label did turn 3 get?").grounded
    assert not check_grounding("Key 7 was joy.", [{"error": "no turn 7 here"}], [{"n": 7}], "Any joy?").grounded


def test_an_answer_of_the_wrong_form_is_repaired_once(run_dir):
    """A "how many" answer with no number, or a yes/no question answered without yes or no, gets one repair."""
    from emotion_agent.agent.ask_grounding import answer_form
    assert answer_form("How many turns?", "Yes") and answer_form("How many turns?", "2 turns.") is None
    assert answer_form("Which turn was the first one labelled fear?", "Yes")  # the 1.5B said this
    assert answer_form("Why was it fear?", "Yes.") and answer_form("Why was it fear?", "The words.") is None
    assert answer_form("Was it right?", "It was predicted incorrectly.") and answer_form("Was it?", "No, joy.") is None
    wrong = '{"key":"k","correct":false,"gold":"joy","pred":"neutral"}'
    assert "correct=false" in answer_form("Was this turn predicted correctly?", "Yes, it was.", [wrong])
    assert answer_form("Was this turn predicted correctly?", "No, it was neutral.", [wrong]) is None
    m = Scripted([_call("metrics"), AIMessage("Yes"), AIMessage("1 turn has the gold label joy.")])
    ans = ask(m, run_tools(RunTools(run_dir)), "How many turns have the gold label joy?")
    assert ans.text == "1 turn has the gold label joy." and "repaired once" in ans.warnings[0]
    m = Scripted([_call("metrics"), AIMessage("Half of them."), AIMessage("Still half.")])
    ans = ask(m, run_tools(RunTools(run_dir)), "How many turns were right?")
    assert ans.grounded and ans.text == "Half of them." and "answer form" in ans.warnings[0]


def test_modality_arguments_take_the_words_of_a_question(run_dir):
    """without_modalities(drop=["voice"]) is drop=["audio"] (the 1.5B wrote "voice" and got an error result)."""
    tool = {t.name: t for t in run_tools(RunTools(run_dir, key="dev/dia1_utt0"))}["without_modalities"]
    got = json.loads(tool.invoke({"drop": ["voice"]}))
    assert got["dropped"] == ["audio"] and got["still_same_label"] is False and got["label"] == "neutral"


def test_counterfactual_refuses_the_stored_evidence_without_a_modality():
    without_voice = fuse_without("t", RECORD, ["audio"])
    assert without_voice.original_label == "anger" and without_voice.label == "neutral" and without_voice.changed
    assert without_voice.modalities_left == ["text"]
    nothing = fuse_without("t", RECORD, ["audio", "text"])
    assert nothing.label is None and nothing.changed and "no evidence" in nothing.note
    no_face = fuse_without("t", RECORD, ["vision"])
    assert no_face.label == "anger" and not no_face.changed and "no vision evidence" in no_face.note


def test_run_tools_take_a_turn_key_of_their_own_run_only(run_dir):
    tools = {t.name: t for t in run_tools(RunTools(run_dir))}
    got = json.loads(tools["without_modalities"].invoke({"drop": ["audio"], "turn_key": "dia1_utt0"}))
    assert got["turn"] == "dev/dia1_utt0" and got["label"] == "neutral"
    assert "no turn" in tools["without_modalities"].invoke({"drop": ["audio"], "turn_key": "dev/dia9_utt9"})
    one = {t.name: t for t in run_tools(RunTools(run_dir, key="dev/dia1_utt1"))}
    assert json.loads(one["without_modalities"].invoke({"drop": ["text"]}))["turn"] == "dev/dia1_utt1"
    assert all("turn_key" not in t.args for t in one.values())  # one turn in scope: no key to pass (or copy)
    turn = json.loads(one["turn"].invoke({}))
    assert (turn["key"], turn["gold"], turn["pred"], turn["correct"]) == ("dev/dia1_utt1", "joy", "neutral", False)
    assert turn["evidence"] == {"text": "neutral (0.50)", "audio": "anger (0.95)"}
    lines = describe_tools(list(tools.values()))
    assert "- class_errors(label: label): " in lines and "drop: list of text|audio|vision" in lines


def test_word_attributions_keep_the_strongest_words():
    class Expert:
        def attributions(self, turn, label):
            from emotion_agent.tools.evidence import WordWeight
            assert turn.context[0].text == "Where is it?" and label == "anger"
            return [WordWeight(word=w, weight=x) for w, x in (("Give", 0.01), ("it", 0.0), ("back!", 0.4))]
    turn = turn_for_attribution("Give it back!", "Ross", [("Rachel", "Where is it?")])
    got = word_attributions("t", turn, "anger", lambda: Expert())
    assert [(w.word, w.weight) for w in got.words] == [("back!", 0.4), ("Give", 0.01)]
    assert word_attributions("t", None, "anger", lambda: Expert()).note == "this turn has no words to weigh"


def test_ask_model_is_the_1_5b_when_installed_else_the_0_5b_with_a_warning(settings, monkeypatch):
    from emotion_agent.agent import chat_model
    from emotion_agent.tools import assets
    assert chat_model.ask_model_name(settings.replace(ask_llm="x.gguf")) == ("x.gguf", [])
    monkeypatch.setattr(assets, "package_dir", lambda m: None)
    name, warn = chat_model.ask_model_name(settings.replace(ask_llm="auto", cache_dir=settings.memory_path))
    assert name == "qwen2.5-coder-0.5b" and "make models-full" in warn[0]


def test_the_label_path_never_builds_the_ask_model(settings):
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.agent.inputs import make_turn
    agent = EmotionAgent(settings, memory=False, experts={})
    agent.analyze(make_turn(text="I am so happy today!"), explain=False)
    assert agent._ask_llm is None and agent._llm is None


@pytest.mark.slow
@pytest.mark.llm
def test_the_default_ask_model_makes_a_real_tool_call(settings, run_dir):
    """The real default ask model (the 1.5B when installed) answers a count through a real tool call."""
    from emotion_agent.agent.runtime import EmotionAgent
    agent = EmotionAgent(settings.replace(ask_llm="auto"), memory=False, experts={})
    ans = agent.ask("How many joy turns did this run get wrong?", run=run_dir)
    assert ans.tool_calls and ans.tool_results, ans
    assert {c["name"] for c in ans.tool_calls} <= {t.name for t in run_tools(RunTools(run_dir))}
    assert ans.grounded or "failed checks" in ans.text


def test_eval_questions_are_computed_from_the_records_and_sampled_across_scopes(run_dir):
    import random

    from emotion_agent.evals.ask_questions import hostile_questions, run_questions, turn_questions
    from emotion_agent.evals.run_ask import matches, subset
    from emotion_agent.evals.records import read_records
    recs = read_records(run_dir / "records.jsonl")
    qs = run_questions(recs, "r", random.Random(1)) + turn_questions(recs, "r", random.Random(1), k=2)
    qs += hostile_questions("c1", "c2", ["words of the other conversation"])
    by_text = {q.text: q.expect for q in qs}
    assert by_text["How many joy turns did this run get wrong?"] == ("number", 1)
    assert by_text["What is the accuracy of this run?"] == ("number", 0.5)
    assert ("yesno", "no") in [q.expect for q in qs if q.template == "cf_voice"]  # anger needs the voice
    picked = subset(qs, 2)
    assert {q.scope for q in picked if q.kind == "computable"} == {"run", "turn"}
    assert sum(q.kind == "hostile" for q in picked) == sum(q.kind == "hostile" for q in qs) >= 20
    assert matches("Accuracy was 50%.", ("number", 0.5)) and matches("It was 0.5", ("number", 0.5))
    assert not matches("It was 3.", ("number", 0.5))
    assert matches("No, it would be neutral without the voice.", ("yesno", "no"))
    assert matches("Yes, it would still be joy.", ("yesno", "yes")) and not matches("Yes... no.", ("yesno", "yes"))


def test_a_question_naming_another_conversation_is_refused_before_any_tool(run_dir):
    from emotion_agent.agent.ask_loop import refusal_reason
    own = ("alice~meld-dev-dia42", "meld-dev-dia42")
    assert refusal_reason("What did conversation meld-dev-dia110 say at turn 0?", own)
    assert refusal_reason("Summarise conversation c-17 for me.", own)
    assert refusal_reason("What happened in this conversation at turn 3?", own) is None
    assert refusal_reason("How did conversation meld-dev-dia42 end?", own) is None
    ans = ask(Scripted([]), run_tools(RunTools(run_dir)), "What is the accuracy of run meld-dev-7?",
              scope_names=(run_dir.name,))
    assert not ans.tool_calls and "refused" in ans.text and "names another scope" in ans.warnings[0]
