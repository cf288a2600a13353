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


#: The ask agent's model when ``ask_llm`` is "auto": the strongest packaged model that calls tools reliably.
ASK_DEFAULT, ASK_FALLBACK = "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"


def ask_model_name(settings: Settings) -> tuple[str, list[str]]:
    """(model spec, warnings) for the ask agent: ``ask_llm``, or with "auto" the 1.5B when its packages are
    installed (assembled on first use) and the 0.5B, with a warning, when they are not."""
    if settings.ask_llm != "auto":
        return settings.ask_llm, []
    if settings.llm_url:
        return settings.llm, []
    from emotion_agent.tools.assets import REGISTRY, package_dir
    asset = REGISTRY[ASK_DEFAULT]
    if all(package_dir(m) is not None for f in asset.files for m, _ in f.parts) \
            or (settings.models_dir / ASK_DEFAULT / asset.main).is_file():
        return ASK_DEFAULT, []
    return ASK_FALLBACK, [f"{ASK_DEFAULT} is not installed ({asset.install}); answering with {ASK_FALLBACK}, "
                          "which picks tools less reliably"]


def build_ask_model(settings: Settings) -> tuple[BaseChatModel, list[str]]:
    """The ask agent's chat model (its own context size, greedy, short answers) and any warnings."""
    name, warnings = ask_model_name(settings)
    ask_settings = settings.replace(llm_ctx=settings.ask_ctx, llm_threads=settings.ask_threads)
    if settings.llm_url:
        return ChatOpenAICompatible(base_url=settings.llm_url, model=name, max_tokens=200,
                                    api_key=os.environ.get("EMOTION_AGENT_LLM_API_KEY", "")), warnings
    return ChatLlamaCpp(model=name, settings=ask_settings, max_tokens=160, grammar="fallback"), warnings
