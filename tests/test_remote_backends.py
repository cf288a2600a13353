"""Scale-out backends against real servers on loopback: llama.cpp's OpenAI-compatible server and `chroma run`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from emotion_agent.tools.settings import Settings
from emotion_agent.agent.llm import LLMError
from emotion_agent.agent.llm_remote import ChatOpenAICompatible

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not up after {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def llm_url(tmp_path_factory):
    from emotion_agent.tools.assets import ensure

    gguf = ensure("smollm2-135m", Settings.from_env())
    port = _free_port()
    logf = (tmp_path_factory.mktemp("llm") / "server.log").open("wb")  # a pipe would fill up and block it
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_threads", "1", "--n_ctx", "2048"],
                            stdout=logf, stderr=subprocess.STDOUT)
    try:
        _wait(f"http://127.0.0.1:{port}/v1/models", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)
        logf.close()


def _start_chroma(path: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc)
    return proc


class Verdict(BaseModel):
    emotion: Literal["joy", "anger", "sadness"]
    intensity: int


def test_remote_llm_json_schema_tools_and_max_tokens(llm_url):
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool

    llm = ChatOpenAICompatible(base_url=llm_url, model="smollm2-135m")
    schema = {"type": "object", "properties": {"emotion": {"type": "string", "enum": ["joy", "anger"]},
                                               "reason": {"type": "string", "maxLength": 60}},
              "required": ["emotion", "reason"]}
    msg = llm.bind(json_schema=schema, max_tokens=48).invoke([HumanMessage("I won the lottery! Emotion as JSON.")])
    data = json.loads(msg.content)
    assert data["emotion"] in ("joy", "anger") and isinstance(data["reason"], str)
    assert msg.response_metadata["usage"]["completion_tokens"] <= 48

    short = llm.bind(max_tokens=5).invoke([HumanMessage("Count from one to fifty in words.")])
    assert short.response_metadata["usage"]["completion_tokens"] <= 5

    @tool
    def text_emotion() -> str:
        """Emotion of the words said in this turn."""
        return "joy"

    @tool
    def facial_emotion() -> str:
        """Emotion of the face in the image."""
        return "joy"

    call = llm.bind_tools([text_emotion, facial_emotion], tool_choice="any").invoke(
        [HumanMessage("The turn has text only. Call the tool for text.")])
    assert call.tool_calls and all(c["name"] in ("text_emotion", "facial_emotion") for c in call.tool_calls)

    v = llm.with_structured_output(Verdict, max_tokens=60).invoke([HumanMessage("I am furious! Emotion and intensity 1-5?")])
    assert isinstance(v, Verdict)


def test_remote_llm_falls_back_to_openai_json_schema_format():
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body["response_format"])
        if body["response_format"]["type"] == "json_object":
            return httpx.Response(400, json={"error": "response_format.type json_object with schema unsupported"})
        return httpx.Response(200, json={"choices": [{"message": {"content": "{\"a\": 1}"}, "finish_reason": "stop"}],
                                         "usage": {"completion_tokens": 3}})

    llm = ChatOpenAICompatible(base_url="http://llm.invalid", model="m")
    llm._client = httpx.Client(transport=httpx.MockTransport(handler))
    from langchain_core.messages import HumanMessage

    assert json.loads(llm.bind(json_schema={"type": "object"}).invoke([HumanMessage("x")]).content) == {"a": 1}
    assert [f["type"] for f in seen] == ["json_object", "json_schema"]
    assert seen[1]["json_schema"]["schema"] == {"type": "object"}
    llm.bind(json_schema={"type": "object"}).invoke([HumanMessage("y")])
    assert seen[-1]["type"] == "json_schema"  # remembered: no second refused call


def test_unreachable_llm_server_is_a_clear_error():
    llm = ChatOpenAICompatible(base_url=f"http://127.0.0.1:{_free_port()}", retries=0, timeout_s=2)
    from langchain_core.messages import HumanMessage

    with pytest.raises(LLMError, match="did not answer"):
        llm.invoke([HumanMessage("hi")])


def test_service_on_remote_llm_and_chroma_server_same_data_as_embedded(llm_url, tmp_path):
    from emotion_agent.agent.memory import ConversationMemory
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.service.server import ServiceConfig, create_app
    from emotion_agent.service.security import ApiKeys
    from emotion_agent.tools.registry import build_experts

    store = tmp_path / "chroma"
    # a turn written by the embedded client first
    embedded = Settings.from_env(memory_dir=store, chroma_url=None, llm_url=None)
    ConversationMemory(embedded).remember(conversation_id="conv-x", turn_index=0, speaker="A",
                                          text="Written before the server started.", label="neutral", confidence=0.5)
    port = _free_port()
    chroma = _start_chroma(store, port)
    try:
        settings = Settings.from_env(memory_dir=tmp_path / "unused", chroma_url=f"http://127.0.0.1:{port}",
                                     llm_url=llm_url, llm="smollm2-135m")
        agent = EmotionAgent(settings, experts=build_experts(settings, only=["text_emotion"]))
        agent.explainer.max_tokens = 64
        assert type(agent.llm).__name__ == "ChatOpenAICompatible"
        cfg = ServiceConfig(keys=ApiKeys.parse(""), allow_no_auth=True, request_timeout_s=120)
        with TestClient(create_app(settings, agent, config=cfg)) as c:
            h = c.get("/healthz").json()
            assert h["memory"] == "ok" and h["memory_backend"] == "chroma-server" and h["llm"] == "remote"
            r = c.post("/v1/analyze", json={"text": "You fixed it in five minutes, thank you so much!",
                                            "conversation_id": "conv-x", "speaker": "B", "explain": True})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["turn_index"] == 1  # saw the embedded turn through the server
            assert body["explanation"] and body["explanation_source"] in ("llm", "template")
            if body["explanation_source"] == "template":  # the remote LLM answered, but not valid JSON in time
                assert not any("did not answer" in w for w in body["warnings"])
            turns = c.get("/v1/conversations/conv-x").json()["turns"]
            assert [t["text"] for t in turns][0] == "Written before the server started."
            w = c.post("/v1/why", json={"conversation_id": "conv-x", "question": "What made this label?"})
            assert w.status_code == 200 and w.json()["label"] == body["label"]
    finally:
        _stop(chroma)
    # the same data, read back embedded after the server is gone
    again = ConversationMemory(embedded).conversation("conv-x", with_records=True)
    assert [t["turn_index"] for t in again] == [0, 1]
    assert again[1]["label"] == body["label"] and again[1]["record"]["explanation"] == body["explanation"]


def test_chroma_server_down_gives_503_then_recovers(tmp_path):
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.service.server import ServiceConfig, create_app
    from emotion_agent.service.security import ApiKeys
    from emotion_agent.tools.registry import build_experts

    port = _free_port()
    chroma = _start_chroma(tmp_path / "c", port)
    try:
        settings = Settings.from_env(chroma_url=f"http://127.0.0.1:{port}", llm_url=None, llm="smollm2-135m")
        agent = EmotionAgent(settings, experts=build_experts(settings, only=["text_emotion"]))
        cfg = ServiceConfig(keys=ApiKeys.parse(""), allow_no_auth=True, request_timeout_s=60, warmup=False)
        with TestClient(create_app(settings, agent, config=cfg)) as c:
            assert c.post("/v1/analyze", json={"text": "first", "conversation_id": "k1"}).status_code == 200
            _stop(chroma)
            r = c.post("/v1/analyze", json={"text": "second", "conversation_id": "k1"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "memory_unavailable", r.text
            assert c.get("/healthz").status_code == 503
            # a turn without a conversation needs no memory and still works
            assert c.post("/v1/analyze", json={"text": "no memory needed"}).status_code == 200
            chroma = _start_chroma(tmp_path / "c", port)
            r = c.post("/v1/analyze", json={"text": "third", "conversation_id": "k1"})
            assert r.status_code == 200 and r.json()["turn_index"] == 1
    finally:
        _stop(chroma)


def test_eval_meld_two_workers_explain_on_the_llm_server(llm_url, data_dir, tmp_path):
    """``eval meld --workers 2 --explain`` against the shared server: both workers call it, every record explained."""
    from emotion_agent.evals.records import read_records
    from emotion_agent.evals.run_meld import run

    settings = Settings.from_env(memory_dir=tmp_path / "m", chroma_url=None, llm_url=llm_url, llm="smollm2-135m",
                                 data_dir=data_dir)
    out = tmp_path / "run"
    s = run("dev", limit=4, explain=True, workers=2, settings=settings, out=out,
            cache_path=tmp_path / "cache.sqlite", progress=False)
    recs = read_records(out / "records.jsonl")
    assert s["complete"] is True and len(recs) == len({r["key"] for r in recs}) == 4
    for r in recs:
        assert r["result"]["explanation"] and r["checks"] is not None
        assert not any("LLMError" in w for w in r["result"]["warnings"])  # the server answered every call
    assert json.loads((out / "sessions.jsonl").read_text())["workers"] == 2
