"""LLM over an OpenAI-compatible ``/v1/chat/completions`` endpoint (llama.cpp's server, vLLM, ...).

:class:`ChatOpenAICompatible` takes the same keyword arguments as the in-process
:class:`agent.llm.ChatLlamaCpp`, so the graph, the planner and the explainer do not care which one
they talk to:

* ``json_schema=`` → ``response_format={"type": "json_object", "schema": ...}`` (what llama.cpp's
  servers accept); if the server refuses that (HTTP 400/422), the OpenAI form
  ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` is used from then on.
* ``tools=`` / ``tool_choice=`` (via :meth:`bind_tools`) → the same tool-call JSON schema the local
  model is constrained by, parsed into LangChain tool calls — this works on any server that can
  constrain JSON, whether or not its chat template knows native tool calling.
* ``max_tokens=`` per call.

Many service replicas can share one model server this way.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, PrivateAttr, SecretStr

from emotion_agent.agent.llm import ChatLlamaCpp, LLMError, call_options, parse_reply, to_openai_messages


class ChatOpenAICompatible(BaseChatModel):
    """LangChain chat model over an OpenAI-compatible HTTP endpoint (httpx, sync)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_url: str
    model: str = "default"
    api_key: SecretStr | str = ""
    temperature: float = 0.0
    max_tokens: int = 256
    timeout_s: float = 60.0
    retries: int = 1
    last_stats: dict[str, float] = {}
    _client: httpx.Client | None = PrivateAttr(default=None)
    _format: str = PrivateAttr(default="json_object")  # or "json_schema" once the server refused the first
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "openai-compatible"

    @property
    def endpoint(self) -> str:
        """The chat-completions URL (``/v1`` added when missing)."""
        base = self.base_url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        return base + "/chat/completions"

    @property
    def client(self) -> httpx.Client:
        """The HTTP client (with the bearer key), created on first use."""
        with self._lock:
            if self._client is None:
                key = self.api_key.get_secret_value() if isinstance(self.api_key, SecretStr) else self.api_key
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout_s, connect=5.0))
            return self._client

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self._format == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                resp = self.client.post(self.endpoint, json=body)
            except httpx.TransportError as exc:  # connection refused/reset, timeout
                last = exc
                if attempt < self.retries:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise LLMError(f"LLM server at {self.base_url} did not answer: {type(exc).__name__}") from exc
            if resp.status_code in (400, 422) and "response_format" in body and self._format == "json_object":
                # Server does not take llama.cpp's json_object+schema: switch to OpenAI's json_schema form.
                self._format = "json_schema"
                body = {**body, "response_format": self._response_format(body["response_format"]["schema"])}
                continue
            if resp.status_code >= 500 and attempt < self.retries:
                last = LLMError(f"LLM server error {resp.status_code}")
                time.sleep(0.2 * (attempt + 1))
                continue
            if resp.status_code != 200:
                raise LLMError(f"LLM server at {self.base_url} answered HTTP {resp.status_code}: "
                               f"{resp.text[:200]}")
            try:
                return resp.json()
            except ValueError as exc:
                raise LLMError(f"LLM server at {self.base_url} sent invalid JSON") from exc
        raise LLMError(f"LLM server at {self.base_url} failed: {last}")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        tools, schema, max_tokens = call_options(kwargs, self.max_tokens)
        body: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(messages),
                                "temperature": self.temperature, "max_tokens": max_tokens, "seed": 0}
        if stop:
            body["stop"] = stop
        if schema is not None:
            body["response_format"] = self._response_format(schema)
        start = time.perf_counter()
        data = self._post(body)
        elapsed = time.perf_counter() - start
        try:
            text = data["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError("LLM server answer has no choices[0].message") from exc
        usage = data.get("usage") or {}
        self.last_stats = {"seconds": elapsed, "prompt_tokens": usage.get("prompt_tokens", 0),
                           "completion_tokens": usage.get("completion_tokens", 0)}
        message = parse_reply(text, tools) if tools or kwargs.get("allow_answer") else AIMessage(content=text)
        message.response_metadata = {"usage": usage, "seconds": elapsed, "model": self.model,
                                     "finish_reason": data["choices"][0].get("finish_reason")}
        return ChatResult(generations=[ChatGeneration(message=message)])

    # Same tool binding and structured output as the local model (they only build kwargs).
    bind_tools = ChatLlamaCpp.bind_tools
    with_structured_output = ChatLlamaCpp.with_structured_output

    def close(self) -> None:
        """Close the HTTP client, if one was opened."""
        if self._client is not None:
            self._client.close()
            self._client = None
