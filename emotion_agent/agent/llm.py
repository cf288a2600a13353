"""LLM backend: llama.cpp (in process) behind a LangChain chat model.

* :data:`LLM_REGISTRY` — packaged GGUF chat models (assembled by :mod:`tools.assets`);
  any local ``.gguf`` path or ``hf:<repo_id>:<filename>`` hub id works too.
* :class:`ChatLlamaCpp` — a small ``BaseChatModel`` over ``llama_cpp.Llama``: the model's own
  chat template, tool calls produced under a JSON-schema grammar (so even small models emit
  well-formed calls), ``with_structured_output`` constrained by the schema, and an optional RAM
  prompt cache (``EMOTION_AGENT_LLM_PROMPT_CACHE_MB``, off by default; see :func:`sized_ram_cache`).

Speed and memory of each model on this project's machine: docs/results.md and docs/measurements.md.
"""

from __future__ import annotations

import atexit
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, PrivateAttr

from emotion_agent.agent.llm_replies import _JsonEnd, free_reply_invalid, unfenced  # noqa: F401 (re-exported)
from emotion_agent.tools.assets import AssetError, ensure
from emotion_agent.tools.settings import Settings


@dataclass(frozen=True)
class LLMSpec:
    """A packaged LLM: its name, the asset holding its weights and a one-line note."""

    name: str
    asset: str
    note: str


LLM_REGISTRY: dict[str, LLMSpec] = {
    "qwen2.5-coder-1.5b": LLMSpec("qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b",
                                  "best quality of the packaged models; the largest and slowest"),
    "qwen2.5-coder-0.5b": LLMSpec("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b",
                                  "default: the LLM for opt-in explanations, adjudication and ask"),
    "smollm2-135m": LLMSpec("smollm2-135m", "smollm2-135m",
                            "fastest and smallest; weak at tool choice; fine for smoke tests"),
}


class LLMError(RuntimeError):
    """The LLM could not be loaded or did not answer; message is user-facing."""


def resolve_gguf(spec: str, settings: Settings) -> Path | str:
    """Registry name → assembled file; ``.gguf`` path → itself; ``hf:repo:file`` → kept for download."""
    if spec in LLM_REGISTRY:
        return ensure(LLM_REGISTRY[spec].asset, settings)
    if spec.startswith("hf:"):
        return spec
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    raise AssetError(
        f"LLM '{spec}' is not a known model ({', '.join(LLM_REGISTRY)}), an existing .gguf file, "
        "or a hub id written hf:<repo_id>:<filename>"
    )


_LOADED: dict[tuple[str, int, int], Any] = {}
_LOAD_LOCK = threading.Lock()


def close_loaded_models() -> None:
    """Close every loaded ``Llama`` while the interpreter is still whole.

    Left to the garbage collector at interpreter shutdown, ``Llama.__del__`` runs after llama_cpp's module
    globals are set to ``None`` and prints ``TypeError: 'NoneType' object is not callable``. Registered
    with :mod:`atexit` on the first load, after ``llama_cpp`` is imported, so it runs before any exit
    handler of llama_cpp's own.
    """
    with _LOAD_LOCK:
        while _LOADED:
            _, llm = _LOADED.popitem()
            close = getattr(llm, "close", None)
            if callable(close):
                close()


def load_llama(spec: str, settings: Settings) -> Any:
    """Load (once per process) a ``llama_cpp.Llama`` for ``spec`` with a RAM prompt cache."""
    key = (spec, settings.llm_threads, settings.llm_ctx)
    with _LOAD_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        try:
            import llama_cpp
        except ImportError as exc:  # pragma: no cover - install problem
            raise LLMError("llama-cpp-python is not installed; run `make setup`") from exc
        if not _LOADED:
            atexit.unregister(close_loaded_models)
            atexit.register(close_loaded_models)
        target = resolve_gguf(spec, settings)
        common = dict(n_ctx=settings.llm_ctx, n_threads=settings.llm_threads,
                      n_threads_batch=settings.llm_threads, verbose=False, seed=0)
        if isinstance(target, str) and target.startswith("hf:"):
            _, repo, filename = target.split(":", 2)
            llm = llama_cpp.Llama.from_pretrained(repo_id=repo, filename=filename, **common)
        else:
            llm = llama_cpp.Llama(model_path=str(target), **common)
        if settings.llm_prompt_cache_mb > 0:
            llm.set_cache(sized_ram_cache(settings.llm_prompt_cache_mb))
        _LOADED[key] = llm
        return llm


