"""``emotion-agent batch``: many turns with one loaded agent — a folder, a glob, a CSV or a JSONL of turns.

Each input becomes one result line in ``--out`` (JSONL, flushed and fsynced per line, so a run cut at any
time resumes where it stopped: inputs already answered are skipped), and a summary goes beside it
(``<out>.summary.json``: counts, wall time, per-turn time, every refusal with its reason). Exit code 0 when
every input was analysed, 1 when some were refused (each with its one-line reason in the results), 2 for a
usage mistake (no such input, nothing to read).

A CSV or JSONL file is a dialogue file: its rows with the same ``conversation_id`` are one conversation, in file
order. By default (``--text-mode offline``) each text row is read with its conversation's earlier and later rows
(the text expert's offline dialogue model); ``--text-mode online`` reads the earlier rows only; ``utterance``
each row alone. Every result line says which mode labelled it (``text_mode``).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from emotion_agent.cli.ray_engine import ADDRESS_OPTION, ENGINE_OPTION, THREADS_OPTION
from emotion_agent.console import UserError, console, settings_from
from emotion_agent.tools.evidence import FusedResult

MEDIA_SUFFIXES = {
    "audio": {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".aac"},
    "image": {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"},
    "video": {".mp4", ".mkv", ".avi", ".mov", ".webm"},
}
FIELDS = ("text", "audio", "image", "video", "conversation_id", "speaker")


def media_kind(path: Path) -> str | None:
    """``audio``, ``image`` or ``video`` by the file's suffix (its content is checked later, as everywhere)."""
    suffix = path.suffix.lower()
    return next((k for k, s in MEDIA_SUFFIXES.items() if suffix in s), None)


