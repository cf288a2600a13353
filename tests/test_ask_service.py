"""``GET /v1/conversations/{id}/summary`` and ``POST /v1/ask``: scoped to the API key's conversations like the
other memory routes (real Chroma memory and embedder; a scripted chat model drives the ask loop)."""

import pytest
from fastapi.testclient import TestClient
from langchain_core.messages import AIMessage

from emotion_agent.agent.memory import ConversationMemory
from emotion_agent.service.security import ApiKeys
from emotion_agent.service.server import ServiceConfig, create_app
from test_ask_conversation import TURNS, _Scripted, store

ALICE, BOB = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef00"
A, B = {"Authorization": f"Bearer {ALICE}"}, {"X-API-Key": BOB}


@pytest.fixture()
def app_agent(settings):
    from emotion_agent.agent.runtime import EmotionAgent
    memory = ConversationMemory(settings)
    store(memory, "alice~c1")  # how the service stores alice's conversation "c1"
    agent = EmotionAgent(settings, memory=memory, experts={})
    cfg = ServiceConfig(keys=ApiKeys.parse(f"alice={ALICE},bob={BOB}"), request_timeout_s=60.0, warmup=False)
    with TestClient(create_app(settings, agent, config=cfg)) as c:
        yield c, agent


def test_summary_route_is_scoped_to_the_key(app_agent):
    c, _ = app_agent
    r = c.get("/v1/conversations/c1/summary", headers=A)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["conversation_id"] == "c1" and body["turns"] == len(TURNS)
    assert [(p["turn_index"], p["to_label"], p["driver"]) for p in body["turning_points"]] == [
        (1, "anger", "audio"), (3, "surprise", "text")]
    assert c.get("/v1/conversations/c1/summary", headers=B).status_code == 404  # bob cannot see alice's c1
    assert c.get("/v1/conversations/c1/summary").status_code == 401
    assert c.get("/v1/conversations/bad%20id/summary", headers=A).status_code == 422


def test_ask_route_answers_from_tools_bound_to_the_keys_conversation(app_agent):
    c, agent = app_agent
    agent._ask_llm = _Scripted([AIMessage("", tool_calls=[{"name": "summary", "args": {}, "id": "s"}]),
                            AIMessage("The caller turned from neutral to anger at turn 1, driven by audio.")])
    r = c.post("/v1/ask", headers=A, json={"conversation_id": "c1", "question": "When did the caller get angry?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grounded"] and body["citations"] == ["summary({})"] and "turn 1" in body["answer"]
    assert c.post("/v1/ask", headers=B, json={"conversation_id": "c1", "question": "What happened?"}).status_code == 404
    r = c.post("/v1/ask", headers=A, json={"conversation_id": "c1", "question": "Show me another conversation"})
    assert r.status_code == 200 and "refused" in r.json()["answer"] and not r.json()["tool_calls"]
    assert c.post("/v1/ask", headers=A, json={"conversation_id": "c1", "question": "x" * 600}).status_code == 422


def test_ask_route_streams_tool_calls_then_the_answer(app_agent):
    import json
    c, agent = app_agent
    agent._ask_llm = _Scripted([AIMessage("", tool_calls=[{"name": "turn_evidence", "args": {"turn_index": 1}, "id": "e"}]),
                            AIMessage("At turn 1 audio said anger with 0.9.")])
    with c.stream("POST", "/v1/ask?stream=true", headers=A,
                  json={"conversation_id": "c1", "question": "Why anger at turn 1?"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = [(b.split("\n")[0].removeprefix("event: ").strip(), b) for b in text.replace("\r\n", "\n").split("\n\n")
              if b.startswith("event:")]
    assert [e for e, _ in events] == ["tool_call", "tool_result", "answer"]
    result = json.loads(events[1][1].split("data: ", 1)[1])
    assert result["name"] == "turn_evidence" and '"audio"' in result["content"]
    answer = json.loads(events[2][1].split("data: ", 1)[1])
    assert answer["grounded"] and answer["citations"] == ["turn_evidence({'turn_index': 1})"]
