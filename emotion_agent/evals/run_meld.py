"""Run the agent over MELD and score it — the same graph the user runs, no second pipeline.

    emotion-agent eval meld --split dev|test [--limit N] [--modalities text,audio,vision]
                            [--context K] [--explain/--no-explain] [--fusion NAME] [--ablations] --out runs/NAME

A run folder holds ``config.json`` (what was asked), ``records.jsonl`` (one JSON line per
utterance, appended and fsync'ed as it is produced), ``sessions.jsonl`` (one line per
invocation: start, end, records written) and ``summary.json`` (metrics and provenance).

Resuming: rerun the same command. Records already present are skipped; a truncated last line
(the process was killed mid-write) is cut off before appending, so no record is lost or
duplicated. A different configuration in an existing folder is refused.

Context: each utterance is a turn of conversation ``meld-<split>-dia<D>``; the agent's memory is
an in-process :class:`EvalMemory` that recalls the previous ``K`` utterances of the dialogue
(their words and speakers, and the text expert's predicted distribution for them — never gold
labels), so the recall → experts → fuse path is exactly the user's. Expert outputs are cached by
content hash (:mod:`evals.expert_cache`); a rerun that changes only fusion or prompts reuses them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from emotion_agent.evals.paths import runs_dir
from emotion_agent.tools.settings import Settings
from emotion_agent.agent.inputs import InputError, make_turn
from emotion_agent.evals.meld import Utterance, dialogues, load_split
from emotion_agent.tools.base import TurnInput
from emotion_agent.evals.meld_memory import EvalMemory, conv_id
from emotion_agent.evals.provenance import git_commit, package_versions, settings_dict
from emotion_agent.evals.records import append_record, read_records
from emotion_agent.evals.scorers import adjudication_summary, explanation_checks, percentile, report_with_ci

MODALITY_EXPERTS: dict[str, tuple[str, ...]] = {
    "text": ("text_emotion",),
    "audio": ("transcribe", "speech_emotion"),
    "vision": ("facial_emotion", "describe_scene"),
}

class RunConfigError(ValueError):
    """The run folder belongs to a different configuration (user-facing, one line)."""


@dataclass
class RunConfig:
    """What a MELD run asks for; the fields identify the run (see :meth:`run_id`)."""

    split: str = "dev"
    limit: int | None = None
    modalities: list[str] = field(default_factory=lambda: ["text"])
    context: int = 3
    explain: bool = False
    fusion: str = "weighted"
    seed: int = 13
    #: LLM adjudication of close calls (margin of the fused top-2 below ``adjudicate_margin``).
    adjudicate: bool = False
    adjudicate_margin: float = 0.1
    #: The text expert's model id (runs made before this field existed used the MiniLM head).
    text_model: str = "minilm-l6-int8 + linear head (text_emotion.npz)"

    def identity(self) -> dict[str, Any]:
        """The options as a dict (compared when a run folder is resumed)."""
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """Short hash of :meth:`identity`."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:12]


# ---- sampling --------------------------------------------------------------------------------
def stratified_sample(utts: list[Utterance], limit: int | None, seed: int = 13) -> list[Utterance]:
    """``limit`` utterances with MELD's class proportions (at least one per class), fixed seed."""
    if not limit or limit >= len(utts):
        return utts
    rng = random.Random(seed)
    by: dict[str, list[Utterance]] = defaultdict(list)
    for u in utts:
        by[u.emotion].append(u)
    picked: list[Utterance] = []
    for label, group in sorted(by.items()):
        n = max(1, round(limit * len(group) / len(utts)))
        picked += rng.sample(group, min(n, len(group)))
    rng.shuffle(picked)
    picked = picked[:limit]
    order = {u.key: i for i, u in enumerate(utts)}
    return sorted(picked, key=lambda u: order[u.key])


