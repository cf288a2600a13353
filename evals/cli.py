"""``emotion-agent eval meld`` (and, later, report / why): registered onto the main CLI app."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from agent.cli import app, console

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate the agent on labeled data.")
app.add_typer(eval_app, name="eval")


@eval_app.command("meld")
def eval_meld(
    split: str = typer.Option("dev", help="dev | test (train is for training)."),
    limit: Optional[int] = typer.Option(None, help="Stratified sample of N utterances (fixed seed)."),
    out: Optional[Path] = typer.Option(None, help="Run folder for records.jsonl and summary.json."),
    explain: bool = typer.Option(False, "--explain/--no-explain", help="Also generate explanations (slow)."),
    context: int = typer.Option(3, help="Previous utterances of the dialogue given as context."),
) -> None:
    """Score the agent's labels on MELD: weighted-F1, macro-F1, accuracy, per-class P/R/F1."""
    from evals.run_meld import run

    summary = run(split, limit=limit, out=out, explain=explain, context=context)
    m = summary["metrics"]
    console.print(f"MELD {split} n={m['n']}: weighted-F1 {m['weighted_f1']:.1f} "
                  f"(95% CI {m['weighted_f1_ci95'][0]:.1f}-{m['weighted_f1_ci95'][1]:.1f}), "
                  f"macro-F1 {m['macro_f1']:.1f}, accuracy {m['accuracy']:.1f}; "
                  f"always-neutral {m['always_neutral_weighted_f1']:.1f}")
    for lab, pc in m["per_class"].items():
        console.print(f"  {lab:9s} P {pc['precision']:5.1f}  R {pc['recall']:5.1f}  F1 {pc['f1']:5.1f}  "
                      f"n {pc['support']}")
