"""Streaming the ask agent's replies: tool names and answer tokens as generated, and the unconstrained-first
reply of the local model (sampled again under the grammar only when invalid). Units with a fake llama.cpp; the
real 0.5B streams in the slow test at the end (and in those of test_ask_agent_loop.py / test_ask_tools.py)."""

import json

import pytest

from emotion_agent.agent.ask_reply_stream import ReplyStream
from emotion_agent.agent.llm import ChatLlamaCpp, free_reply_invalid, unfenced
from tests.conftest import TEST_LLM

TOOLS = [{"type": "function", "function": {"name": "metrics", "parameters": {"type": "object", "properties": {}}}},
         {"type": "function", "function": {"name": "class_errors", "parameters": {
             "type": "object", "properties": {"label": {"type": "string"}}}}}]


def _feed(text, size=3):
    got = []
    s = ReplyStream(lambda kind, data: got.append((kind, data)))
    for i in range(0, len(text), size):
        s(text[i:i + size])
    return got, s


def test_reply_stream_tells_tool_names_and_decoded_answer_tokens():
    got, _ = _feed('{"tool_calls": [{"name": "metrics", "args": {}}, {"name": "class_errors", "args": {}}]}')
    assert got == [("tool_call_start", {"name": "metrics"}), ("tool_call_start", {"name": "class_errors"})]
    got, s = _feed('```json\n{"answer": "Say \\"hi\\" \\u00e9 6 turns."}\n```', size=2)
    assert all(k == "token" for k, _ in got) and len(got) > 3
    assert "".join(d["text"] for _, d in got) == 'Say "hi" é 6 turns.'
    s(None)  # the reply was dropped: readers are told, and reading starts over
    assert got[-1] == ("token_reset", {}) and s.raw == ""


def test_free_replies_are_checked_before_they_stand():
    answer, call = {"allow_answer": True}, {"tool_choice": "any"}
    assert free_reply_invalid('{"answer": "0.6"}', TOOLS, answer) is None
    assert free_reply_invalid('{"answer": "0.6"}', TOOLS, call) == "no tool call"
    assert free_reply_invalid('{"tool_calls": [{"name": "metrics", "args": {}}]}', TOOLS, call) is None
    assert free_reply_invalid('{"tool_calls": [{"name": "nope", "args": {}}]}', TOOLS, call)
    assert free_reply_invalid('{"tool_calls": [{"name": "metrics", "args": {"x": 1}}]}', TOOLS, call)
    assert free_reply_invalid("The accuracy is 0.6.", TOOLS, answer) == "not JSON"
    assert unfenced('```json\n{"answer": "x"}\n```') == '{"answer": "x"}'


class _FakeLlama:
    """Streams canned replies; records whether each request carried the grammar (response_format)."""

    n_tokens = 50

    def __init__(self, replies):
        self.replies, self.grammar = list(replies), []

    def tokenize(self, data, add_bos=False):
        return data.split()

    def create_chat_completion(self, stream=False, **request):
        self.grammar.append("response_format" in request)
        text = self.replies.pop(0)
        assert stream
        return iter([{"choices": [{"delta": {"content": text[i:i + 4]}}]} for i in range(0, len(text), 4)])


def test_the_grammar_is_used_only_when_the_free_reply_is_invalid():
    model = ChatLlamaCpp(grammar="fallback")
    model._llama = _FakeLlama(['{"tool_calls": [{"name": "metrics", "args": {}}]}'])
    pieces = []
    msg = model.bind_tools(TOOLS, tool_choice="any", on_token=pieces.append).invoke("q")
    assert [c["name"] for c in msg.tool_calls] == ["metrics"] and model._llama.grammar == [False]
    assert "".join(pieces) == '{"tool_calls": [{"name": "metrics", "args": {}}]}'
    model._llama = _FakeLlama(["I think the accuracy is fine.", json.dumps({"tool_calls": [
        {"name": "metrics", "args": {}}]})])
    pieces.clear()
    msg = model.bind_tools(TOOLS, tool_choice="any", on_token=pieces.append).invoke("q")
    assert model._llama.grammar == [False, True] and None in pieces and msg.tool_calls
    assert msg.response_metadata["grammar"] is True


def test_a_free_reply_stops_once_its_json_closes():
    from emotion_agent.agent.llm import _JsonEnd
    end = _JsonEnd()
    assert not end.feed('{"answer": "a \\"}\\" b')  # braces and quotes inside the string do not count
    assert end.feed('"} and then the model went on')
    assert unfenced('{"answer": "x"}\nMore words {') == '{"answer": "x"}'
    model = ChatLlamaCpp(grammar="fallback")
    model._llama = _FakeLlama(['{"answer": "Accuracy was 0.6."} Also, here is more text that costs time.'])
    msg = model.bind_tools(TOOLS, allow_answer=True).invoke("q")
    assert msg.content == "Accuracy was 0.6." and model._llama.grammar == [False]


@pytest.mark.slow
@pytest.mark.llm
def test_the_real_model_streams_the_tool_name_before_the_call_and_the_answer_as_tokens(settings, tmp_path):
    """The test LLM (0.5B) through EmotionAgent.ask with streaming on: tool_call_start comes before tool_call,
    and the tokens streamed since the last reset are the answer's words."""
    from emotion_agent.agent.runtime import EmotionAgent
    rec = {"key": "dev/dia1_utt0", "gold": "anger", "label": "joy", "confidence": 0.7, "text": "Give it back!"}
    (tmp_path / "records.jsonl").write_text(json.dumps(rec) + "\n")
    events = []
    agent = EmotionAgent(settings.replace(ask_llm=TEST_LLM), memory=False, experts={})
    ans = agent.ask("What is the accuracy of this run?", run=tmp_path, on_event=lambda k, d: events.append((k, d)))
    kinds = [k for k, _ in events]
    assert ans.tool_calls and kinds.index("tool_call_start") < kinds.index("tool_call"), kinds
    if ans.grounded and "answer_reset" not in kinds:
        last = max((i for i, k in enumerate(kinds) if k.endswith("reset")), default=-1)
        streamed = "".join(d["text"] for k, d in events[last + 1:] if k == "token")
        assert streamed.strip() == ans.text, (streamed, ans.text)
