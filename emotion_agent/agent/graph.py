"""The agent's graph: the one pipeline a turn goes through (CLI, HTTP service and eval alike).

    recall → plan ⇄ run_experts → fuse → [adjudicate] → [explain] → remember

Nodes are module-level functions. The long-lived resources (experts, memory, chat model, explainer,
adjudicator, settings) come from LangGraph's runtime context (:class:`AgentContext`), never from
closures or globals. ``plan`` loops with ``run_experts`` until no expert with input is left (or the
round cap is reached); adjudicate and explain sit behind conditional edges, so a turn that needs
neither never passes through them.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from emotion_agent.agent.fusion import fuse
from emotion_agent.agent.recall import MemoryRecall
from emotion_agent.agent.state import AgentState, InputState
from emotion_agent.tools import prompts
from emotion_agent.tools.base import Expert, PriorTurn, TurnInput, as_tool
from emotion_agent.tools.evidence import EmotionEvidence, FusedResult
from emotion_agent.tools.settings import Settings

if TYPE_CHECKING:
    from emotion_agent.agent.adjudicate import Adjudicator
    from emotion_agent.agent.explain import Explainer
    from emotion_agent.agent.recall import MemoryStore

log = logging.getLogger(__name__)


class PlannerError(RuntimeError):
    """The LLM planner could not choose experts (model failure or an unusable answer)."""


@dataclass
class AgentContext:
    """Long-lived resources the nodes use; given to every ``invoke`` as LangGraph's runtime context."""

    settings: Settings
    experts: dict[str, Expert]
    memory: "MemoryStore | None"
    explainer: "Explainer"
    adjudicator: "Adjudicator"
    #: Returns the chat model, building it on first use (only the LLM planner calls it here).
    chat_model: Callable[[], Any]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 2)


def effective_turn(state: AgentState) -> TurnInput:
    """The turn plus what experts learned so far (the transcript ``run_experts`` wrote to the state)."""
    turn, heard = state["turn"], state.get("transcript")
    return turn.model_copy(update={"transcript": heard}) if heard and not turn.transcript else turn


def allowed_experts(state: AgentState, ctx: AgentContext) -> list[str]:
    """Experts this turn may use (all, or the ablation's subset)."""
    only = state["options"].experts
    return [n for n in ctx.experts if only is None or n in only]


def auto_choice(state: AgentState, ctx: AgentContext) -> list[str]:
    """Deterministic planner: every expert that has input and has not run, lowest stage first."""
    turn = effective_turn(state)
    done = {e.expert for e in state.get("evidence", [])}
    pending = [n for n in allowed_experts(state, ctx) if n not in done and ctx.experts[n].accepts(turn)]
    if not pending:
        return []
    stage = min(ctx.experts[n].stage for n in pending)
    return [n for n in pending if ctx.experts[n].stage == stage]


def llm_choice(state: AgentState, ctx: AgentContext) -> list[str]:
    """The LLM picks experts as tool calls among those with input; raises :class:`PlannerError` on failure."""
    turn = effective_turn(state)
    done = sorted({e.expert for e in state.get("evidence", [])})
    inputs = [k for k, present in (("text", turn.text), ("transcript", turn.transcript),
                                   ("audio", turn.audio_path), ("image", turn.image_path),
                                   ("video", turn.video_path)) if present]
    # Offer only experts that have input in this turn: calling one without input can't help.
    names = [n for n in allowed_experts(state, ctx) if n not in done and ctx.experts[n].accepts(turn)]
    if not names:
        return []
    try:
        # The first round must call something (small models otherwise answer with nothing).
        model = ctx.chat_model().bind_tools([as_tool(ctx.experts[n]) for n in names],
                                            tool_choice="any" if not done else "auto")
        msg = model.invoke([
            SystemMessage(prompts.load("planner_system")),
            HumanMessage(prompts.render("planner_user", inputs=", ".join(inputs) or "none",
                                        done=", ".join(done) or "none", available=", ".join(names))),
        ])
    except Exception as exc:  # any backend failure is the planner's failure, reported as such
        raise PlannerError(f"{type(exc).__name__}: {str(exc)[:160]}") from exc
    chosen = [c["name"] for c in getattr(msg, "tool_calls", []) or []]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise PlannerError(f"LLM asked for unavailable experts {unknown}")
    if not chosen and not done:
        raise PlannerError("LLM called no expert")
    return chosen