def read_inputs(spec: str) -> tuple[str, list[tuple[str, dict[str, Any] | str]]]:
    """(kind, [(input id, item or an error message)]) for a folder, a glob, a CSV or a JSONL file.

    A folder or glob gives one turn per media file (sorted, so ids are stable across reruns); CSV and
    JSONL give one turn per row/line (relative paths are relative to the file's folder). A row that
    cannot be read becomes an error message, reported as a refused input, never a crash."""
    path = Path(spec)
    if path.is_dir() or any(ch in spec for ch in "*?["):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else \
            sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        items: list[tuple[str, dict[str, Any] | str]] = []
        for f in files:
            kind = media_kind(f)
            if kind is not None:
                items.append((str(f), {kind: str(f.resolve())}))
        if not items:
            raise UserError(f"no audio, image or video files in {spec} "
                            f"(suffixes: {', '.join(sorted(set().union(*MEDIA_SUFFIXES.values())))})")
        return ("folder" if path.is_dir() else "glob"), items
    if not path.is_file():
        raise UserError(f"batch input not found: {spec} (a folder, a glob, a .csv or a .jsonl file)")
    base = path.resolve().parent
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(raw))
        if not reader.fieldnames or not set(reader.fieldnames) & {"text", "audio", "image", "video"}:
            raise UserError(f"{spec}: the CSV header needs at least one of text, audio, image, video "
                            f"(columns: {', '.join(FIELDS)})")
        rows = [(f"row {i}", with_base({k: v for k, v in row.items() if k in FIELDS and v}, base))
                for i, row in enumerate(reader, start=2)]
        return "csv", rows
    lines: list[tuple[str, dict[str, Any] | str]] = []
    for no, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            lines.append((f"line {no}", f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        lines.append((f"line {no}", with_base(item, base) if isinstance(item, dict) else
                      "each line must be a JSON object with any of " + ", ".join(FIELDS)))
    return "jsonl", lines


def with_base(item: dict[str, Any], base: Path) -> dict[str, Any]:
    """``item`` with its relative media paths made relative to ``base``."""
    out = dict(item)
    for k in ("audio", "image", "video"):
        v = out.get(k)
        if isinstance(v, str) and v and not Path(v).is_absolute():
            out[k] = str(base / v)
    return out


def with_dialogue(items: list[tuple[str, dict[str, Any] | str]], mode: str) -> list[tuple[str, dict[str, Any] | str]]:
    """The items with each text row's conversation around it: ``_context`` (its conversation's earlier text rows,
    oldest first) and, offline, ``_future`` (the later ones), as (speaker, text) pairs. Rows without a
    conversation id, media-only rows and the ``utterance`` mode get none."""
    if mode == "utterance":
        return items
    rows: dict[str, list[int]] = {}
    for i, (_, item) in enumerate(items):
        if isinstance(item, dict) and item.get("conversation_id") and isinstance(item.get("text"), str):
            rows.setdefault(str(item["conversation_id"]), []).append(i)
    out = list(items)
    for idx in rows.values():
        turns = [(items[i][1].get("speaker"), items[i][1]["text"]) for i in idx]  # type: ignore[union-attr]
        for j, i in enumerate(idx):
            input_id, item = items[i]
            out[i] = (input_id, {**item, "_context": turns[:j],  # type: ignore[dict-item]
                                 **({"_future": turns[j + 1:]} if mode == "offline" else {})})
    return out


def prior_turns(pairs: Any) -> list[Any] | None:
    """(speaker, text) pairs as the turn's typed prior turns (None when there are none)."""
    from emotion_agent.tools.base import PriorTurn

    return [PriorTurn(speaker=s, text=t) for s, t in pairs] if pairs else None


def done_ids(out: Path) -> set[str]:
    """Input ids already answered in an earlier run of the same output file."""
    return {r["input"] for r in results(out) if isinstance(r.get("input"), str)} if out.is_file() else set()


def results(out: Path) -> Iterator[dict[str, Any]]:
    """Every readable result line of the output file."""
    for raw in out.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if isinstance(rec, dict):
            yield rec


def batch(
    inputs: str = typer.Argument(..., help="A folder (every audio/image/video file under it), a glob in quotes "
                                           "('clips/**/*.wav'), a .csv with columns text,audio,image,video,"
                                           "conversation_id,speaker, or a .jsonl with one such object per line "
                                           "(relative paths: relative to the file's folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Results JSONL (one line per input). Rerun to resume; a "
                                                      "summary goes to <out>.summary.json."),
    explain: bool = typer.Option(False, "--explain/--no-explain", help="Also explain each label (slower)."),
    llm: Optional[str] = typer.Option(None, help="LLM for explanations: registry name or .gguf path."),
    engine: str = ENGINE_OPTION,
    address: Optional[str] = ADDRESS_OPTION,
    workers: int = typer.Option(2, min=1, help="Ray actors, each with one loaded agent."),
    threads_per_worker: int = THREADS_OPTION,
    text_mode: Optional[str] = typer.Option(None, help="How the text of a dialogue file is read: offline (default "
                                                       "for .csv/.jsonl: each row with its conversation's earlier "
                                                       "and later rows), online (earlier rows only) or utterance."),
) -> None:
    """Analyse many turns with one loaded agent (models load once), resumable; exit 0 when all were analysed,
    1 when some inputs were refused (each with its reason in the results), 2 for a usage mistake."""
    from tqdm import tqdm

    from emotion_agent.agent.runtime import EmotionAgent

    kind, items = read_inputs(inputs)
    mode = text_mode or ("offline" if kind in ("csv", "jsonl") else None)
    if mode is not None and mode not in ("online", "offline", "utterance"):
        raise UserError(f"--text-mode must be online, offline or utterance, not {mode!r}")
    if mode is not None:
        items = with_dialogue(items, mode)
        os.environ["EMOTION_AGENT_TEXT_MODE"] = mode  # also for Ray actors started from this process
    done = done_ids(out)
    todo = [(i, item) for i, item in items if i not in done]
    settings = settings_from(llm=llm)
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    if engine == "ray":
        from emotion_agent.cli.ray_engine import run_on_ray

        load_s = run_on_ray(todo, out, llm=llm, explain=explain, address=address, workers=workers,
                            threads_per_worker=threads_per_worker, analyse=analyse_input, write=write_record,
                            written=done)
        todo_local: list[tuple[str, dict[str, Any] | str]] = []
    elif engine == "local":
        todo_local = todo
    else:
        raise UserError(f"--engine must be local or ray, not {engine!r}")
    agent = EmotionAgent(settings) if todo_local else None
    if engine == "local":
        load_s = time.perf_counter() - start
    with out.open("a", encoding="utf-8") as fh:
        for input_id, item in tqdm(todo_local, desc="batch", unit="turn", dynamic_ncols=True,
                                   disable=not todo_local):
            write_record(fh, analyse_input(agent, settings, input_id, item, explain))
    wall = time.perf_counter() - start
    summary = summarize(out, kind, inputs, len(items), len(todo), wall, load_s)
    Path(f"{out}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"{summary['inputs']} input(s): {summary['analysed']} analysed, {summary['refused']} refused "
                  f"with a reason ({len(done)} already done before this run); this run {wall:.1f} s incl. "
                  f"{load_s:.1f} s loading, {summary['this_run_per_turn_s']:.3f} s per turn; results in {out}, "
                  f"summary in {out}.summary.json")
    if summary["refused"]:
        for r in summary["refusals"][:10]:
            console.print(f"[yellow]refused[/yellow] {r['input']}: {r['error']}")
        raise typer.Exit(1)


def analyse_input(agent: Any, settings: Any, input_id: str, item: dict[str, Any] | str,
                  explain: bool) -> dict[str, Any]:
    """One input's result line (``status`` ok with the label and per-modality readings, or refused with a
    reason): the same record for the local and the Ray engine."""
    from emotion_agent.agent.inputs import InputError, make_turn
    from emotion_agent.tools.media_checks import MediaCheckError

    t0 = time.perf_counter()
    rec: dict[str, Any] = {"input": input_id}
    try:
        if isinstance(item, str):
            raise InputError(item)
        turn = make_turn(text=item.get("text"), audio=item.get("audio"), image=item.get("image"),
                         video=item.get("video"), conversation_id=item.get("conversation_id"),
                         speaker=item.get("speaker"), settings=settings, context=prior_turns(item.get("_context")),
                         future=prior_turns(item.get("_future")))
        result = agent.analyze(turn, explain=explain)
        rec.update(status="ok", label=result.label, confidence=result.confidence, text_mode=result.text_mode,
                   warnings=result.warnings, explanation=result.explanation,
                   disagreement=[v.model_dump() for v in result.disagreement],
                   **per_modality(result))
    except (InputError, MediaCheckError, ValueError) as exc:
        rec.update(status="refused", error=" ".join(str(exc).split())[:300],
                   code=getattr(exc, "code", "invalid_input"))
    rec["wall_s"] = round(time.perf_counter() - t0, 3)
    return rec


def write_record(fh: Any, rec: dict[str, Any]) -> None:
    """Append one result line, flushed and fsynced, so a run cut at any time resumes after it."""
    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def per_modality(result: FusedResult) -> dict[str, Any]:
    """What each expert said on its own (label, confidence, rounded distribution), the transcript, each
    modality's share of the fused decision and the per-stage timings: an analyst sees "words neutral, voice
    angry" without the full evidence, and the records can be re-fused offline."""
    readings = [{"modality": e.modality, "expert": e.expert, "label": e.label, "confidence": e.confidence,
                 "distribution": {k: round(v, 4) for k, v in e.distribution.items()}, "warnings": e.warnings}
                for e in result.evidence if e.expert != "transcribe"]
    asr = next((e for e in result.evidence if e.expert == "transcribe"), None)
    transcript = None if asr is None else {"text": asr.transcript and asr.transcript.text, "warnings": asr.warnings,
                                           "reliable": asr.transcript and asr.transcript.reliable,
                                           "mean_logprob": asr.transcript and asr.transcript.mean_logprob}
    return {"modalities": readings, "transcript": transcript,
            "contributions": {k: round(v, 4) for k, v in result.contributions.items()},
            "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()}}


def summarize(out: Path, kind: str, spec: str, n_inputs: int, n_run: int, wall: float, load_s: float) -> dict[str, Any]:
    """Counts, timings and refusals over every result line of the output file (this run and earlier ones)."""
    recs = {r["input"]: r for r in results(out) if isinstance(r.get("input"), str)}
    walls = [float(r.get("wall_s") or 0) for r in recs.values() if r.get("status") == "ok"]
    refusals = [{"input": r["input"], "code": r.get("code"), "error": r.get("error")}
                for r in recs.values() if r.get("status") == "refused"]
    labels: dict[str, int] = {}
    for r in recs.values():
        if r.get("status") == "ok":
            labels[r["label"]] = labels.get(r["label"], 0) + 1
    return {"source": spec, "kind": kind, "inputs": n_inputs, "answered": len(recs),
            "analysed": len(walls), "refused": len(refusals), "labels": labels,
            "this_run_turns": n_run, "this_run_wall_s": round(wall, 1), "this_run_model_load_s": round(load_s, 1),
            "this_run_per_turn_s": round((wall - load_s) / max(n_run, 1), 4),
            "per_turn_p50_s": round(statistics.median(walls), 3) if walls else None,
            "per_turn_p95_s": round(sorted(walls)[max(0, int(0.95 * len(walls)) - 1)], 3) if walls else None,
            "refusals": refusals}
