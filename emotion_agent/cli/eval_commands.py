"""``emotion-agent eval meld``, ``emotion-agent report`` and ``emotion-agent why``: registered onto the main CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from emotion_agent.cli.ray_engine import ADDRESS_OPTION, ENGINE_OPTION, THREADS_OPTION, engine_for
from emotion_agent.console import UserError, console, settings_from

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate the agent on labeled data.")


def _fmt(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def print_ablations(rows: list[dict]) -> None:
    """Print the ablation table."""
    table = Table("row", "n", "W-F1", "95% CI", "macro-F1", "acc", "ECE", title="Ablations")
    for r in rows:
        ci = r.get("weighted_f1_ci95")
        table.add_row(r["name"], str(r["n"]), _fmt(r["weighted_f1"]),
                      f"{ci[0]:.1f}-{ci[1]:.1f}" if ci else "-", _fmt(r["macro_f1"]), _fmt(r["accuracy"]),
                      _fmt(r.get("ece")))
    console.print(table)
    for r in rows:
        console.print(f"  {r['name']}: {r['description']}", style="dim")


@eval_app.command("meld")
def eval_meld(
    split: str = typer.Option("dev", help="dev | test (train is for training)."),
    limit: Optional[int] = typer.Option(None, help="Stratified sample of N utterances (fixed seed)."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default runs/meld-<split>-<config hash>). "
                                                  "Rerun the same command to resume."),
    modalities: str = typer.Option("text", help="Comma list of text,audio,vision (audio/vision only where MELD "
                                                "clips exist locally)."),
    context: str = typer.Option("online", help="online (default: the text expert's dialogue model over each "
                                "utterance's past turns), offline (past and later turns: the whole dialogue), or "
                                "a number K: the text expert alone with K previous utterances as context (0 = off)."),
    explain: bool = typer.Option(False, "--explain/--no-explain", help="Also generate explanations (slow)."),
    fusion: Optional[str] = typer.Option(None, help="Fusion policy (default: settings.fusion)."),
    adjudicate: Optional[bool] = typer.Option(None, "--adjudicate/--no-adjudicate",
                                              help="Let the LLM pick between the fused top-2 labels on close calls "
                                                   "(default: settings.adjudicate, off — it lowered MELD dev W-F1)."),
    adjudicate_margin: Optional[float] = typer.Option(None, help="Close call = fused top-1 minus top-2 below this "
                                                                 "(default 0.1). The summary re-scores smaller margins."),
    ablations: bool = typer.Option(False, "--ablations", help="Also run the ablation rows (incl. LLM adjudication) "
                                                              "and print one table."),
    seed: int = typer.Option(13, help="Seed of the stratified --limit sample."),
    llm: Optional[str] = typer.Option(None, help="LLM for explanations and adjudication: registry name or .gguf path."),
    workers: int = typer.Option(1, help="Utterances analysed in parallel (threads sharing the experts and the LLM). "
                                        "Useful with --explain on a shared LLM server (EMOTION_AGENT_LLM_URL); with "
                                        "the in-process LLM the explanations are serialized by its lock, and on 2 "
                                        "cores labels-only runs gain little. With --engine ray: Ray actors, each "
                                        "with its own agent, a dialogue never split. Not part of the run's identity."),
    engine: str = ENGINE_OPTION,
    address: Optional[str] = ADDRESS_OPTION,
    threads_per_worker: int = THREADS_OPTION,
) -> None:
    """Score the agent on MELD: one JSONL record per utterance + summary.json; resumable; cached experts."""
    from emotion_agent.evals.meld_ablations import run_ablations
    from emotion_agent.evals.meld_solver import MAX_WORKERS
    from emotion_agent.evals.run_meld import RunConfigError, run

    if split not in ("dev", "test", "train"):
        raise UserError(f"unknown split '{split}' (use dev or test)")
    if limit is not None and limit <= 0:
        raise UserError("--limit must be a positive number")
    from emotion_agent.evals.meld_config import context_setting

    try:
        recalled, text_mode = context_setting(context)
    except ValueError as exc:
        raise UserError(f"--context: {exc}") from exc
    context_value: int | str = recalled if text_mode == "utterance" else text_mode
    if workers < 1:
        raise UserError("--workers must be >= 1")
    pool = engine_for(engine, address, workers, threads_per_worker)
    if workers > MAX_WORKERS and pool is None:
        raise UserError(f"--workers must be at most {MAX_WORKERS}")
    if adjudicate_margin is not None and not 0.0 <= adjudicate_margin <= 1.0:
        raise UserError("--adjudicate-margin must be between 0 and 1")
    mods = [m.strip() for m in modalities.split(",") if m.strip()]
    settings = settings_from(llm=llm)
    needs_llm = explain or ablations or (settings.adjudicate if adjudicate is None else adjudicate)
    if needs_llm and not settings.llm_url:
        from emotion_agent.agent.llm import resolve_gguf

        resolve_gguf(settings.llm, settings)
        if workers > 1:
            console.print("note: the in-process LLM serves one turn at a time; set EMOTION_AGENT_LLM_URL to a "
                          "shared LLM server for parallel LLM calls", style="dim", soft_wrap=True)
    try:
        summary = run(split, limit=limit, out=out, explain=explain, context=context_value, modalities=mods,
                      fusion=fusion, seed=seed, settings=settings, workers=1 if pool else workers,
                      adjudicate=adjudicate, adjudicate_margin=adjudicate_margin, engine=pool)
    except RunConfigError as exc:
        raise UserError(str(exc)) from exc
    print_summary(summary)
    if ablations:
        from emotion_agent.evals.paths import runs_dir

        folder = out or runs_dir() / f"meld-{split}-{summary['run_id']}"
        rows = run_ablations(split, out=folder, limit=limit, context=context_value, modalities=mods,
                             fusion=summary["config"]["fusion"], seed=seed, settings=settings, workers=workers,
                             adjudicate_margin=summary["config"].get("adjudicate_margin"))
        print_ablations(rows)


@eval_app.command("media")
def eval_media(
    task: str = typer.Argument(..., help="speech (RAVDESS + EmoDB, leave-speakers-out), faces (FER2013 crops) or "
                                         "nonspeech (generated tones, noise, silence)."),
    limit: Optional[int] = typer.Option(None, help="Class-balanced sample of N items (fixed seed)."),
    corpus: str = typer.Option("all", help="speech only: ravdess, emodb or all."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default runs/<task>-<corpus>-<limit>). "
                                                  "Rerun the same command to resume."),
    heads: Optional[Path] = typer.Option(None, help="speech only: folder of fold heads (default "
                                                    "<cache>/speech_fold_heads; made by train_speech_head "
                                                    "--fold-heads)."),
    engine: str = ENGINE_OPTION,
    address: Optional[str] = ADDRESS_OPTION,
    workers: int = typer.Option(2, min=1, help="Ray actors, each with its own agent (--engine ray)."),
    threads_per_worker: int = THREADS_OPTION,
    save: Optional[Path] = typer.Option(None, help="Also copy the summary here (e.g. results/media/faces_392.json; "
                                                   "the confusion plot goes beside it as *_confusion.png)."),
) -> None:
    """Score the agent on speech clips, face crops or non-speech audio through EmotionAgent.analyze."""
    from emotion_agent.evals.paths import runs_dir
    from emotion_agent.evals.run_media import MediaEvalError, iter_rows, run

    if limit is not None and limit < 1:
        raise UserError("--limit must be a positive number")
    folder = out or runs_dir() / f"{task}-{corpus}-{limit or 'all'}"
    try:
        summary = run(task, out=folder, settings=settings_from(), limit=limit, corpus=corpus, heads=heads,
                      engine=engine_for(engine, address, workers, threads_per_worker))
    except MediaEvalError as exc:
        raise UserError(str(exc)) from exc
    if task == "nonspeech":
        console.print(f"{summary['n']} non-speech inputs: {summary['confident_labels']} labelled with confidence > "
                      f"{summary['limit']} (max {summary['max_confidence']:.2f})")
    else:
        table = Table("row", "n", "accuracy", "balanced acc", "macro-F1", "W-F1", title=f"{task}: ablation")
        for name, row in iter_rows(summary):
            table.add_row(name, str(summary["n"]), _fmt(row["accuracy"]), _fmt(row.get("balanced_accuracy")),
                          _fmt(row["macro_f1"]), _fmt(row["weighted_f1"]))
        console.print(table)
        if task == "faces":
            for name, row in iter_rows(summary):
                console.print(f"  {name:22s} recall " + "  ".join(f"{k} {v:.0f}" for k, v in
                                                                   row.get("per_class_recall", {}).items()),
                              soft_wrap=True)
            console.print(f"  default setting: {summary.get('default_face_model')}", soft_wrap=True)
            for v in summary.get("video", []):
                console.print(f"  video {v['clip']} (gold {v['gold']}) with {v['model']}: face {v['face_label']} "
                              f"{v['face_confidence']}, frames {v['frame_labels']}, {v['wall_s']} s", soft_wrap=True)
    console.print(f"records and summary in {folder}")
    if save is not None:
        import shutil

        save.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "summary.json", save)
        if (folder / "confusion.png").is_file():
            shutil.copyfile(folder / "confusion.png", save.with_name(save.stem + "_confusion.png"))
        console.print(f"summary copied to {save}")


def print_summary(summary: dict) -> None:
    """Print a run's metrics, per-class scores, latency and cache use."""
    m = summary["metrics"]
    b = summary["always_neutral"]
    c = summary["config"]
    modes = ", ".join(f"{k} ({v})" for k, v in (summary.get("text_modes") or {}).items())
    console.print(f"MELD {c['split']} n={m['n']} fusion={c['fusion']} context={c['context']} "
                  f"text mode={modes or '-'} modalities={','.join(c['modalities'])}")
    console.print(f"  agent          weighted-F1 {m['weighted_f1']:.1f} (95% CI {m['weighted_f1_ci95'][0]:.1f}-"
                  f"{m['weighted_f1_ci95'][1]:.1f}), macro-F1 {m['macro_f1']:.1f}, accuracy {m['accuracy']:.1f}, "
                  f"ECE {m.get('ece', 0):.1f}, sentiment W-F1 {m['sentiment']['weighted_f1']:.1f}")
    console.print(f"  always-neutral weighted-F1 {b['weighted_f1']:.1f}, macro-F1 {b['macro_f1']:.1f}, "
                  f"accuracy {b['accuracy']:.1f}")
    for lab, pc in m["per_class"].items():
        console.print(f"    {lab:9s} P {pc['precision']:5.1f}  R {pc['recall']:5.1f}  F1 {pc['f1']:5.1f}  "
                      f"n {pc['support']}")
    e = summary.get("explanations")
    if e:
        console.print(f"  explanations n={e['n']}: label agreement {e['agreement_rate']:.1f}%, valid citations "
                      f"{e['citation_validity_rate']:.1f}% (cited list {e.get('list_citation_validity_rate', 0):.1f}%, "
                      f"\\[ids] in prose {e.get('prose_citation_validity_rate', 0):.1f}%), cite at least one "
                      f"{e['cites_any_rate']:.1f}%, "
                      f"LLM-written {e['llm_share']:.0f}%")
    a = summary.get("adjudication")
    if a:
        console.print(f"  LLM adjudication (margin < {a['margin']:g}): asked {a['asked']}, changed {a['changed']} "
                      f"({a['changed_to_correct']} to gold, {a['changed_from_correct']} away from gold), failed "
                      f"{a['failed']}; W-F1 by margin: "
                      + ", ".join(f"{c['margin']:g}→{c['weighted_f1']:.1f}" for c in a["curve"]))
    w = summary["latency_ms"].get("wall", {})
    console.print(f"  latency per turn p50 {_fmt(w.get('p50'), 0)} ms, p95 {_fmt(w.get('p95'), 0)} ms; wall "
                  f"{summary['wall_seconds']['sum_of_sessions']:.0f} s over {summary['wall_seconds']['sessions']} "
                  f"session(s); expert cache {summary['expert_cache']}; modalities used {summary['modalities_used']}")


