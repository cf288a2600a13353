"""Run the agent over MELD and score it — the same graph the user runs, no second pipeline.

    emotion-agent eval meld --split dev|test [--limit N] [--modalities text,audio,vision]
                            [--context online|offline|K] [--explain/--no-explain] [--fusion NAME] [--ablations] --out runs/NAME

A run folder holds ``config.json`` (what was asked), ``records.jsonl`` (one JSON line per
utterance, appended and fsync'ed as it is produced), ``sessions.jsonl`` (one line per
invocation: start, end, records written) and ``summary.json`` (metrics and provenance).

Resuming: rerun the same command. Records already present are skipped; a truncated last line
(the process was killed mid-write) is cut off before appending, so no record is lost or
duplicated. A different configuration in an existing folder is refused.

Context: each utterance is a turn of conversation ``meld-<split>-dia<D>``; the agent's memory is
an in-process :class:`EvalMemory` that recalls the previous ``K`` utterances of the dialogue
(their words and speakers, and the text expert's predicted distribution for them — never gold
labels), so the recall → experts → fuse path is exactly the user's. ``--context online`` (the default) and
``offline`` read the dialogue with the text expert's dialogue model: each turn is given its whole past (and,
offline, its later turns); an integer K is the text expert alone with K recalled turns. Expert outputs are cached by
content hash (:mod:`evals.expert_cache`); a rerun that changes only fusion or prompts reuses them.

Pieces (split as inspect_ai splits an eval): the options and ``config.json`` (:mod:`evals.meld_config`), the
dataset — loader, stratified sample, media (:mod:`evals.meld`) —, the solver — one record per utterance, worker
threads (:mod:`evals.meld_solver`) —, the scorers (:mod:`evals.metrics`, :mod:`evals.scorers`) and the summary
(:mod:`evals.meld_summary`); ablations are runs of their own (:mod:`evals.meld_ablations`). This module runs them.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from emotion_agent.evals.meld import dialogues, select
from emotion_agent.evals.meld_config import MODALITY_EXPERTS, RunConfig, RunConfigError, check_config, context_setting
from emotion_agent.evals.meld_memory import EvalMemory
from emotion_agent.evals.meld_solver import (MAX_WORKERS, MeldSolver, build_agent, check_workers, dialogue_units,
                                             make_record, run_parallel, worker_agents)
from emotion_agent.evals.meld_summary import summarize_run
from emotion_agent.evals.paths import runs_dir
from emotion_agent.evals.records import append_record, read_records
from emotion_agent.tools.settings import Settings

#: Runs units of work on workers of its own: ``engine(units, build=, write=, key=, written=, bar=)`` (the Ray pool).
Engine = Callable[..., Any]

#: Re-exported: the run's options, its errors and its pieces keep being importable from here.
__all__ = ["MAX_WORKERS", "MODALITY_EXPERTS", "RunConfig", "RunConfigError", "build_agent", "make_record", "run",
           "summarize_run"]


def run(split: str = "dev", *, limit: int | None = None, out: Path | None = None, explain: bool = False,
        context: int | str = "online", modalities: list[str] | None = None, fusion: str | None = None, seed: int = 13,
        settings: Settings | None = None, agent: Any = None, progress: bool = True,
        stop_after: int | None = None, cache_path: Path | None = None, workers: int = 1,
        adjudicate: bool | None = None, adjudicate_margin: float | None = None,
        engine: Engine | None = None) -> dict[str, Any]:
    """Run (or resume) one configuration; returns the summary. ``stop_after`` (tests) simulates a crash.

    ``workers`` > 1 analyses that many utterances at once (see :func:`run_parallel`); it is not part of the
    configuration, so a run may be resumed with another worker count and gets the same records. ``engine``
    (``--engine ray``: ``cli.ray_engine.engine_for``) runs whole dialogues on workers of their own, each with a
    :class:`MeldSolver`; this process stays the only writer. Neither is part of the run's identity.
    """
    from emotion_agent.agent.fusion import POLICIES
    from emotion_agent.tools.text_emotion import TextEmotionExpert

    check_workers(workers)
    settings = settings or Settings.from_env()
    recalled, text_mode = context_setting(context)
    settings = settings.replace(context_turns=recalled, text_mode=text_mode)
    cfg = RunConfig(split=split, limit=limit, modalities=sorted(modalities or ["text"]),
                    context=recalled if text_mode == "utterance" else text_mode,
                    explain=explain, fusion=fusion or settings.fusion, seed=seed,
                    adjudicate=settings.adjudicate if adjudicate is None else adjudicate,
                    adjudicate_margin=settings.adjudicate_margin if adjudicate_margin is None else adjudicate_margin,
                    text_model=TextEmotionExpert(settings).model_id)
    if not 0.0 <= cfg.adjudicate_margin <= 1.0:
        raise RunConfigError(f"adjudicate margin must be between 0 and 1 (got {cfg.adjudicate_margin})")
    bad = [m for m in cfg.modalities if m not in MODALITY_EXPERTS]
    if bad:
        raise RunConfigError(f"unknown modality {bad} (use text, audio, vision)")
    if cfg.fusion not in POLICIES:
        raise RunConfigError(f"unknown fusion policy '{cfg.fusion}' (known: {', '.join(POLICIES)})")
    out = out or runs_dir() / f"meld-{split}-{cfg.run_id()}"
    check_config(out, cfg)
    utts, sample = select(split, cfg, settings)
    rec_path = out / "records.jsonl"
    done = {r["key"] for r in read_records(rec_path, repair=True)}
    todo = [u for u in sample if u.key not in done]
    session = {"start": time.time(), "pid": os.getpid(), "todo": len(todo), "workers": workers}
    written = 0
    if todo and engine is not None:
        with rec_path.open("ab") as fh, tqdm(total=len(sample), initial=len(sample) - len(todo),
                                             disable=not progress, desc=f"MELD {split} (ray)", unit="utt",
                                             dynamic_ncols=True) as bar:
            def write(rec: dict[str, Any]) -> None:
                nonlocal written
                append_record(fh, rec)
                written += 1

            engine(dialogue_units(todo), build=functools.partial(MeldSolver, settings, cfg, cache_path), write=write,
                   key="key", written=done, bar=bar)
        session["engine"] = "ray"
    elif todo:
        cache = None
        if agent is None:
            from emotion_agent.evals.expert_cache import ExpertCache

            cache = ExpertCache(cache_path or settings.cache_dir / "expert_cache.sqlite")
            agent = build_agent(settings, cfg, utts, cache)
        if agent.memory is None or not isinstance(agent.memory, EvalMemory):
            agent.memory = EvalMemory(utts, agent.experts.get("text_emotion"), settings, recalled)
        agent.memory.context = recalled
        agent.memory.dias = dialogues(utts)
        n = min(workers, len(todo))
        try:
            with rec_path.open("ab") as fh, tqdm(total=len(sample), initial=len(sample) - len(todo),
                                                 disable=not progress, desc=f"MELD {split}", unit="utt",
                                                 dynamic_ncols=True) as bar:
                if n > 1:
                    bar.set_postfix_str(f"{n} workers", refresh=False)
                    written = run_parallel(todo, worker_agents(agent, n, settings, cfg),
                                           lambda u, a: make_record(u, cfg, a, settings), fh, bar, stop_after)
                else:
                    for u in todo:
                        append_record(fh, make_record(u, cfg, agent, settings))
                        written += 1
                        bar.update(1)
                        if stop_after is not None and written >= stop_after:
                            break
        finally:  # also when interrupted: the cached expert outputs computed so far are kept
            if cache is not None:
                cache.flush()
    session.update(end=time.time(), written=written)
    with (out / "sessions.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(session) + "\n")
    if stop_after is not None and written < len(todo):
        return {"partial": True, "written": written}
    return summarize_run(out, settings, cfg, agent)