# ---- nodes -------------------------------------------------------------------------------------
def recall(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Node: number the turn and fetch the conversation's previous and similar turns from memory."""
    start = time.perf_counter()
    ctx = runtime.context
    turn, opts = state["turn"], state["options"]
    memory = ctx.memory if opts.use_memory else None
    rec = MemoryRecall()
    update: dict[str, Any] = {}
    if memory is not None and turn.conversation_id:
        if turn.turn_index is None:
            update["turn_index"] = memory.next_turn_index(turn.conversation_id)
        rec = memory.recall(turn.conversation_id, turn.spoken_text(), previous=ctx.settings.context_turns)
        if not turn.context:
            update["context"] = [PriorTurn(speaker=r.speaker, text=r.text, label=r.label) for r in rec.previous]
    if not opts.use_memory and turn.context:
        update["context"] = []
    out: dict[str, Any] = {"recall": rec, "timings": {"recall": _ms(start)}, "tool_rounds": 0}
    if update:
        out["turn"] = turn.model_copy(update=update)
    return out


def plan(state: AgentState, runtime: Runtime[AgentContext]) -> Command[Literal["run_experts", "fuse"]]:
    """Node: choose the next experts (auto or LLM planner); go fuse when none is left or the cap is hit."""
    start = time.perf_counter()
    ctx = runtime.context
    rounds = state.get("tool_rounds", 0)
    key = f"plan_{rounds}"
    if rounds >= ctx.settings.max_tool_rounds:
        return Command(goto="fuse", update={"timings": {key: _ms(start)}})
    warnings: list[str] = []
    if state["options"].planner == "llm":
        try:
            names = llm_choice(state, ctx)
        except PlannerError as exc:
            log.warning("LLM planner failed: %s", exc)
            warnings.append(f"LLM planner failed ({exc}); the automatic planner chose the experts")
            names = auto_choice(state, ctx)
    else:
        names = auto_choice(state, ctx)
    done = {e.expert for e in state.get("evidence", [])}
    allowed = allowed_experts(state, ctx)
    names = list(dict.fromkeys(n for n in names if n not in done and n in allowed))
    update: dict[str, Any] = {"timings": {key: _ms(start)}}
    if warnings:
        update["turn"] = state["turn"].model_copy(update={"warnings": [*state["turn"].warnings, *warnings]})
    if not names:
        return Command(goto="fuse", update=update)
    return Command(goto="run_experts", update={**update, "planned": names, "tool_rounds": rounds + 1})


def run_experts(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Node: run the planned experts (in parallel when several); each returns evidence of its own modality."""
    ctx = runtime.context
    turn = effective_turn(state)
    names = state.get("planned", [])

    def one(name: str) -> EmotionEvidence:
        """One expert's evidence for the turn."""
        return ctx.experts[name].analyze(turn)  # Expert.analyze turns its own failures into evidence

    if len(names) > 1:
        with ThreadPoolExecutor(len(names)) as pool:
            evidence = list(pool.map(one, names))
    else:
        evidence = [one(n) for n in names]
    update: dict[str, Any] = {"evidence": evidence, "planned": [],
                              "timings": {f"expert_{e.expert}": round(e.latency_ms, 2) for e in evidence}}
    heard = next((e.transcript.text for e in evidence if e.transcript is not None and e.transcript.text.strip()), None)
    if heard and not turn.transcript:
        update["transcript"] = heard
    return update


def fuse_node(state: AgentState) -> dict[str, Any]:
    """Node: combine the evidence (and the recalled context) into one labelled ``FusedResult``."""
    start = time.perf_counter()
    turn, opts = state["turn"], state["options"]
    evidence = state.get("evidence", [])
    rec = state.get("recall") or MemoryRecall()
    f = fuse(evidence, rec, policy=opts.fusion, turn=turn)
    result = FusedResult(
        label=f.label, confidence=f.confidence, distribution=f.distribution, evidence=evidence,
        contributions=f.contributions, fusion_policy=f.policy, disagreement=f.disagreement,
        warnings=[*turn.warnings, *f.warnings], conversation_id=turn.conversation_id,
        speaker=turn.speaker, turn_index=turn.turn_index,
        memory_used=[t.id for t in (*rec.previous, *rec.similar)],
        text_mode=next((e.text_mode for e in evidence if e.text_mode is not None), None),
    )
    return {"result": result, "timings": {"fuse": _ms(start)}}


def route_after_fuse(state: AgentState) -> Literal["adjudicate", "explain", "remember"]:
    """Edge: adjudicate when asked, else explain when asked, else remember."""
    opts = state["options"]
    if opts.adjudicate:
        return "adjudicate"
    return "explain" if opts.explain else "remember"


def adjudicate(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Node: on a close call, let the LLM pick between the fused top-2 labels (validated; failure keeps the label)."""
    start = time.perf_counter()
    ctx = runtime.context
    opts, result = state["options"], state["result"]
    adj = ctx.adjudicator.choose(effective_turn(state), result, state.get("recall") or MemoryRecall(),
                                 threshold=opts.adjudicate_margin)
    return {"result": ctx.adjudicator.apply(result, adj), "timings": {"adjudicate": _ms(start)}}


def route_after_adjudicate(state: AgentState) -> Literal["explain", "remember"]:
    """Edge: explain when asked, else remember."""
    return "explain" if state["options"].explain else "remember"


def explain(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Node: write the cited explanation (LLM prose checked against the evidence, or the composer's text)."""
    start = time.perf_counter()
    ctx = runtime.context
    turn = effective_turn(state)
    result = with_attributions(ctx, turn, state["result"])
    attributed = time.perf_counter()
    result = ctx.explainer.explain_result(turn, result, state.get("recall") or MemoryRecall())
    return {"result": result, "timings": {"attributions": round((attributed - start) * 1000, 2),
                                          "explain": _ms(attributed)}}


def with_attributions(ctx: AgentContext, turn: TurnInput, result: FusedResult) -> FusedResult:
    """The result with word attributions (occlusion toward the fused label) on its text evidence, when the
    text expert can give them; computed here, not per label, because only explanations need them."""
    expert = ctx.experts.get("text_emotion")
    attribute = getattr(expert, "attributions", None)
    if attribute is None:
        return result
    evidence = []
    for e in result.evidence:
        if e.expert == "text_emotion" and e.confidence > 0 and e.attributions is None:
            try:
                weights = attribute(turn, result.label)
            except Exception as exc:  # attributions are an extra: their failure must not lose the explanation
                log.warning("word attributions failed: %s", exc)
                weights = []
            e = e.model_copy(update={"attributions": list(weights), "attributions_toward": result.label})
        evidence.append(e)
    return result.model_copy(update={"evidence": evidence})


def remember(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Node: store the turn and its result in conversation memory; stamp the timings on the result."""
    start = time.perf_counter()
    ctx = runtime.context
    turn, opts, result = effective_turn(state), state["options"], state["result"]  # with the transcript, if any
    timings = {**state.get("timings", {}), "remember": 0.0}
    if opts.remember and ctx.memory is not None and turn.conversation_id:
        ctx.memory.remember(
            conversation_id=turn.conversation_id, turn_index=turn.turn_index or 0, speaker=turn.speaker,
            text=turn.spoken_text() or "", label=result.label, confidence=result.confidence,
            record=result.model_dump(mode="json", exclude={"timings_ms"}),
        )
        timings["remember"] = _ms(start)
    return {"result": result.model_copy(update={"timings_ms": timings}), "timings": {"remember": timings["remember"]}}


def build_graph(*, checkpointer: Any = None, pause_before_explain: bool = False) -> Any:
    """Compile the graph (no resources bound: they arrive per invoke as the runtime context).

    With ``pause_before_explain`` (and a checkpointer) a run stops after the label is fused, so a caller
    can answer with the label first and resume the same run for the explanation (the HTTP service does).
    """
    builder = StateGraph(AgentState, context_schema=AgentContext, input_schema=InputState)
    builder.add_node("recall", recall)
    builder.add_node("plan", plan)
    builder.add_node("run_experts", run_experts)
    builder.add_node("fuse", fuse_node)
    builder.add_node("adjudicate", adjudicate)
    builder.add_node("explain", explain)
    builder.add_node("remember", remember)
    builder.add_edge(START, "recall")
    builder.add_edge("recall", "plan")
    builder.add_edge("run_experts", "plan")
    builder.add_conditional_edges("fuse", route_after_fuse)
    builder.add_conditional_edges("adjudicate", route_after_adjudicate)
    builder.add_edge("explain", "remember")
    builder.add_edge("remember", END)
    return builder.compile(name="emotion-agent", checkpointer=checkpointer,
                           interrupt_before=["explain"] if pause_before_explain else None)


graph = build_graph()
