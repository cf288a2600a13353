"""A process that loaded the LLM exits without a traceback (llama_cpp's ``__del__`` at shutdown)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

TEST_LLM = os.environ.get("EMOTION_AGENT_TEST_LLM", "qwen2.5-coder-0.5b")

SCRIPT = textwrap.dedent(
    """
    import sys
    from emotion_agent.agent.llm import load_llama
    from emotion_agent.tools.settings import Settings
    llm = load_llama(sys.argv[1], Settings.from_env())
    print(llm.create_chat_completion([{"role": "user", "content": "Say hi."}], max_tokens=4)["choices"][0]
          ["message"]["content"] is not None)
    """
)


@pytest.mark.slow
@pytest.mark.llm
def test_exit_after_loading_the_llm_prints_no_traceback() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, TEST_LLM], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("True")
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def test_close_loaded_models_closes_and_forgets_each_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from emotion_agent.agent import llm

    closed: list[str] = []

    class Model:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    monkeypatch.setattr(llm, "_LOADED", {("a", 1, 1): Model("a"), ("b", 1, 1): Model("b")})
    llm.close_loaded_models()
    assert sorted(closed) == ["a", "b"] and llm._LOADED == {}