# ---- media -----------------------------------------------------------------------------------
def media_for(u: Utterance, data_dir: Path) -> dict[str, Any]:
    """The real clips we have for this utterance (most of MELD has none here)."""
    media = data_dir / "meld" / "media"
    out: dict[str, Any] = {"audio": None, "video": None, "image": None, "warnings": []}
    for prefix, uncertain in ((f"{u.split}_dia{u.dialogue_id}_utt{u.utterance_id}", False),
                              (f"probably_{u.split}_dia{u.dialogue_id}_utt{u.utterance_id}", True)):
        found = False
        for kind, suffix in (("video", ".mp4"), ("audio", ".wav"), ("image", "_frames.png")):
            p = media / f"{prefix}{suffix}"
            if p.is_file() and out[kind] is None:
                out[kind] = p
                found = True
        if found and uncertain:
            out["warnings"].append("media file is only probably this utterance (see data README)")
    if out["video"] is not None:  # the video carries the audio track and the frames
        out["audio"] = None
        out["image"] = None
    return out


# ---- the run ---------------------------------------------------------------------------------
def build_agent(settings: Settings, cfg: RunConfig, utts: list[Utterance], cache_path: Path | None = None) -> Any:
    """The run's agent: its experts behind the expert cache, with an :class:`EvalMemory`."""
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.evals.expert_cache import ExpertCache, wrap_experts
    from emotion_agent.tools.registry import build_experts

    wanted = [n for m in cfg.modalities for n in MODALITY_EXPERTS.get(m, ())]
    if "text" not in cfg.modalities and ("audio" in cfg.modalities):
        wanted.append("text_emotion")  # the transcript goes to the text expert
    cache = ExpertCache(cache_path or settings.cache_dir / "expert_cache.sqlite")
    experts = wrap_experts(build_experts(settings, only=wanted), cache)
    agent = EmotionAgent(settings, memory=EvalMemory(utts, experts.get("text_emotion"), settings, cfg.context),
                         experts=experts)
    agent.expert_cache = cache  # type: ignore[attr-defined]
    return agent


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
    try:
        turn = make_turn(text=text, audio=audio, image=image, video=video, conversation_id=conv_id(u),
                         speaker=u.speaker, turn_index=u.position, max_chars=settings.max_text_chars)
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


def select(split: str, cfg: RunConfig, settings: Settings) -> tuple[list[Utterance], list[Utterance]]:
    """(all utterances of ``split``, the sample to run); without text only ones with media."""
    utts = load_split(split, settings.data_dir)
    pool = utts
    if "text" not in cfg.modalities:  # without words only utterances with media can be analysed
        pool = [u for u in utts if any(media_for(u, settings.data_dir)[k] for k in ("audio", "video", "image"))]
    return utts, stratified_sample(pool, cfg.limit, cfg.seed)