def report(
    runs: list[Path] = typer.Argument(..., help="One run folder (report) or two (comparison A vs B)."),
    out: Optional[Path] = typer.Option(None, help="Where to write report.md/.html (default: the (first) run)."),
) -> None:
    """Write report.md and a self-contained report.html (plots inlined); two runs → a comparison."""
    from emotion_agent.evals.report import ReportError, compare_runs, report_run

    for r in runs:
        if not (r / "records.jsonl").is_file():
            raise UserError(f"{r} is not a run folder (no records.jsonl)")
    if len(runs) > 2:
        raise UserError("give one run (report) or two (comparison)")
    try:
        paths = report_run(runs[0], out) if len(runs) == 1 else compare_runs(runs[0], runs[1], out)
    except ReportError as exc:
        raise UserError(str(exc)) from exc
    for p in paths:
        console.print(f"wrote {p}")


def why(
    run: Path = typer.Argument(..., help="Run folder."),
    dialogue: int = typer.Option(..., "--dialogue", "-d", help="MELD dialogue id."),
    utterance: int = typer.Option(..., "--utterance", "-u", help="MELD utterance id."),
    ask: Optional[str] = typer.Option(None, help="A question about the label, e.g. 'why not sadness?', answered from "
                                                 "the stored evidence (distributions, contributions, word weights)."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored record (and answer) as JSON."),
) -> None:
    """Why was this utterance labeled X? Evidence per expert, contributions, context, explanation."""
    from emotion_agent.evals.why import WhyError, answer_question, find_record, render_why

    try:
        rec = find_record(run, dialogue, utterance)
        answer = None
        if ask is not None:
            answer = answer_question(rec, ask)
    except WhyError as exc:
        raise UserError(str(exc)) from exc
    if as_json:
        import json
        import sys

        sys.stdout.write(json.dumps({"record": rec, "answer": answer}, indent=2) + "\n")
        return
    render_why(rec, console)
    if answer is not None:
        console.rule("answer")
        console.print(answer["answer"], markup=False, highlight=False)
        console.print(f"cites: {', '.join(answer['cited_evidence_ids']) or 'nothing'}", style="dim")


@eval_app.command("ask")
def eval_ask(
    run: Path = typer.Option(..., "--run", help="A MELD run folder (records.jsonl), e.g. from "
                                                "`emotion-agent eval meld --split dev --limit 80`."),
    models: str = typer.Option("qwen2.5-coder-1.5b,qwen2.5-coder-0.5b", help="Comma list of chat models (registry "
                                                                            "names or .gguf paths), asked in turn."),
    dialogues: int = typer.Option(5, help="MELD dev dialogues analysed into a private memory as conversations."),
    limit: Optional[int] = typer.Option(None, help="Computable questions per model (round-robin over templates; "
                                                   "open: limit/3; hostile: all). Default: every question."),
    out: Optional[Path] = typer.Option(None, help="Folder of rows.jsonl, questions and memory (default "
                                                  "runs/ask-<run name>). Rerun the same command to resume."),
    seed: int = typer.Option(7, help="Seed of the question sample."),
) -> None:
    """Score the ask agent: computable questions (answers computed from the records), open why/how questions
    (grounding), hostile questions (refusals, cross-scope reads); latency and tokens per model."""
    from emotion_agent.evals.paths import RESULTS_DIR, runs_dir
    from emotion_agent.evals.run_ask import run as run_ask

    if not (run / "records.jsonl").is_file():
        raise UserError(f"{run} has no records.jsonl (run `emotion-agent eval meld --split dev --limit 80` first)")
    folder = out or runs_dir() / f"ask-{run.name}"
    target = RESULTS_DIR / (f"ask_eval_limit{limit}.json" if limit else "ask_eval.json")
    summary = run_ask(run, folder, settings_from(), [m for m in models.split(",") if m], dialogues_n=dialogues,
                      limit=limit, seed=seed, results=target, progress=lambda s: console.print(s, markup=False))
    table = Table("model", "computable acc %", "grounded %", "tool calls valid %", "hostile ok %", "p50 s", "p95 s")
    for name, m in summary["models"].items():
        table.add_row(name, str(m["computable_accuracy_pct"]), str(m["shown_answers_grounded_pct"]),
                      str(m["tool_call_validity_pct"]), str(m["hostile_passed_pct"]), str(m["latency_s"]["p50"]),
                      str(m["latency_s"]["p95"]))
    console.print(table)
    console.print(f"questions generated {summary['questions_generated']}; summary: {target}")
