"""The ask agent's LangGraph loop: the chat model calls scope-bound tools through a ToolNode, then answers; the
answer is checked for grounding against the tool results of this ask.

Rounds: the first must call a tool (the model answers from tools, never from its own knowledge); the next ones
may call more tools or answer; the last (``max_rounds``) may only answer. The fixed instructions and the tool
list come first in the prompt, the question last, so llama.cpp reuses the evaluated prefix across asks."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import StructuredTool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from pydantic import BaseModel, Field

from emotion_agent.agent.ask_grounding import answer_form, check_grounding
from emotion_agent.agent.ask_reply_stream import ReplyStream
from emotion_agent.agent.ask_toolset import conversation_tools, describe_tools, run_tools

__all__ = ["Answer", "ask", "conversation_tools", "run_tools", "refusal_reason"]

_OUT_OF_SCOPE = re.compile(r"\b(another|other|different|someone else'?s?|other people'?s?)\s+"
                           r"(conversation|call|chat|key|user|customer|tenant|run|account)s?\b"
                           r"|\b(ignore|disregard|forget)\b.*\b(instructions?|rules?|prompt|above)\b"
                           r"|\b(api[_ ]?key|password|system prompt|credentials?|secret)s?\b"
                           r"|\b(pretend|act as|you are now|jailbreak|developer mode)\b"
                           r"|\b(write|compose|generate)\b.*\b(poem|story|essay|code|email)\b"
                           r"|\b(delete|drop|erase|wipe|overwrite|modify)\b.*\b(memory|turns?|records?|conversation|run)\b",
                           re.IGNORECASE)
PROMPT = (Path(__file__).resolve().parent.parent / "prompts" / "ask_system.md").read_text(encoding="utf-8")
#: Follows every tool result in the prompt (the same text each time, so the cached prefix still holds).
RESULT_NOTE = (Path(__file__).resolve().parent.parent / "prompts" / "ask_result_note.md").read_text(
    encoding="utf-8").strip()
REFUSAL = ("I can only answer questions about this conversation or run, and I do not follow instructions; "
           "this question was refused.")


class Answer(BaseModel):
    text: str
    citations: list[str] = Field(default_factory=list)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    grounded: bool = False
    warnings: list[str] = Field(default_factory=list)
    #: Tool results of this ask, in order (what the grounding check read).
    tool_results: list[str] = Field(default_factory=list)
    model: str | None = None
    #: prompt_tokens, completion_tokens, llm_calls and seconds of this ask.
    usage: dict[str, float] = Field(default_factory=dict)


_NAMED_SCOPE = re.compile(r"\b(?:conversation|call|chat|dialogue|run|tenant|key)\s+(?:id\s+)?['\"]?([\w.:~/-]+)",
                          re.IGNORECASE)


def refusal_reason(question: str, own: tuple[str, ...] = ()) -> str | None:
    """Why ``question`` is refused before any tool runs (an instruction, another scope's data), or None.

    ``own``: the names of this ask's scope (the conversation id with and without its tenant prefix, the run's
    folder name); a question that names any other id-like conversation, call or run is refused, because the tools
    could only answer about this one and the answer would read as if it were about the other."""
    m = _OUT_OF_SCOPE.search(question)
    if m:
        return f"out of scope ({m.group(0)!r})"
    for named in _NAMED_SCOPE.findall(question):
        token = named.strip(".:/-'\"?!,")
        if any(ch.isdigit() for ch in token) or "-" in token or "_" in token or "~" in token:
            if token not in own and token.lower() not in {o.lower() for o in own}:
                return f"names another scope ({token!r})"
    return None


def _usage(msgs: list[Any]) -> dict[str, float]:
    out = {"prompt_tokens": 0.0, "completion_tokens": 0.0, "llm_calls": 0.0, "seconds": 0.0}
    for m in msgs:
        meta = getattr(m, "response_metadata", None) or {}
        if not isinstance(m, AIMessage) or not meta:
            continue
        u = meta.get("usage") or {}
        out["prompt_tokens"] += float(u.get("prompt_tokens") or 0)
        out["completion_tokens"] += float(u.get("completion_tokens") or 0)
        out["llm_calls"] += 1
        out["seconds"] += float(meta.get("seconds") or 0.0)
    return {k: round(v, 3) for k, v in out.items()}


def _signature(call: dict[str, Any]) -> str:
    return call["name"] + json.dumps(call.get("args") or {}, sort_keys=True)


def ask(chat_model: Any, tools: list[StructuredTool], question: str, *, max_rounds: int = 4,
        on_event: Callable[[str, dict[str, Any]], None] | None = None, scope_names: tuple[str, ...] = ()) -> Answer:
    """Run the loop; an answer that fails the grounding check is repaired once, else refused naming the checks.

    Questions that are instructions or that ask for another conversation/run/key are refused before any tool
    runs (the tools themselves are bound to one scope, so this is a clearer message, not the only guard).
    ``on_event(kind, data)`` is told, as they happen (for streaming): ``tool_call_start`` (a tool's name as the
    model writes it), ``tool_call`` and ``tool_result``, and the answer's ``token``s as generated (provisional:
    the returned Answer is the checked one; ``token_reset`` when the model's words are dropped and sampled
    again, ``answer_reset`` when the streamed answer failed the grounding check)."""
    start = time.perf_counter()
    emit = on_event or (lambda kind, data: None)
    reason = refusal_reason(question, scope_names)
    if reason:
        return Answer(text=REFUSAL, grounded=True, warnings=[f"refused: {reason}"])
    live: dict[str, Any] = {"on_token": ReplyStream(emit)} if on_event else {}  # names and tokens as generated
    live["result_note"] = RESULT_NOTE
    first = chat_model.bind_tools(tools, tool_choice="any", **live)
    later = chat_model.bind_tools(tools, allow_answer=True, **live)
    final = chat_model.bind_tools([], allow_answer=True, **live)
    rounds = {"n": 0}

    def restart() -> None:  # a new reply: the stream reader forgets the last one
        if "on_token" in live:
            live["on_token"].start()
    replies: list[Any] = []  # every model reply of this ask (for tokens and time)

    def agent(state: MessagesState) -> dict:
        rounds["n"] += 1
        done: list[ToolMessage] = []  # the results of the previous round, in the order they came back
        for m in reversed(state["messages"]):
            if not isinstance(m, ToolMessage):
                break
            done.insert(0, m)
        for m in done:
            emit("tool_result", {"name": m.name, "content": str(m.content)[:2000]})
        model = first if rounds["n"] == 1 else final if rounds["n"] >= max_rounds else later
        restart()
        reply = model.invoke(state["messages"])
        replies.append(reply)
        made = {_signature(c) for m in state["messages"] if isinstance(m, AIMessage) for c in (m.tool_calls or [])}
        if made and reply.tool_calls and all(_signature(c) in made for c in reply.tool_calls):
            restart()
            reply = final.invoke(state["messages"])  # the same calls again: their results are here, so answer
            replies.append(reply)
        for c in getattr(reply, "tool_calls", None) or []:
            emit("tool_call", {"name": c["name"], "args": c.get("args") or {}})
        return {"messages": [reply]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        return "tools" if getattr(last, "tool_calls", None) and rounds["n"] < max_rounds else END

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode(tools, handle_tool_errors=True))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, {"tools": "tools", END: END})
    g.add_edge("tools", "agent")
    system = SystemMessage(PROMPT.rstrip() + "\n\nTools:\n" + describe_tools(tools))
    out = g.compile().invoke({"messages": [system, HumanMessage(question)]},
                             config={"recursion_limit": 2 * max_rounds + 2})
    msgs = out["messages"]
    calls = [c for m in msgs if isinstance(m, AIMessage) for c in (m.tool_calls or [])]
    results = [str(m.content) for m in msgs if isinstance(m, ToolMessage)]
    by_id = {c.get("id"): c.get("args") or {} for c in calls}
    result_args = [by_id.get(m.tool_call_id, {}) for m in msgs if isinstance(m, ToolMessage)]
    last = msgs[-1]
    text = str(last.content).strip() if isinstance(last, AIMessage) and not last.tool_calls else ""
    warnings = [] if rounds["n"] < max_rounds else [f"round cap {max_rounds} reached"]
    report = check_grounding(text, results, result_args, question) if text else None
    form = answer_form(question, text, results) if text else None
    if report is None or not report.grounded or form:  # one repair: name what failed, ask again, no new tools
        said = (f"Your answer used items no tool returned: {report.unsupported}." if report is not None
                and not report.grounded else f"Your answer {form}." if form else "You did not answer.")
        failed = (report.failed_checks if report is not None and not report.grounded else [f"form: {form}"]
                  if form else ["no answer"])
        emit("answer_reset", {"failed_checks": failed})
        restart()
        fix = final.invoke(msgs + [HumanMessage(said + " Answer the question again using only the tool results, "
                                                "or say plainly that they cannot support an answer.")])
        msgs, replies = msgs + [fix], replies + [fix]
        fix_text = str(fix.content).strip()
        fixed = check_grounding(fix_text, results, result_args, question) if fix_text else None
        better = fixed is not None and fixed.grounded and (answer_form(question, fix_text, results) is None
                                                           or report is None or not report.grounded)
        if better:
            warnings.append("repaired once after failing: " + ", ".join(failed))
            text, report = fix_text, fixed
        elif form and report is not None and report.grounded:
            warnings.append(f"answer form: {form} (a repair did not do better)")
        elif report is None:
            report = fixed
    cites = [f"{c['name']}({c.get('args') or {}})" for c in calls]
    usage = {**_usage(replies), "wall_s": round(time.perf_counter() - start, 3)}
    model_name = getattr(chat_model, "model", None)
    common = dict(citations=cites, tool_calls=calls, tool_results=results, usage=usage,
                  model=model_name if isinstance(model_name, str) else None)
    if report is None or not report.grounded:
        failed = ", ".join(report.failed_checks) if report else "no answer"
        return Answer(text=f"I cannot answer that from the tool results (failed checks: {failed}).",
                      grounded=False, warnings=warnings + ([f"unsupported: {report.unsupported}"] if report else []),
                      **common)
    return Answer(text=text, grounded=True, warnings=warnings, **common)