def check_config(out: Path, cfg: RunConfig) -> None:
    """Write a new run folder's ``config.json``; refuse a folder made with other options."""
    path = out / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        # Options added after a run was made take their defaults there (older runs still resume).
        old_id = {**RunConfig().identity(), **old.get("identity", {})}
        if old_id != cfg.identity():
            diff = {k: (old_id.get(k), v) for k, v in cfg.identity().items() if old_id.get(k) != v}
            raise RunConfigError(f"{out} holds a run with other options {diff}; rerun with the same options "
                                 "to resume, or choose a new --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"identity": cfg.identity(), "run_id": cfg.run_id(),
                                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
        os.replace(tmp, path)


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
        w = WorkerAgent(agent.settings, memory=False, experts=agent.experts)
        w.explainer = agent.explainer
        mem = EvalMemory([], agent.memory.text_expert, settings, cfg.context)
        mem.dias = agent.memory.dias  # read-only after the primary's setup
        w.memory = mem  # type: ignore[assignment]
        agents.append(w)
    return agents


def run_parallel(todo: list[Utterance], agents: list[Any], cfg: RunConfig, settings: Settings, fh: Any, bar: Any,
                 stop_after: int | None = None) -> int:
    """Analyse ``todo`` on ``len(agents)`` threads; this (main) thread is the only writer. Returns records written.

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
            return make_record(u, cfg, a, settings)
        finally:
            free.put(a)

    written = 0
    if todo:  # the first one alone, on this thread: lazy loads (weights, fusion model, LLM) happen before sharing
        append_record(fh, make_record(todo[0], cfg, agents[0], settings))
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


def run(split: str = "dev", *, limit: int | None = None, out: Path | None = None, explain: bool = False,
        context: int = 3, modalities: list[str] | None = None, fusion: str | None = None, seed: int = 13,
        settings: Settings | None = None, agent: Any = None, progress: bool = True,
        stop_after: int | None = None, cache_path: Path | None = None, workers: int = 1,
        adjudicate: bool | None = None, adjudicate_margin: float | None = None) -> dict[str, Any]:
    """Run (or resume) one configuration; returns the summary. ``stop_after`` (tests) simulates a crash.

    ``workers`` > 1 analyses that many utterances at once (see :func:`run_parallel`); it is not part of the
    configuration, so a run may be resumed with another worker count and gets the same records.
    """
    from emotion_agent.agent.fusion import POLICIES
    from emotion_agent.tools.text_emotion import TextEmotionExpert

    check_workers(workers)
    settings = settings or Settings.from_env()
    settings = settings.replace(context_turns=context)
    cfg = RunConfig(split=split, limit=limit, modalities=sorted(modalities or ["text"]), context=context,
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
    if todo:
        agent = agent or build_agent(settings, cfg, utts, cache_path)
        if agent.memory is None or not isinstance(agent.memory, EvalMemory):
            agent.memory = EvalMemory(utts, agent.experts.get("text_emotion"), settings, cfg.context)
        agent.memory.context = cfg.context
        agent.memory.dias = dialogues(utts)
        n = min(workers, len(todo))
        try:
            with rec_path.open("ab") as fh, tqdm(total=len(sample), initial=len(sample) - len(todo),
                                                 disable=not progress, desc=f"MELD {split}", unit="utt",
                                                 dynamic_ncols=True) as bar:
                if n > 1:
                    bar.set_postfix_str(f"{n} workers", refresh=False)
                    written = run_parallel(todo, worker_agents(agent, n, settings, cfg), cfg, settings, fh,
                                           bar, stop_after)
                else:
                    for u in todo:
                        append_record(fh, make_record(u, cfg, agent, settings))
                        written += 1
                        bar.update(1)
                        if stop_after is not None and written >= stop_after:
                            break
        finally:  # also when interrupted: the cached expert outputs computed so far are kept
            cache = getattr(agent, "expert_cache", None)
            if cache is not None:
                cache.flush()
    session.update(end=time.time(), written=written)
    with (out / "sessions.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(session) + "\n")
    if stop_after is not None and written < len(todo):
        return {"partial": True, "written": written}
    return summarize_run(out, settings, cfg, agent)


def summarize_run(out: Path, settings: Settings | None = None, cfg: RunConfig | None = None,
                  agent: Any = None, bootstrap: int = 1000) -> dict[str, Any]:
    """Metrics and provenance from ``records.jsonl`` (so a resumed run scores all of its records)."""
    from emotion_agent.tools.prompts import prompt_hashes

    settings = settings or Settings.from_env()
    config = json.loads((out / "config.json").read_text())
    records = read_records(out / "records.jsonl")
    gold = [r["gold"] for r in records]
    pred = [r["label"] for r in records]
    conf = [float(r["confidence"]) for r in records]
    metrics = report_with_ci(gold, pred, confidence=conf, bootstrap=bootstrap)
    baseline = report_with_ci(gold, ["neutral"] * len(gold), bootstrap=bootstrap)
    stages: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for k, v in r["result"].get("timings_ms", {}).items():
            stages[k].append(float(v))
        stages["wall"].append(float(r.get("wall_ms", 0.0)))
    latency = {k: {"p50": percentile(v, 50), "p95": percentile(v, 95), "mean": round(float(np.mean(v)), 2)}
               for k, v in stages.items() if v}
    checks = [r["checks"] for r in records if r.get("checks")]
    expl = None
    if checks:
        expl = {"n": len(checks),
                "agreement_rate": 100.0 * sum(c["agrees"] for c in checks) / len(checks),
                "citation_validity_rate": 100.0 * sum(c["citations_valid"] for c in checks) / len(checks),
                "cites_any_rate": 100.0 * sum(c["cites_any"] for c in checks) / len(checks),
                "list_citation_validity_rate": 100.0 * sum(c.get("list_citations_valid", True) for c in checks)
                / len(checks),
                "prose_citation_validity_rate": 100.0 * sum(c.get("prose_citations_valid", True) for c in checks)
                / len(checks),
                "llm_share": 100.0 * sum(c.get("source") == "llm" for c in checks) / len(checks),
                "disagreements": [r["key"] for r in records if r.get("checks") and not r["checks"]["agrees"]][:50],
                "invalid_citations": [r["key"] for r in records
                                      if r.get("checks") and not r["checks"]["citations_valid"]][:50]}
    sessions = []
    if (out / "sessions.jsonl").is_file():
        sessions = [json.loads(x) for x in (out / "sessions.jsonl").read_text().splitlines() if x.strip()]
    model_ids: dict[str, str] = {}
    modalities_available: dict[str, int] = defaultdict(int)
    modalities_used: dict[str, int] = defaultdict(int)
    cache_stats: dict[str, int] = defaultdict(int)
    for r in records:
        for e in r["result"]["evidence"]:
            model_ids[e["expert"]] = e["model_id"]
        for m in r.get("modalities_available", []):
            modalities_available[m] += 1
        for m in r.get("modalities_used", []):
            modalities_used[m] += 1
        for status in r.get("cache", {}).values():
            cache_stats[str(status)] += 1
    identity = config["identity"]
    if identity.get("explain") or identity.get("adjudicate"):
        model_ids["llm"] = settings.llm_url or settings.llm
    if any(r["result"].get("fusion_policy", "").startswith("learned") for r in records):
        from emotion_agent.agent.fusion import LEARNED_WEIGHTS, load_learned

        m = load_learned()
        model_ids["fusion"] = f"{LEARNED_WEIGHTS.name} {m.meta if m else '(missing)'}"
    summary = {
        "run_id": config.get("run_id"), "config": identity, "n": len(records),
        "complete": None,
        "metrics": metrics,
        "always_neutral": {k: baseline[k] for k in ("weighted_f1", "weighted_f1_ci95", "macro_f1", "accuracy")
                           if k in baseline},
        "latency_ms": latency,
        "wall_seconds": {
            "sum_of_sessions": round(sum(s.get("end", s["start"]) - s["start"] for s in sessions), 1),
            "sum_of_turns": round(sum(stages["wall"]) / 1000.0, 1),
            "sessions": len(sessions),
        },
        "explanations": expl,
        "adjudication": adjudication_summary(records),
        "modalities_available": dict(modalities_available), "modalities_used": dict(modalities_used),
        "expert_cache": dict(cache_stats),
        "fusion_policies": sorted({r["result"].get("fusion_policy", "") for r in records}),
        "model_ids": model_ids, "prompt_hashes": prompt_hashes(), "packages": package_versions(),
        "git": git_commit(), "settings": settings_dict(settings),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if cfg is not None:
        _, sample = select(cfg.split, cfg, settings)
        summary["complete"] = len(records) == len(sample)
        summary["expected"] = len(sample)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / "summary.json")
    return summary


# ---- ablations -------------------------------------------------------------------------------
def ablation_variants(cfg: RunConfig, learned_available: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, description, overrides) for each row of the ablation table."""
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("text_only", "text expert alone (text_only fusion)", {"fusion": "text_only"}),
        ("weighted", "weighted late fusion", {"fusion": "weighted"}),
    ]
    if learned_available:
        rows.append(("learned", "learned late fusion (text + conversation context)", {"fusion": "learned"}))
    from emotion_agent.agent.fusion import LEARNED_NOCTX_WEIGHTS

    if LEARNED_NOCTX_WEIGHTS.is_file():
        rows.append(("learned_noctx", "learned fusion trained without conversation features",
                     {"fusion": "learned_noctx"}))
    if cfg.context > 0:
        rows.append((f"{cfg.fusion}_context0", f"{cfg.fusion} fusion, memory context off at inference (K=0)",
                     {"context": 0}))
    rows.append(("llm_adjudication", f"{cfg.fusion} fusion + LLM picks between the fused top-2 labels when their "
                 f"margin < {cfg.adjudicate_margin:g}", {"adjudicate": True, "adjudicate_margin": cfg.adjudicate_margin}))
    for m in ("audio", "vision"):
        if m in cfg.modalities:
            rows.append((f"{m}_only", f"{m} experts alone (utterances with media only)",
                         {"modalities": [m], "fusion": "weighted"}))
    return rows