def sized_ram_cache(capacity_mb: int) -> Any:
    """A llama.cpp prompt cache whose size counts what it really holds.

    ``LlamaRAMCache`` counts only the KV-state bytes of an entry, but each entry also keeps the logits
    (n_batch x vocab float32, hundreds of MB for a 150k vocabulary), so a cache sized by KV bytes alone
    grew a service far past its limit with every explanation. Off by default: llama.cpp already reuses the KV
    cache for the prefix shared with the previous call (our fixed instructions); the RAM cache only
    helps when different prompts alternate (the ``llm`` planner and the explainer).
    """
    import llama_cpp

    class SizedRAMCache(llama_cpp.LlamaRAMCache):
        """``LlamaRAMCache`` whose size also counts each entry's logits and input ids."""

        true_size = True

        @property
        def cache_size(self) -> int:
            """Bytes held: state, logits and input ids of every entry."""
            return sum(int(s.llama_state_size) + s.scores.nbytes + s.input_ids.nbytes
                       for s in self.cache_state.values())

    return SizedRAMCache(capacity_bytes=int(capacity_mb) << 20)


def to_openai_messages(messages: Sequence[BaseMessage], result_note: str = "") -> list[dict[str, Any]]:
    """LangChain messages → OpenAI-style dicts the chat template understands; ``result_note`` follows every
    tool result (the ask agent's reminder of the reply format: without it a free model answers a result in
    plain words)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        content = m.content if isinstance(m.content, str) else json.dumps(m.content)
        if isinstance(m, SystemMessage):
            out.append({"role": "system", "content": content})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": content})
        elif isinstance(m, AIMessage):
            text = content
            if m.tool_calls:
                calls = [{"name": c["name"], "args": c["args"]} for c in m.tool_calls]
                text = (text + "\n" if text else "") + json.dumps({"tool_calls": calls})
            out.append({"role": "assistant", "content": text})
        elif isinstance(m, ToolMessage):
            # Templates differ in tool-role support; a user turn works with every template.
            note = f"\n{result_note}" if result_note else ""
            out.append({"role": "user", "content": f"Result of {m.name or 'tool'}: {content}{note}"})
        else:
            out.append({"role": "user", "content": content})
    return out


def tool_call_schema(tools: Sequence[dict[str, Any]], allow_none: bool) -> dict[str, Any]:
    """JSON schema for ``{"tool_calls": [...]}`` where each call is one of ``tools`` with its args."""
    variants = []
    for t in tools:
        fn = t["function"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        params = {**params, "additionalProperties": False}
        variants.append({
            "type": "object",
            "properties": {"name": {"type": "string", "enum": [fn["name"]]}, "args": params},
            "required": ["name", "args"],
        })
    return {
        "type": "object",
        "properties": {"tool_calls": {"type": "array", "items": {"anyOf": variants},
                                      "minItems": 0 if allow_none else 1, "maxItems": max(1, len(tools))}},
        "required": ["tool_calls"],
    }


def call_options(kwargs: dict[str, Any], default_max_tokens: int) -> tuple[list[dict[str, Any]] | None,
                                                                          dict[str, Any] | None, int]:
    """(tools, JSON schema to constrain the answer, max_tokens) from a chat model call's kwargs.

    With tools bound, the schema is the tool-call schema (at least one call when ``tool_choice`` is
    "any"/"required"); otherwise it is the ``json_schema`` given, if any.
    """
    tools: list[dict[str, Any]] | None = kwargs.get("tools")
    schema: dict[str, Any] | None = kwargs.get("json_schema")
    if kwargs.get("allow_answer"):  # the ask agent: one or more tool calls, or a final answer
        schema = {"anyOf": [tool_call_schema(tools, allow_none=False), ANSWER_SCHEMA]} if tools else ANSWER_SCHEMA
    elif tools:
        schema = tool_call_schema(tools, allow_none=kwargs.get("tool_choice", "auto") not in ("any", "required"))
    return tools, schema, int(kwargs.get("max_tokens", default_max_tokens))


#: A final answer in plain words (``bind_tools(..., allow_answer=True)``).
ANSWER_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}},
                                 "required": ["answer"]}
_PARTIAL_ANSWER = re.compile(r'^\s*\{\s*"answer"\s*:\s*"((?:[^"\\]|\\.)*)', re.DOTALL)


def parse_reply(text: str, tools: list[dict[str, Any]] | None) -> AIMessage:
    """A constrained reply as a message: ``{"answer": ...}`` → its text (a reply cut at ``max_tokens`` keeps
    the words it had); ``{"tool_calls": [...]}`` → LangChain tool calls (unknown names and repeats dropped)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        cut = _PARTIAL_ANSWER.match(text)
        if cut:
            return AIMessage(content=json.loads('"' + cut.group(1).rstrip("\\") + '"').strip())
        data = None
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        return AIMessage(content=data["answer"].strip())
    return ChatLlamaCpp._to_message(text, tools or [])


