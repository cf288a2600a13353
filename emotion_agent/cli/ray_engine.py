"""``--engine ray``: a pool of Ray actors, each holding one loaded agent, for ``emotion-agent batch`` and
``emotion-agent eval meld|media``.

The work comes as units: every turn of one dialogue goes in one unit, in its order, so context and memory see
the dialogue as the local engine does; any other input is a unit of its own. Each actor builds its solver once
(``build()``: the command's own agent and record builder, e.g. a MELD run's agent behind the expert cache) and
turns each input of a unit into the same record the local engine writes. Only the driver writes the output
(through ``write``, the command's own line writer), and it skips a key already written, so the output has no
duplicate line. An actor that dies mid-unit (killed, node lost) is replaced and its unfinished unit is sent
again to a live actor; a whole-run interruption resumes from the output file like the local engine (the ids
already written are skipped by the caller). Needs ``pip install emotion-agent[ray]``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import typer

Item = tuple[str, "dict[str, Any] | str"]


def dialogue_units(todo: list[Item]) -> list[list[Item]]:
    """The inputs grouped so that one dialogue is never split: turns sharing a ``conversation_id`` form one
    unit in input order; every other input is a unit of its own. Units keep the order of their first input."""
    units: list[list[Item]] = []
    by_dialogue: dict[str, list[Item]] = {}
    for input_id, item in todo:
        cid = item.get("conversation_id") if isinstance(item, dict) else None
        if cid:
            if str(cid) not in by_dialogue:
                by_dialogue[str(cid)] = []
                units.append(by_dialogue[str(cid)])
            by_dialogue[str(cid)].append((input_id, item))
        else:
            units.append([(input_id, item)])
    return units


class AgentWorker:
    """One actor: one solver (``build()``, run once: the models load once per actor) applied to whole units."""

    def __init__(self, build: Callable[[], Callable[[Any], dict[str, Any]]], threads: int) -> None:
        import os

        import torch

        torch.set_num_threads(threads)
        # faster-whisper would start one thread per CPU of the machine in every actor: keep it to this share
        os.environ.setdefault("EMOTION_AGENT_ASR_THREADS", str(threads))
        self.solve = build()

    def ready(self) -> bool:
        return True

    def run(self, unit: list[Any]) -> list[dict[str, Any]]:
        return [self.solve(x) for x in unit]

    def close(self) -> None:
        """Let the solver flush what it keeps (an expert cache) before the actor goes."""
        close = getattr(self.solve, "close", None)
        if close is not None:
            close()


class BatchSolver:
    """``emotion-agent batch``'s solver in an actor: its agent and its record builder (``batch.analyse_input``)."""

    def __init__(self, llm: str | None, explain: bool, analyse: Any) -> None:
        from emotion_agent.agent.runtime import EmotionAgent
        from emotion_agent.console import settings_from

        self.settings = settings_from(llm=llm)
        self.agent = EmotionAgent(self.settings)
        self.explain, self.analyse = explain, analyse

    def __call__(self, x: Item) -> dict[str, Any]:
        return self.analyse(self.agent, self.settings, x[0], x[1], self.explain)


def connect(address: str | None, num_cpus: int) -> None:
    """Join the cluster at ``address`` (auto, ray://…) or start a local Ray on loopback, without dashboard or
    usage statistics."""
    import os

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1")