def run_ablations(split: str, *, out: Path, limit: int | None, context: int, modalities: list[str],
                  fusion: str, seed: int = 13, settings: Settings | None = None, adjudicate_margin: float | None = None,
                  progress: bool = True, cache_path: Path | None = None, workers: int = 1) -> list[dict[str, Any]]:
    """Every ablation row as its own resumable run under ``out/ablations/``; returns the table rows."""
    from emotion_agent.agent.fusion import load_learned

    settings = settings or Settings.from_env()
    base = RunConfig(split=split, limit=limit, modalities=sorted(modalities), context=context, fusion=fusion,
                     seed=seed, adjudicate_margin=adjudicate_margin or settings.adjudicate_margin)
    rows = []
    for name, desc, over in ablation_variants(base, load_learned() is not None):
        kw = {"limit": limit, "context": context, "modalities": modalities, "fusion": fusion, "seed": seed,
              "adjudicate": False, **over}
        s = run(split, out=out / "ablations" / name, explain=False, settings=settings, progress=progress,
                cache_path=cache_path, workers=workers, **kw)
        m = s["metrics"]
        rows.append({"name": name, "description": desc, "n": m["n"], "weighted_f1": m["weighted_f1"],
                     "weighted_f1_ci95": m.get("weighted_f1_ci95"), "macro_f1": m["macro_f1"],
                     "accuracy": m["accuracy"], "ece": m.get("ece"), "fusion": kw["fusion"], "context": kw["context"],
                     "wall_p50_ms": s["latency_ms"].get("wall", {}).get("p50"),
                     **({"adjudication": s["adjudication"]} if s.get("adjudication") else {})})
    if rows:
        gold_n = rows[0]["n"]
        recs = read_records(out / "ablations" / rows[0]["name"] / "records.jsonl")
        g = [r["gold"] for r in recs]
        b = report_with_ci(g, ["neutral"] * len(g))
        rows.append({"name": "always_neutral", "description": "always-neutral baseline", "n": gold_n,
                     "weighted_f1": b["weighted_f1"], "weighted_f1_ci95": b.get("weighted_f1_ci95"),
                     "macro_f1": b["macro_f1"], "accuracy": b["accuracy"], "ece": None, "fusion": "-",
                     "context": "-", "wall_p50_ms": None})
    (out / "ablations.json").write_text(json.dumps(rows, indent=2))
    summary_path = out / "summary.json"
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        s["ablations"] = rows
        tmp = out / "summary.json.tmp"
        tmp.write_text(json.dumps(s, indent=2))
        os.replace(tmp, summary_path)
    return rows