class ChatLlamaCpp(BaseChatModel):
    """LangChain chat model over an in-process llama.cpp model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str = "qwen2.5-coder-0.5b"
    settings: Settings | None = None
    temperature: float = 0.0
    max_tokens: int = 256
    #: "always": replies with a schema are sampled under its grammar; "fallback": unconstrained first, and
    #: under the grammar only when the free reply is not a valid tool call / answer (the ask agent).
    grammar: str = "always"
    _llama: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    last_stats: dict[str, float] = {}

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-local"

    @property
    def llama(self) -> Any:
        """The ``llama_cpp.Llama`` model, loaded on first use."""
        if self._llama is None:
            self._llama = load_llama(self.model, self.settings or Settings.from_env())
        return self._llama

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        tools, schema, max_tokens = call_options(kwargs, self.max_tokens)
        on_token: Callable[[str | None], None] | None = kwargs.get("on_token")
        chat = to_openai_messages(messages, str(kwargs.get("result_note") or ""))
        request: dict[str, Any] = dict(messages=chat, temperature=self.temperature, max_tokens=max_tokens,
                                       stop=stop, seed=0)
        start = time.perf_counter()
        text, usage, constrained = "", {}, schema is not None
        if schema is not None and self.grammar == "fallback" and (tools or kwargs.get("allow_answer")):
            # unconstrained first (a JSON-schema grammar over many tools slows every token several times);
            # the schema's grammar only when the free reply is not a valid call/answer
            text, usage = self._complete(request, on_token, json_reply=True)
            text = unfenced(text)
            constrained = free_reply_invalid(text, tools, kwargs) is not None
            if constrained and on_token is not None:
                on_token(None)  # tells a streaming reader that what it got so far is dropped
        if constrained:
            request["response_format"] = {"type": "json_object", "schema": schema}
            text, extra = self._complete(request, on_token)
            usage = {k: usage.get(k, 0) + extra.get(k, 0) for k in ("prompt_tokens", "completion_tokens")}
        elapsed = time.perf_counter() - start
        self.last_stats = {"seconds": elapsed, "prompt_tokens": usage.get("prompt_tokens", 0),
                           "completion_tokens": usage.get("completion_tokens", 0)}
        message = parse_reply(text, tools) if tools or kwargs.get("allow_answer") else AIMessage(content=text)
        message.response_metadata = {"usage": usage, "seconds": elapsed, "model": self.model,
                                     "grammar": bool(request.get("response_format"))}
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _complete(self, request: dict[str, Any], on_token: Callable[[str | None], None] | None,
                  json_reply: bool = False) -> tuple[str, dict]:
        """One chat completion: (text, usage); with ``on_token`` streamed, each piece told as it comes; with
        ``json_reply`` streamed and stopped once the first JSON object closes (a free model may go on)."""
        with self._lock:
            try:
                if on_token is None and not json_reply:
                    resp = self.llama.create_chat_completion(**request)
                    return resp["choices"][0]["message"].get("content") or "", dict(resp.get("usage") or {})
                parts: list[str] = []
                end = _JsonEnd() if json_reply else None
                chunks = self.llama.create_chat_completion(**request, stream=True)
                for chunk in chunks:
                    piece = (chunk["choices"][0].get("delta") or {}).get("content") or ""
                    if piece:
                        parts.append(piece)
                        if on_token is not None:
                            on_token(piece)
                        if end is not None and end.feed(piece):
                            break
                close = getattr(chunks, "close", None)
                if callable(close):
                    close()  # stops the generation
            except ValueError as exc:  # e.g. prompt longer than the context window
                raise LLMError(f"LLM call failed: {exc}") from exc
        text = "".join(parts)
        # a streamed completion reports no usage: count the tokens here (prompt = the context before the reply)
        done = len(self.llama.tokenize(text.encode("utf-8"), add_bos=False)) if text else 0
        return text, {"prompt_tokens": max(0, int(self.llama.n_tokens) - done), "completion_tokens": done}

    @staticmethod
    def _to_message(text: str, tools: list[dict[str, Any]]) -> AIMessage:
        known = {t["function"]["name"] for t in tools}
        try:
            data = json.loads(text)
            raw_calls = data.get("tool_calls", []) if isinstance(data, dict) else []
        except json.JSONDecodeError:
            raw_calls = []
        calls, seen = [], set()
        for c in raw_calls:
            if not isinstance(c, dict) or c.get("name") not in known:
                continue
            args = c.get("args") if isinstance(c.get("args"), dict) else {}
            sig = (c["name"], json.dumps(args, sort_keys=True))
            if sig in seen:  # the same call twice in one round is one call
                continue
            seen.add(sig)
            calls.append({"name": c["name"], "args": args, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "tool_call"})
        return AIMessage(content="", tool_calls=calls)

    def bind_tools(self, tools: Sequence[BaseTool | dict[str, Any] | type | Callable[..., Any]],
                   *, tool_choice: str | None = None, **kwargs: Any) -> Runnable:
        """Bind ``tools`` in OpenAI format; calls are then sampled under the tool-call schema (with
        ``allow_answer=True``: tool calls or ``{"answer": text}``; with no tools, the answer only)."""
        formatted = []
        for t in tools:
            if isinstance(t, BaseTool):
                # Only the arguments the model may set (injected state is hidden from it).
                formatted.append(convert_to_openai_tool(t.tool_call_schema))
                formatted[-1]["function"]["name"] = t.name
                formatted[-1]["function"]["description"] = t.description
            else:
                formatted.append(convert_to_openai_tool(t))
        return self.bind(tools=formatted, tool_choice=tool_choice or "auto", **kwargs)

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any) -> Runnable:
        """A runnable whose answer is constrained to ``schema`` and parsed into it."""
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise TypeError("with_structured_output takes a pydantic model class")
        json_schema = schema.model_json_schema()

        def parse(msg: AIMessage) -> BaseModel:
            """Validate the answer as ``schema``; LLMError when it does not match."""
            try:
                return schema.model_validate_json(msg.content if isinstance(msg.content, str) else "")
            except Exception as exc:
                raise LLMError(f"LLM output did not match {schema.__name__}: {exc}") from exc

        return self.bind(json_schema=json_schema, **kwargs) | RunnableLambda(parse)
