"""``--engine ray`` for ``emotion-agent batch``: a pool of Ray actors, each holding one loaded ``EmotionAgent``.

The inputs are cut into units of work: every turn of one dialogue (same ``conversation_id``) goes in one unit,
in its order, so context and memory see the dialogue as the local engine does; a turn without a dialogue is a
unit of its own. Only the driver writes the output (the same record lines as the local engine, through
``batch.write_record``, passed in), and it skips an input id already written, so the output has no duplicate
line. An actor that dies mid-unit (killed, node lost) is replaced and its unfinished unit is sent again to a live
actor; a whole-run interruption resumes from the output file like the local engine (``batch.done_ids``).
Needs ``pip install emotion-agent[ray]``.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

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
    """One actor: one loaded agent, analysing whole units of work with the local engine's record builder."""

    def __init__(self, llm: str | None, threads: int) -> None:
        import torch

        from emotion_agent.agent.runtime import EmotionAgent
        from emotion_agent.console import settings_from

        torch.set_num_threads(threads)
        self.settings = settings_from(llm=llm)
        self.agent = EmotionAgent(self.settings)

    def ready(self) -> bool:
        return True

    def run(self, unit: list[Item], explain: bool, analyse: Any) -> list[dict[str, Any]]:
        return [analyse(self.agent, self.settings, i, item, explain) for i, item in unit]


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


def run_on_ray(todo: list[Item], out: Path, *, llm: str | None, explain: bool, address: str | None,
               workers: int, threads_per_worker: int, analyse: Any, write: Any, written: set[str],
               on_started: Any = None) -> float:
    """Analyse ``todo`` on ``workers`` actors and append the result lines to ``out``; returns the seconds
    spent starting Ray and the actors (model loading). ``analyse`` and ``write`` are the local engine's record builder
    and line writer (``batch.analyse_input``, ``batch.write_record``); ``written`` the ids already in ``out``.
    ``on_started(actors)`` is called once the pool is live (the kill test uses it)."""
    try:
        import ray
        from ray.exceptions import RayActorError
    except ImportError as exc:  # pragma: no cover - depends on the extra
        from emotion_agent.console import UserError

        raise UserError("--engine ray needs Ray: pip install 'emotion-agent[ray]'") from exc
    from tqdm import tqdm

    t0 = time.perf_counter()  # start-up (joining or starting Ray, loading the models) is timed apart
    connect(address, num_cpus=workers * threads_per_worker)
    actor_cls = ray.remote(num_cpus=threads_per_worker, max_restarts=0)(AgentWorker)
    actors = [actor_cls.remote(llm, threads_per_worker) for _ in range(workers)]
    ray.get([a.ready.remote() for a in actors])
    load_s = time.perf_counter() - t0
    if on_started is not None:
        on_started(actors)
    written = set(written)
    queue = deque(dialogue_units(todo))
    running: dict[Any, tuple[Any, list[Item]]] = {}
    idle = list(actors)
    bar = tqdm(total=sum(len(u) for u in queue), desc="batch (ray)", unit="turn", dynamic_ncols=True)
    with out.open("a", encoding="utf-8") as fh:
        while queue or running:
            while queue and idle:
                actor, unit = idle.pop(), queue.popleft()
                running[actor.run.remote(unit, explain, analyse)] = (actor, unit)
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, unit = running.pop(ready[0])
            try:
                records = ray.get(ready[0])
            except RayActorError:
                # The actor died: its whole unit goes back to the queue (a dialogue restarts from its first
                # turn on a fresh actor, so memory sees it in order) and a replacement actor joins the pool.
                queue.appendleft(unit)
                replacement = actor_cls.remote(llm, threads_per_worker)
                ray.get(replacement.ready.remote())
                idle.append(replacement)
                continue
            idle.append(actor)
            for rec in records:
                if rec["input"] not in written:
                    write(fh, rec)
                    written.add(rec["input"])
                    bar.update(1)
    bar.close()
    for a in idle:
        ray.kill(a)
    return load_s
