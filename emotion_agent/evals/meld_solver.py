"""The solver of a MELD run: how one utterance becomes a record (the user's agent graph behind the expert
cache, with an :class:`EvalMemory`), and how many utterances are analysed at once on worker threads."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotion_agent.agent.inputs import InputError, make_turn
from emotion_agent.evals.meld import Utterance, media_for
from emotion_agent.evals.meld_config import MODALITY_EXPERTS, RunConfig, RunConfigError
from emotion_agent.evals.meld_memory import EvalMemory, conv_id
from emotion_agent.evals.records import append_record
from emotion_agent.evals.scorers import explanation_checks
from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.settings import Settings

if TYPE_CHECKING:
    from emotion_agent.evals.expert_cache import ExpertCache


def build_agent(settings: Settings, cfg: RunConfig, utts: list[Utterance], cache: "ExpertCache") -> Any:
    """The run's agent: its experts behind ``cache`` (the caller owns and flushes it), with an :class:`EvalMemory`."""
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.evals.expert_cache import wrap_experts
    from emotion_agent.tools.registry import build_experts

    wanted = [n for m in cfg.modalities for n in MODALITY_EXPERTS.get(m, ())]
    if "text" not in cfg.modalities and ("audio" in cfg.modalities):
        wanted.append("text_emotion")  # the transcript goes to the text expert
    experts = wrap_experts(build_experts(settings, only=wanted), cache)
    return EmotionAgent(settings, memory=EvalMemory(utts, experts.get("text_emotion"), settings,
                                                    settings.context_turns),
                        experts=experts)


class MeldSolver:
    """A MELD run's solver built in another process (an actor of ``--engine ray``): the run's agent behind its
    own connection to the expert cache (shared with the other workers), with an :class:`EvalMemory` over the whole split, so a record made
    there is the one the local engine makes. Pickles as its arguments; ``close`` flushes the cache."""

    def __init__(self, settings: Settings, cfg: RunConfig, cache_path: Path | None = None) -> None:
        from emotion_agent.evals.expert_cache import ExpertCache
        from emotion_agent.evals.meld import load_split

        utts = load_split(cfg.split, settings.data_dir)
        self.settings, self.cfg = settings, cfg
        # Several processes share the file: each write commits at once, so no one holds the write lock.
        self.cache = ExpertCache(cache_path or settings.cache_dir / "expert_cache.sqlite", commit_every=1)
        self.agent = build_agent(settings, cfg, utts, self.cache)

    def __call__(self, u: Utterance) -> dict[str, Any]:
        return make_record(u, self.cfg, self.agent, self.settings)

    def close(self) -> None:
        self.cache.flush()


def dialogue_units(todo: list[Utterance]) -> list[list[Utterance]]:
    """``todo`` cut into whole dialogues (each in its order), for an engine that spreads units over workers."""
    units: dict[int, list[Utterance]] = {}
    for u in todo:
        units.setdefault(u.dialogue_id, []).append(u)
    return [sorted(us, key=lambda u: u.position) for us in units.values()]


def make_record(u: Utterance, cfg: RunConfig, agent: Any, settings: Settings) -> dict[str, Any]:
    """Analyse ``u`` with the run's options and return its record (result, checks, timing)."""
    media = media_for(u, settings.data_dir) if set(cfg.modalities) & {"audio", "vision"} else \
        {"audio": None, "video": None, "image": None, "warnings": []}
    audio = media["audio"] if "audio" in cfg.modalities else None
    image = media["image"] if "vision" in cfg.modalities else None
    video = media["video"] if set(cfg.modalities) & {"audio", "vision"} else None
    text = u.text if "text" in cfg.modalities else None
    mem: EvalMemory = agent.memory
    mem.current = u
    past, future = mem.dialogue(u)
    try:
        turn = make_turn(text=text, audio=audio, image=image, video=video, conversation_id=conv_id(u),
                         speaker=u.speaker, turn_index=u.position, settings=settings, context=past, future=future)
    except InputError as exc:  # one unusable utterance must not stop the run: it is scored as what the agent
        # emits for "nothing to analyse" (neutral, zero confidence) and the record says why
        turn = TurnInput(conversation_id=conv_id(u), speaker=u.speaker, turn_index=u.position,
                         warnings=[f"input refused: {exc}"])
    allowed = [n for m in cfg.modalities for n in MODALITY_EXPERTS.get(m, ())]
    if text is None and audio is not None:
        allowed.append("text_emotion")
    start = time.perf_counter()
    result = agent.analyze(turn, explain=cfg.explain, remember=False, use_memory=True, fusion=cfg.fusion,
                           adjudicate=cfg.adjudicate, adjudicate_margin=cfg.adjudicate_margin,
                           experts=[n for n in allowed if n in agent.experts], planner="auto")
    wall_ms = round((time.perf_counter() - start) * 1000.0, 2)
    res = result.model_dump(mode="json")
    inputs = {"text": text is not None, "audio": str(audio) if audio else None,
              "video": str(video) if video else None, "image": str(image) if image else None,
              "context_turns": len(mem.last_recall.previous)}
    available = [m for m, ok in (("text", text is not None), ("audio", bool(audio or video)),
                                 ("vision", bool(image or video))) if ok]
    used = sorted({e.modality for e in result.evidence if e.confidence > 0})
    return {
        "key": u.key, "split": u.split, "dialogue_id": u.dialogue_id, "utterance_id": u.utterance_id,
        "position": u.position, "speaker": u.speaker, "text": u.text, "gold": u.emotion,
        "gold_sentiment": u.sentiment, "inputs": inputs, "modalities_available": available,
        "modalities_used": used, "media_warnings": media["warnings"],
        "context": [{"turn_index": t.turn_index, "speaker": t.speaker, "text": t.text, "label": t.label,
                     "confidence": t.confidence} for t in mem.last_recall.previous],
        "cache": {e.expert: e.extra.get("cache") for e in result.evidence},
        "label": result.label, "confidence": result.confidence, "correct": result.label == u.emotion,
        "result": res, "checks": explanation_checks(res), "wall_ms": wall_ms,
    }


