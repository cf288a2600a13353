"""The agent's graph: recall → plan → tools (↺ plan) → fuse → adjudicate → explain → remember.

``recall`` loads the conversation so far (the text expert uses it as context); ``plan`` picks
experts — ``auto``: every expert whose input is present, by stage (transcription before text);
``llm``: the model chooses by tool calls, capped at ``settings.max_tool_rounds`` rounds with
duplicate calls dropped; ``tools`` is LangGraph's ToolNode (a round's calls run in parallel);
``collect`` turns tool results into evidence; ``fuse`` computes the label from the evidence
(never from LLM text); ``adjudicate`` (off by default) lets the LLM pick between the fused
top-2 labels when their margin is small — its answer must be exactly one of those two, else the
fused label stays; ``explain`` has the LLM justify the label under a JSON schema whose citations
can only be ids of real evidence; ``remember`` stores the turn in Chroma.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command

from agent import prompts
from agent.fusion import fuse
from agent.memory import MemoryRecall
from agent.state import AgentState, InputState
from tools.base import PriorTurn, TurnInput, as_tool
from tools.evidence import EmotionEvidence, FusedResult

if TYPE_CHECKING:
    from agent.runtime import EmotionAgent


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 2)


def effective_turn(state: AgentState) -> TurnInput:
    """The turn plus what experts learned so far (the transcript)."""
    turn = state["turn"]
    for ev in state.get("evidence", []):
        transcript = ev.extra.get("transcript")
        if isinstance(transcript, str) and transcript.strip() and not turn.transcript:
            turn = turn.model_copy(update={"transcript": transcript})
    return turn


def build_graph(agent: "EmotionAgent") -> Any:
    settings = agent.settings
    tools = {name: as_tool(expert) for name, expert in agent.experts.items()}
    tool_node = ToolNode(list(tools.values()), handle_tool_errors=True)

    def allowed(state: AgentState) -> list[str]:
        only = state["options"].experts
        return [n for n in agent.experts if only is None or n in only]

    # ---- nodes ---------------------------------------------------------------------------
    def recall(state: AgentState) -> dict[str, Any]:
        start = time.perf_counter()
        turn, opts = state["turn"], state["options"]
        memory = agent.memory if opts.use_memory else None
        rec = MemoryRecall()
        update: dict[str, Any] = {}
        if memory is not None and turn.conversation_id:
            if turn.turn_index is None:
                update["turn_index"] = memory.next_turn_index(turn.conversation_id)
            rec = memory.recall(turn.conversation_id, turn.spoken_text(), previous=settings.context_turns)
            if not turn.context:
                update["context"] = [PriorTurn(speaker=r.speaker, text=r.text, label=r.label) for r in rec.previous]
        if not opts.use_memory and turn.context:
            update["context"] = []
        out: dict[str, Any] = {"recall": rec, "timings": {"recall": _ms(start)}, "tool_rounds": 0}
        if update:
            out["turn"] = turn.model_copy(update=update)
        return out

    def auto_calls(state: AgentState) -> list[str]:
        turn = effective_turn(state)
        done = {e.expert for e in state.get("evidence", [])}
        pending = [n for n in allowed(state) if n not in done and agent.experts[n].accepts(turn)]
        if not pending:
            return []
        stage = min(agent.experts[n].stage for n in pending)
        return [n for n in pending if agent.experts[n].stage == stage]

    def llm_calls(state: AgentState) -> list[str]:
        turn = effective_turn(state)
        done = sorted({e.expert for e in state.get("evidence", [])})
        inputs = [k for k, present in (("text", turn.text), ("transcript", turn.transcript),
                                       ("audio", turn.audio_path), ("image", turn.image_path),
                                       ("video", turn.video_path)) if present]
        # Offer only experts that have input in this turn: calling one without input can't help.
        names = [n for n in allowed(state) if n not in done and agent.experts[n].accepts(turn)]
        if not names:
            return []
        # The first round must call something (small models otherwise answer with nothing).
        model = agent.llm.bind_tools([tools[n] for n in names], tool_choice="any" if not done else "auto")
        msg = model.invoke([
            SystemMessage(prompts.load("planner_system")),
            HumanMessage(prompts.render("planner_user", inputs=", ".join(inputs) or "none",
                                        done=", ".join(done) or "none", available=", ".join(names))),
        ])
        return [c["name"] for c in getattr(msg, "tool_calls", [])]

    def plan(state: AgentState) -> Command[Literal["tools", "fuse"]]:
        start = time.perf_counter()
        opts = state["options"]
        rounds = state.get("tool_rounds", 0)
        key = f"plan_{rounds}"
        if rounds >= settings.max_tool_rounds:
            return Command(goto="fuse", update={"timings": {key: _ms(start)}})
        warnings: list[str] = []
        if opts.planner == "llm":
            try:
                names = llm_calls(state)
            except Exception as exc:  # the LLM failing must not lose the turn
                warnings.append(f"LLM planner failed ({type(exc).__name__}); used the auto planner")
                names = auto_calls(state)
        else:
            names = auto_calls(state)
        done = {e.expert for e in state.get("evidence", [])}
        names = list(dict.fromkeys(n for n in names if n not in done and n in allowed(state)))
        if not names:
            return Command(goto="fuse", update={"timings": {key: _ms(start)}})
        calls = [{"name": n, "args": {}, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "tool_call"} for n in names]
        update: dict[str, Any] = {"messages": [AIMessage(content="", tool_calls=calls)], "tool_rounds": rounds + 1,
                                  "timings": {key: _ms(start)}}
        if warnings:
            update["turn"] = state["turn"].model_copy(update={"warnings": [*state["turn"].warnings, *warnings]})
        return Command(goto="tools", update=update)

    def collect(state: AgentState) -> dict[str, Any]:
        have = {e.id for e in state.get("evidence", [])}
        new: list[EmotionEvidence] = []
        timings: dict[str, float] = {}
        for m in reversed(state.get("messages", [])):
            if not isinstance(m, ToolMessage):
                break
            ev = m.artifact if isinstance(m.artifact, EmotionEvidence) else None
            if ev is None:
                name = m.name or "tool"
                ev = EmotionEvidence.uninformative(modality="text", expert=name, model_id=name,
                                                   warning=f"{name} failed: {str(m.content)[:200]}")
            if ev.id not in have:
                new.append(ev)
                timings[f"expert_{ev.expert}"] = round(ev.latency_ms, 2)
        return {"evidence": list(reversed(new)), "timings": timings}

    def fuse_node(state: AgentState) -> dict[str, Any]:
        start = time.perf_counter()
        turn, opts = state["turn"], state["options"]
        evidence = state.get("evidence", [])
        rec = state.get("recall") or MemoryRecall()
        f = fuse(evidence, rec, policy=opts.fusion, turn=turn)
        result = FusedResult(
            label=f.label, confidence=f.confidence, distribution=f.distribution, evidence=evidence,
            contributions=f.contributions, fusion_policy=f.policy,
            warnings=[*turn.warnings, *f.warnings], conversation_id=turn.conversation_id,
            speaker=turn.speaker, turn_index=turn.turn_index,
            memory_used=[t.id for t in (*rec.previous, *rec.similar)],
        )
        return {"result": result, "timings": {"fuse": _ms(start)}}

    def adjudicate(state: AgentState) -> dict[str, Any]:
        start = time.perf_counter()
        opts, result = state["options"], state["result"]
        if not opts.adjudicate:
            return {"timings": {"adjudicate": 0.0}}
        adj = agent.adjudicator.choose(effective_turn(state), result, state.get("recall") or MemoryRecall(),
                                       threshold=opts.adjudicate_margin)
        return {"result": agent.adjudicator.apply(result, adj), "timings": {"adjudicate": _ms(start)}}

    def explain(state: AgentState) -> dict[str, Any]:
        start = time.perf_counter()
        result = state["result"]
        if not state["options"].explain:
            return {"timings": {"explain": 0.0}}
        turn = effective_turn(state)
        try:
            text, cited = agent.explainer.explain(turn, result, state.get("recall") or MemoryRecall())
            source = "llm"
        except Exception as exc:  # LLM trouble: keep the label, explain from a template, say so
            text, cited = agent.explainer.fallback(result)
            source = "template"
            result = result.model_copy(update={"warnings": [*result.warnings,
                                                            f"LLM explanation failed ({type(exc).__name__}); "
                                                            "template explanation used"]})
        result = result.model_copy(update={"explanation": text, "cited_evidence_ids": cited,
                                           "explanation_source": source})
        return {"result": result, "timings": {"explain": _ms(start)}}

    def remember(state: AgentState) -> dict[str, Any]:
        start = time.perf_counter()
        turn, opts, result = state["turn"], state["options"], state["result"]
        timings = {**state.get("timings", {}), "remember": 0.0}
        if opts.remember and agent.memory is not None and turn.conversation_id:
            agent.memory.remember(
                conversation_id=turn.conversation_id, turn_index=turn.turn_index or 0, speaker=turn.speaker,
                text=turn.spoken_text() or "", label=result.label, confidence=result.confidence,
                record=result.model_dump(mode="json", exclude={"timings_ms"}),
            )
            timings["remember"] = _ms(start)
        return {"result": result.model_copy(update={"timings_ms": timings}), "timings": {"remember": timings["remember"]}}

    builder = StateGraph(AgentState, input_schema=InputState)
    builder.add_node("recall", recall)
    builder.add_node("plan", plan)
    builder.add_node("tools", tool_node)
    builder.add_node("collect", collect)
    builder.add_node("fuse", fuse_node)
    builder.add_node("adjudicate", adjudicate)
    builder.add_node("explain", explain)
    builder.add_node("remember", remember)
    builder.add_edge(START, "recall")
    builder.add_edge("recall", "plan")
    builder.add_edge("tools", "collect")
    builder.add_edge("collect", "plan")
    builder.add_edge("fuse", "adjudicate")
    builder.add_edge("adjudicate", "explain")
    builder.add_edge("explain", "remember")
    builder.add_edge("remember", END)
    return builder.compile(name="emotion-agent")

