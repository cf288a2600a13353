"""Which chat model the agent uses: an OpenAI-compatible endpoint when configured, else llama.cpp in-process."""

from __future__ import annotations

import os

from langchain_core.language_models import BaseChatModel

from emotion_agent.agent.llm import ChatLlamaCpp
from emotion_agent.agent.llm_remote import ChatOpenAICompatible
from emotion_agent.tools.settings import Settings


def build_chat_model(settings: Settings, model: str | None = None) -> BaseChatModel:
    """The chat model for ``settings`` (``llm_url`` set: the remote endpoint; else the local GGUF)."""
    if settings.llm_url:
        return ChatOpenAICompatible(base_url=settings.llm_url, model=model or settings.llm,
                                    api_key=os.environ.get("EMOTION_AGENT_LLM_API_KEY", ""))
    return ChatLlamaCpp(model=model or settings.llm, settings=settings)