def run_units(units: list[list[Any]], *, build: Callable[[], Callable[[Any], dict[str, Any]]],
              write: Callable[[dict[str, Any]], None], key: str, written: set[str], bar: Any,
              address: str | None, workers: int, threads_per_worker: int, on_started: Any = None) -> float:
    """Run ``units`` on ``workers`` actors (``threads_per_worker`` CPUs each), calling ``write(record)`` once per
    record whose ``record[key]`` is not in ``written`` yet, and ``bar.update(1)`` after each: one progress bar
    across workers. Returns the seconds spent starting Ray and the actors (model loading). ``on_started(actors)``
    is called once the pool is live (the kill tests use it). ``build`` must pickle (a module-level class or a
    ``functools.partial`` of one): it travels to every actor."""
    try:
        import ray
        from ray.exceptions import RayActorError
    except ImportError as exc:  # pragma: no cover - depends on the extra
        from emotion_agent.console import UserError

        raise UserError("--engine ray needs Ray: pip install 'emotion-agent[ray]'") from exc

    if not units:
        return 0.0
    t0 = time.perf_counter()  # start-up (joining or starting Ray, loading the models) is timed apart
    connect(address, num_cpus=workers * threads_per_worker)
    actor_cls = ray.remote(num_cpus=threads_per_worker, max_restarts=0)(AgentWorker)
    workers = max(1, min(workers, len(units)))
    actors = [actor_cls.remote(build, threads_per_worker) for _ in range(workers)]
    ray.get([a.ready.remote() for a in actors])
    load_s = time.perf_counter() - t0
    if on_started is not None:
        on_started(actors)
    written = set(written)
    queue = deque(units)
    running: dict[Any, tuple[Any, list[Any]]] = {}
    idle = list(actors)
    while queue or running:
        while queue and idle:
            actor, unit = idle.pop(), queue.popleft()
            running[actor.run.remote(unit)] = (actor, unit)
        ready, _ = ray.wait(list(running), num_returns=1)
        actor, unit = running.pop(ready[0])
        try:
            records = ray.get(ready[0])
        except RayActorError:
            # The actor died: its whole unit goes back to the queue (a dialogue restarts from its first
            # turn on a fresh actor, so memory sees it in order) and a replacement actor joins the pool.
            queue.appendleft(unit)
            replacement = actor_cls.remote(build, threads_per_worker)
            ray.get(replacement.ready.remote())
            idle.append(replacement)
            continue
        idle.append(actor)
        for rec in records:
            if rec[key] not in written:
                write(rec)
                written.add(rec[key])
                bar.update(1)
    ray.get([a.close.remote() for a in idle])
    for a in idle:
        ray.kill(a)
    return load_s


def run_on_ray(todo: list[Item], out: Path, *, llm: str | None, explain: bool, address: str | None,
               workers: int, threads_per_worker: int, analyse: Any, write: Any, written: set[str],
               on_started: Any = None) -> float:
    """``emotion-agent batch --engine ray``: analyse ``todo`` and append the result lines to ``out``; returns the
    start-up seconds. ``analyse`` and ``write`` are the local engine's record builder and line writer
    (``batch.analyse_input``, ``batch.write_record``); ``written`` the ids already in ``out``."""
    from tqdm import tqdm

    units = dialogue_units(todo)
    with out.open("a", encoding="utf-8") as fh, \
            tqdm(total=len(todo), desc="batch (ray)", unit="turn", dynamic_ncols=True) as bar:
        return run_units(units, build=partial(BatchSolver, llm, explain, analyse), write=partial(write, fh),
                         key="input", written=written, bar=bar, address=address, workers=workers,
                         threads_per_worker=threads_per_worker, on_started=on_started)


def engine_for(engine: str, address: str | None, workers: int, threads_per_worker: int) -> Callable[..., float] | None:
    """``--engine``'s choice as the eval runners take it: None for ``local``, for ``ray`` the pool
    (``engine(units, build=…, write=…, key=…, written=…, bar=…)``); a :class:`UserError` otherwise."""
    from emotion_agent.console import UserError

    if engine == "local":
        if address:
            raise UserError("--address needs --engine ray")
        return None
    if engine != "ray":
        raise UserError(f"--engine must be local or ray, not {engine!r}")
    return partial(run_units, address=address, workers=workers, threads_per_worker=threads_per_worker)


#: The engine options, shared by ``batch`` and ``eval meld|media``.
ENGINE_OPTION = typer.Option("local", help="local (one process, the default) or ray (an actor pool; needs "
                                           "pip install emotion-agent\\[ray]; see docs/ray.md).")
ADDRESS_OPTION = typer.Option(None, help="Ray cluster: auto or ray://host:10001 (default: start a local Ray on "
                                         "this machine).")
THREADS_OPTION = typer.Option(1, min=1, help="CPU threads (and Ray CPUs) per actor (--engine ray).")
