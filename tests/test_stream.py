"""WS /v1/stream with the real Silero VAD and the real fast Whisper on a RAVDESS clip (TestClient websockets)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from emotion_agent.service.security import ApiKeys
from emotion_agent.service.server import ServiceConfig, create_app
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.stream_vad import StreamingVad, UtteranceSegmenter, SegmenterConfig

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef00"
A = {"Authorization": f"Bearer {ALICE}"}
CLIP = "speech/ravdess/03-01-05-01-01-02-17.flac"  # "Kids are talking by the door", angry


def pcm(audio: np.ndarray) -> bytes:
    """float32 → 16-bit little-endian PCM bytes."""
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def clip(data_dir: Path) -> np.ndarray:
    audio, sr = sf.read(str(data_dir / CLIP), dtype="float32")
    assert sr == 16000
    return audio


# ---- the VAD and the segmenter (no service) -----------------------------------------------------------
def test_streaming_vad_matches_the_whole_clip_call(clip):
    """Fed in 100 ms pieces, the VAD gives the probabilities one call on the whole clip gives."""
    from faster_whisper.vad import get_vad_model

    padded = np.pad(clip, (0, 512 - len(clip) % 512))
    whole = np.asarray(get_vad_model()(padded)).reshape(-1)
    vad = StreamingVad()
    pieces = np.concatenate([vad.feed(padded[i:i + 1600]) for i in range(0, len(padded), 1600)])
    assert np.allclose(pieces, whole, atol=1e-5)
    assert whole.max() > 0.9 and whole[:5].max() < 0.5  # speech inside, silence at the start


def test_segmenter_cuts_two_utterances_and_caps_length(clip):
    gap = np.zeros(16000, dtype=np.float32)
    seg = UtteranceSegmenter()
    got = [u for i in range(0, 3 * len(clip), 1600)
           for u in seg.feed(np.concatenate([clip, gap, clip, gap])[i:i + 1600])]
    assert [u.reason for u in got] == ["silence", "silence"]
    assert got[1].start_s > got[0].speech_end_s and all(1.0 < len(u.audio) / 16000 < 3.5 for u in got)
    capped = UtteranceSegmenter(SegmenterConfig(max_utterance_s=1.0))
    cut = capped.feed(clip) + capped.flush()
    assert cut[0].reason == "max_length" and len(cut[0].audio) / 16000 <= 1.05 and len(cut) >= 2
    assert UtteranceSegmenter().feed(np.zeros(32000, dtype=np.float32)) == []  # silence: nothing


# ---- the service --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.tools.registry import build_experts

    settings = Settings.from_env(memory_dir=tmp_path_factory.mktemp("mem"), chroma_url=None, llm_url=None,
                                 asr_mode="fast", stream_idle_timeout_s=1.5, stream_max_per_key=2,
                                 stream_max_utterance_s=3.0, stream_partial_every_s=0.8,
                                 stream_max_lead_s=3.0)
    return EmotionAgent(settings, experts=build_experts(settings, only=["transcribe", "speech_emotion",
                                                                          "text_emotion"]))


@pytest.fixture(scope="module")
def client(agent):
    cfg = ServiceConfig(keys=ApiKeys.parse(f"alice={ALICE},bob={BOB}"), request_timeout_s=60.0)
    with TestClient(create_app(agent.settings, agent, config=cfg)) as c:
        yield c


def events_until(ws, kinds: set[str]) -> list[dict]:
    """Messages up to (and including) the first whose type is in ``kinds``."""
    out = []
    while True:
        msg = json.loads(ws.receive_text())
        out.append(msg)
        if msg["type"] in kinds:
            return out


def play(ws, audio: np.ndarray, pace: float = 0.1) -> None:
    """Send ``audio`` in 100 ms frames at (about) real-time pace."""
    for i in range(0, len(audio), 1600):
        ws.send_bytes(pcm(audio[i:i + 1600]))
        time.sleep(pace)


@pytest.mark.slow
def test_stream_gives_partials_and_one_final_per_utterance_remembered(client, agent, clip):
    with client.websocket_connect("/v1/stream", headers=A) as ws:
        ws.send_text(json.dumps({"type": "start", "conversation_id": "call-1", "speaker": "caller"}))
        ready = json.loads(ws.receive_text())
        assert ready["type"] == "ready" and ready["limits"]["max_utterance_s"] == 3.0
        play(ws, np.concatenate([clip, np.zeros(8000, dtype=np.float32)]), pace=0.09)
        ws.send_text(json.dumps({"type": "end"}))
        events = events_until(ws, {"end", "error"})
    kinds = [e["type"] for e in events]
    assert kinds.count("final") == 1 and kinds[-1] == "end" and events[-1]["utterances"] == 1
    assert "speech_start" in kinds and kinds.index("speech_start") < kinds.index("final")
    final = next(e for e in events if e["type"] == "final")
    result = final["result"]
    assert result["conversation_id"] == "call-1" and result["speaker"] == "caller"
    assert result["label"] in {"neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"}
    heard = next(e["transcript"] for e in result["evidence"] if e["expert"] == "transcribe")
    assert "door" in heard.lower() and "talking" in heard.lower()
    assert {e["expert"] for e in result["evidence"]} >= {"transcribe", "speech_emotion", "text_emotion"}
    partials = [e for e in events if e["type"] == "partial"]
    assert partials and all(e["utterance"] == 0 for e in partials)  # ~2 s of speech, one partial per 0.8 s
    stored = agent.memory.conversation("alice~call-1", with_records=True)
    assert len(stored) == 1 and stored[0]["label"] == result["label"]


@pytest.mark.slow
def test_stream_refuses_bad_keys_and_too_many_streams(client):
    with client.websocket_connect("/v1/stream", headers={"X-API-Key": "not-a-key-0123456789"}) as ws:
        err = json.loads(ws.receive_text())
        assert err["close_code"] == 4401 and err["code"] == "unauthorized"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4401
    with client.websocket_connect("/v1/stream", headers=A) as w1, \
            client.websocket_connect("/v1/stream", headers=A) as w2, \
            client.websocket_connect("/v1/stream", headers=A) as w3:
        err = json.loads(w3.receive_text())
        assert err["close_code"] == 4429 and "EMOTION_AGENT_STREAM_MAX_PER_KEY" in err["message"]
        for w in (w1, w2):
            w.send_text(json.dumps({"type": "start"}))
            assert json.loads(w.receive_text())["type"] == "ready"
            w.send_text(json.dumps({"type": "end"}))
            assert events_until(w, {"end"})[-1]["utterances"] == 0
    with client.websocket_connect("/v1/stream", headers=A) as ws:  # the slots were given back
        ws.send_text(json.dumps({"type": "start", "sample_rate": 8000}))
        assert json.loads(ws.receive_text())["close_code"] == 4400


@pytest.mark.slow
def test_stream_limits_idle_and_too_fast(client, clip):
    with client.websocket_connect("/v1/stream", headers=A) as ws:
        ws.send_text(json.dumps({"type": "start", "conversation_id": "idle-1"}))
        json.loads(ws.receive_text())
        # speech, then nothing: the open utterance is still finalised before the idle close
        play(ws, clip[: int(2.2 * 16000)], pace=0.05)  # 2x real time: within the 2 s lead
        events = events_until(ws, {"error"})
        assert events[-1]["close_code"] == 4408 and "IDLE_TIMEOUT" in events[-1]["message"]
        assert [e["reason"] for e in events if e["type"] == "final"] == ["end_of_stream"]
    with client.websocket_connect("/v1/stream", headers=A) as ws:
        ws.send_text(json.dumps({"type": "start"}))
        json.loads(ws.receive_text())
        for _ in range(5):  # 5 x 1 s of audio at once: 3 s ahead of the clock is the limit
            ws.send_bytes(pcm(np.zeros(16000, dtype=np.float32)))
        err = events_until(ws, {"error"})[-1]
        assert err["close_code"] == 4413 and err["code"] == "too_fast"


@pytest.mark.slow
def test_a_long_utterance_is_cut_at_the_cap_and_goes_on(client, clip):
    speech = clip[int(1.0 * 16000):int(2.65 * 16000)]  # the spoken part only: no pause long enough to end it
    long = np.concatenate([speech] * 4 + [np.zeros(12000, dtype=np.float32)])  # ~6.6 s of speech
    with client.websocket_connect("/v1/stream", headers=A) as ws:
        ws.send_text(json.dumps({"type": "start", "conversation_id": "long-1", "options": {"partials": False}}))
        json.loads(ws.receive_text())
        play(ws, long, pace=0.06)
        ws.send_text(json.dumps({"type": "end"}))
        events = events_until(ws, {"end", "error"})
    finals = [e for e in events if e["type"] == "final"]
    assert finals[0]["reason"] == "max_length" and finals[0]["duration_s"] <= 3.05
    assert len(finals) >= 2 and events[-1]["type"] == "end"
    assert any(e["type"] == "warning" and e["code"] == "utterance_cut" for e in events)
    assert not [e for e in events if e["type"] == "partial"]  # partials off by option


@pytest.mark.slow
def test_a_vanishing_client_does_not_break_another_stream(client, agent, clip):
    bob = {"X-API-Key": BOB}
    with client.websocket_connect("/v1/stream", headers=bob) as ws:
        ws.send_text(json.dumps({"type": "start", "conversation_id": "stay-1"}))
        json.loads(ws.receive_text())
        play(ws, clip[:16000], pace=0.05)
        with client.websocket_connect("/v1/stream", headers=bob) as gone:
            gone.send_text(json.dumps({"type": "start", "conversation_id": "gone-1"}))
            json.loads(gone.receive_text())
            play(gone, clip[: int(2.0 * 16000)], pace=0.05)  # mid-utterance, then the socket goes away
        play(ws, np.concatenate([clip[16000:], np.zeros(8000, dtype=np.float32)]), pace=0.06)
        ws.send_text(json.dumps({"type": "end"}))
        events = events_until(ws, {"end", "error"})
    assert [e["type"] for e in events].count("final") == 1 and events[-1]["type"] == "end"
    assert len(agent.memory.conversation("bob~stay-1")) == 1
    assert agent.memory.conversation("bob~gone-1") == []  # its open utterance was dropped, nothing half-stored


@pytest.fixture(scope="module")
def live_url(agent):
    """The same app served by uvicorn on a free port (a real socket, for the CLI client)."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServiceConfig(keys=ApiKeys.parse(f"alice={ALICE},bob={BOB}"), request_timeout_s=60.0)
    server = uvicorn.Server(uvicorn.Config(create_app(agent.settings, agent, config=cfg), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    yield f"ws://127.0.0.1:{port}/v1/stream"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_the_cli_client_plays_a_file_and_prints_the_final(live_url, data_dir):
    from typer.testing import CliRunner

    from emotion_agent.cli import app

    out = CliRunner().invoke(app, ["stream", str(data_dir / CLIP), "--url", live_url, "--key", ALICE,
                                   "-c", "cli-1", "--speed", "2", "--json"])
    assert out.exit_code == 0, out.output
    events = [json.loads(line) for line in out.output.splitlines() if line.startswith("{")]
    assert [e["type"] for e in events][0] == "ready" and events[-1] == {**events[-1], "type": "end", "utterances": 1}
    final = next(e for e in events if e["type"] == "final")
    assert "door" in next(e["transcript"] for e in final["result"]["evidence"] if e["expert"] == "transcribe").lower()
    bad = CliRunner().invoke(app, ["stream", str(data_dir / CLIP), "--url", live_url, "--key", "wrong-key-0123456789"])
    assert bad.exit_code != 0 and "4401" in str(bad.exception) + bad.output
