"""The ask agent's LangGraph loop: the chat model calls scope-bound tools through a ToolNode, at most
``max_rounds`` times, then the answer is checked for grounding against the tool results of this ask."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import StructuredTool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from pydantic import BaseModel, Field

from emotion_agent.agent.ask_grounding import check_grounding
from emotion_agent.agent.ask_memory_tools import ConversationTools, SimilarQuery, TurnIndex, TurnRange
from emotion_agent.agent.ask_run_tools import Label, RunTools, TurnFilter

_OUT_OF_SCOPE = re.compile(r"\b(another|other|different)\s+(conversation|call|key|user|customer|run)s?\b"
                           r"|\b(ignore|disregard)\b.*\b(instructions?|rules?|prompt)\b"
                           r"|\b(api[_ ]?key|password|system prompt)\b", re.IGNORECASE)
PROMPT = (Path(__file__).resolve().parent.parent / "prompts" / "ask_system.md").read_text(encoding="utf-8")


class Answer(BaseModel):
    text: str
    citations: list[str] = Field(default_factory=list)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    grounded: bool = False
    warnings: list[str] = Field(default_factory=list)


class _Label(BaseModel):
    label: Label


def run_tools(tools: RunTools) -> list[StructuredTool]:
    """The run tools as LangChain tools; the run is bound here, never an argument."""
    def filter_turns(**kw: Any) -> dict:
        return tools.filter_turns(TurnFilter(**kw)).model_dump()
    return [
        StructuredTool.from_function(filter_turns, name="filter_turns", args_schema=TurnFilter,
                                     description="Turns of this run matching gold/pred/modality/disagreement/confidence."),
        StructuredTool.from_function(lambda: tools.metrics().model_dump(), name="metrics",
                                     description="Accuracy and per-class recall of this run."),
        StructuredTool.from_function(lambda: tools.confusion(), name="confusion",
                                     description="Counts of gold label -> predicted label in this run."),
        StructuredTool.from_function(lambda label: tools.class_errors(label).model_dump(), name="class_errors",
                                     args_schema=_Label, description="How often one gold label was missed, and as what."),
    ]


def conversation_tools(tools: ConversationTools) -> list[StructuredTool]:
    """The conversation tools as LangChain tools; the conversation is bound here, never an argument."""
    def turns(**kw: Any) -> dict:
        return tools.turns(TurnRange(**kw)).model_dump()

    def turn_evidence(**kw: Any) -> dict:
        got = tools.turn_evidence(TurnIndex(**kw))
        return got if isinstance(got, dict) else got.model_dump()

    def similar_turns(**kw: Any) -> dict:
        return tools.similar(SimilarQuery(**kw)).model_dump()
    return [
        StructuredTool.from_function(turns, name="turns", args_schema=TurnRange,
                                     description="Stored turns of this conversation with their labels."),
        StructuredTool.from_function(turn_evidence, name="turn_evidence", args_schema=TurnIndex,
                                     description="One turn's evidence: each modality's label, confidence, share."),
        StructuredTool.from_function(similar_turns, name="similar_turns", args_schema=SimilarQuery,
                                     description="Past turns of this conversation most similar to some words."),
        StructuredTool.from_function(lambda: tools.summary().model_dump(), name="summary",
                                     description="Label trajectory and turning points (which modality drove each)."),
    ]


def ask(chat_model: Any, tools: list[StructuredTool], question: str, *, max_rounds: int = 4,
        on_event: Callable[[str, dict[str, Any]], None] | None = None) -> Answer:
    """Run the loop; an answer that fails the grounding check is refused, naming the failed checks.

    Questions that are instructions or that ask for another conversation/run/key are refused before any tool
    runs (the tools themselves are bound to one scope, so this is a clearer message, not the only guard).
    ``on_event(kind, data)`` is told each ``tool_call`` and ``tool_result`` as they happen (for streaming)."""
    if _OUT_OF_SCOPE.search(question):
        return Answer(text="I can only answer questions about this conversation or run, and I do not follow "
                      "instructions; this question was refused.", grounded=True, warnings=["refused: out of scope"])
    model = chat_model.bind_tools(tools)
    rounds = {"n": 0}

    emit = on_event or (lambda kind, data: None)

    def agent(state: MessagesState) -> dict:
        rounds["n"] += 1
        done: list[ToolMessage] = []  # the results of the previous round, in the order they came back
        for m in reversed(state["messages"]):
            if not isinstance(m, ToolMessage):
                break
            done.insert(0, m)
        for m in done:
            emit("tool_result", {"name": m.name, "content": str(m.content)[:2000]})
        reply = model.invoke(state["messages"])
        for c in getattr(reply, "tool_calls", None) or []:
            emit("tool_call", {"name": c["name"], "args": c.get("args") or {}})
        return {"messages": [reply]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        return "tools" if getattr(last, "tool_calls", None) and rounds["n"] < max_rounds else END

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode(tools))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, {"tools": "tools", END: END})
    g.add_edge("tools", "agent")
    out = g.compile().invoke({"messages": [SystemMessage(PROMPT), HumanMessage(question)]})
    msgs = out["messages"]
    calls = [c for m in msgs if isinstance(m, AIMessage) for c in (m.tool_calls or [])]
    results = [m.content for m in msgs if isinstance(m, ToolMessage)]
    text = str(msgs[-1].content) if isinstance(msgs[-1], AIMessage) else ""
    warnings = [] if rounds["n"] < max_rounds else [f"round cap {max_rounds} reached"]
    report = check_grounding(text, results)
    if not report.grounded:  # one repair: name the unsupported items and ask again, without new tools
        fix = chat_model.invoke(msgs + [HumanMessage("Your answer used items no tool returned: "
                                                     f"{report.unsupported}. Answer again using only the tool results.")])
        if check_grounding(str(fix.content), results).grounded:
            text, report = str(fix.content), check_grounding(str(fix.content), results)
            warnings.append("repaired once after failing: " + ", ".join(check_grounding(
                str(msgs[-1].content), results).failed_checks))
    cites = [f"{c['name']}({c.get('args') or {}})" for c in calls]
    if not report.grounded:
        return Answer(text="I cannot answer that from the tool results (failed checks: "
                      + ", ".join(report.failed_checks) + ").", citations=cites, tool_calls=calls,
                      grounded=False, warnings=warnings + [f"unsupported: {report.unsupported}"])
    return Answer(text=text, citations=cites, tool_calls=calls, grounded=True, warnings=warnings)