#: Most utterances analysed at once (``--workers``); more only adds contention on a shared server.
MAX_WORKERS = 32


def check_workers(workers: Any) -> int:
    """``workers`` if it is a whole number in 1..:data:`MAX_WORKERS`, else a one-line :class:`RunConfigError`."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RunConfigError(f"workers must be a whole number >= 1 (got {workers!r})")
    if workers > MAX_WORKERS:
        raise RunConfigError(f"workers={workers} is too many (at most {MAX_WORKERS}); the experts and the LLM "
                             "server are shared, so more threads only queue behind them")
    return workers


def worker_agents(agent: Any, n: int, settings: Settings, cfg: RunConfig) -> list[Any]:
    """``agent`` plus ``n - 1`` more agents for worker threads: each its own graph and :class:`EvalMemory`
    (``current``/``last_recall`` are per turn), all sharing ``agent``'s experts (and so its expert cache), its
    explainer (same token limit and grammar mode) and its LLM: a worker's ``llm`` *is* ``agent.llm``, built
    lazily once — one LLM object for every graph node that calls it, never one in-process model per worker."""
    from emotion_agent.agent.runtime import EmotionAgent

    class WorkerAgent(EmotionAgent):
        """An agent whose ``llm`` is the primary agent's (one LLM object for all workers)."""

        @property
        def llm(self) -> Any:
            """The primary agent's LLM."""
            return agent.llm

    agents = [agent]
    for _ in range(n - 1):
        mem = EvalMemory([], agent.memory.text_expert, settings, settings.context_turns)
        mem.dias = agent.memory.dias  # read-only after the primary's setup
        agents.append(WorkerAgent(agent.settings, memory=mem, experts=agent.experts, explainer=agent.explainer,
                                  adjudicator=agent.adjudicator))
    return agents


def run_parallel(todo: list[Utterance], agents: list[Any], make: Callable[[Utterance, Any], dict[str, Any]],
                 fh: Any, bar: Any, stop_after: int | None = None) -> int:
    """Analyse ``todo`` on ``len(agents)`` threads; this (main) thread is the only writer. Returns records written.

    ``make(u, agent)`` builds one utterance's record (the run passes :func:`make_record` with its options).
    The first utterance runs alone on this thread, so whatever the graph loads lazily is loaded once, before
    threads share it. Then at most ``2 × workers`` are submitted ahead; records are appended (fsync'ed) in the
    order they finish — keys identify them, so resuming is unchanged. ``stop_after``: stop once that many are written
    (the rest are cancelled or discarded). A worker's exception: stop submitting, cancel what has not started,
    write what the running ones finish, re-raise. Ctrl-C: cancel, wait for the running ones, write nothing more.
    """
    import itertools
    import queue
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    free: queue.SimpleQueue = queue.SimpleQueue()  # an agent is used by one thread at a time
    for a in agents:
        free.put(a)

    def one(u: Utterance) -> dict[str, Any]:
        """Make the record for ``u`` on whichever agent is free."""
        a = free.get()
        try:
            return make(u, a)
        finally:
            free.put(a)

    written = 0
    if todo:  # the first one alone, on this thread: lazy loads (weights, fusion model, LLM) happen before sharing
        append_record(fh, make(todo[0], agents[0]))
        written += 1
        bar.update(1)
        if stop_after is not None and written >= stop_after:
            return written
    error: Exception | None = None
    pending = iter(enumerate(todo[1:]))
    inflight: dict[Any, int] = {}
    pool = ThreadPoolExecutor(max_workers=len(agents), thread_name_prefix="meld-worker")

    def submit(k: int) -> None:
        """Submit up to ``k`` more utterances to the pool."""
        for i, u in itertools.islice(pending, k):
            inflight[pool.submit(one, u)] = i

    def finish(futures: Any) -> bool:
        """Write the finished ones (in submission order); True once ``stop_after`` is reached."""
        nonlocal written, error
        for f in sorted(futures, key=inflight.__getitem__):
            del inflight[f]
            if f.cancelled():
                continue
            try:
                rec = f.result()
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others are written
                error = error or exc
                continue
            if stop_after is not None and written >= stop_after:
                continue
            append_record(fh, rec)
            written += 1
            bar.update(1)
        return stop_after is not None and written >= stop_after

    try:
        submit(2 * len(agents))
        while inflight:
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            if finish(done) or error is not None:
                break
            submit(len(done))
        for f in inflight:
            f.cancel()
        if error is not None:  # the ones already running: keep their records
            finish(wait(list(inflight)).done)
    except BaseException:  # Ctrl-C (or a failed write) in this thread: stop, nothing more is written
        for f in inflight:
            f.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error
    return written
