"""Shared fixtures. Tests run offline: any attempt to reach a model hub fails fast."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from emotion_agent.tools.settings import Settings  # noqa: E402

TEST_LLM = os.environ.get("EMOTION_AGENT_TEST_LLM", "qwen2.5-coder-0.5b")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Real cache (assembled models are shared), but a private memory store per test."""
    return Settings.from_env(memory_dir=tmp_path / "memory", llm=TEST_LLM, chroma_url=None, llm_url=None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Settings.from_env().data_dir
    if not (d / "meld" / "dev_sent_emo.csv").is_file():
        pytest.skip(f"shared data not found at {d} (set EMOTION_AGENT_DATA_DIR)")
    return d
