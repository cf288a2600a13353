""""Why was this labeled X?": read one stored record of a run and show (or explain) its decision.

    emotion-agent why runs/NAME --dialogue D --utterance U [--ask "..."]

Without ``--ask`` everything shown comes straight from the record: each expert's evidence (id,
distribution, confidence, cues, warnings, cache status), each modality's share of the fused
label, the conversation context the agent recalled, the explanation and its checks. With
``--ask`` the shared why service (``agent/why.py``, also behind ``POST /v1/why``) answers from
the record's evidence: contrastive questions ("why not sadness?") included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape



class WhyError(ValueError):
    """The run or the utterance cannot be found (user-facing, one line)."""


def find_record(run: Path, dialogue: int, utterance: int) -> dict[str, Any]:
    """The record of (dialogue, utterance) in run folder ``run``; WhyError when absent."""
    from emotion_agent.evals.records import read_records

    path = run / "records.jsonl"
    if not path.is_file():
        raise WhyError(f"{run} is not a run folder (no records.jsonl)")
    for rec in read_records(path):
        if rec["dialogue_id"] == dialogue and rec["utterance_id"] == utterance:
            return rec
    raise WhyError(f"no record for dialogue {dialogue} utterance {utterance} in {run} "
                   f"(a --limit run holds only a sample)")


def _top(dist: dict[str, float], k: int = 3) -> str:
    return ", ".join(f"{lab} {p:.2f}" for lab, p in sorted(dist.items(), key=lambda kv: -kv[1])[:k])


def render_why(rec: dict[str, Any], console: Console) -> None:
    """Print one record's trail: inputs, evidence, fusion, adjudication, context, explanation."""
    res = rec["result"]
    mark = "[green]correct[/green]" if rec["correct"] else f"[red]wrong (gold {rec['gold']})[/red]"
    console.rule(f"{rec['key']} · {rec['speaker']}")
    console.print(f"\"{escape(rec['text'])}\"")
    console.print(f"label [bold]{res['label']}[/bold] confidence {res['confidence']:.2f} by "
                  f"{res.get('fusion_policy')} fusion — {mark}")
    console.print(f"fused distribution: {_top(res['distribution'], 7)}")
    console.print(f"inputs: modalities available {rec.get('modalities_available')}, used "
                  f"{rec.get('modalities_used')}" + (f"; {'; '.join(rec['media_warnings'])}"
                                                      if rec.get("media_warnings") else ""))
    console.print("[bold]evidence per expert[/bold]:")
    for e in res["evidence"]:
        console.print(f"  [{e['id']}] {e['expert']} ({e['modality']}, {e['model_id']}): {_top(e['distribution'])}; "
                      f"confidence {e['confidence']:.2f}; p({res['label']}) = {e['distribution'][res['label']]:.2f}; "
                      f"cache {e.get('extra', {}).get('cache', '-')}; {e.get('latency_ms', 0):.0f} ms",
                      markup=False, highlight=False)
        for c in e.get("cues", [])[:6]:
            console.print(f"      cue: {_cue(c)}", markup=False, highlight=False)
        for w in e["warnings"]:
            console.print(f"      warning: {w}", markup=False, highlight=False, style="yellow")
    if res.get("contributions"):
        console.print("modality contributions to the fused label: "
                      + ", ".join(f"{m} {s:.0%}" for m, s in res["contributions"].items()))
    adj = res.get("adjudication")
    if adj and adj.get("status") != "not_needed":
        what = (f"picked {adj['chosen']}" + (f" over the fused {adj['fused_label']}" if adj.get("changed") else
                                             " (the fused label)")) if adj["status"] == "applied" else \
            f"failed ({adj.get('detail')}); fused label kept"
        console.print(f"LLM adjudication between {' / '.join(adj['candidates'])} (fused margin {adj['margin']:.2f} "
                      f"< {adj['threshold']:g}): {what}", markup=False, highlight=False)
    ctx = rec.get("context") or []
    if ctx:
        console.print(f"memory / context recalled ({len(ctx)} previous turn(s); labels are the agent's predictions):")
        for t in ctx:
            console.print(f"  turn {t['turn_index']} {t.get('speaker') or '?'}: \"{escape(t['text'][:120])}\" → "
                          f"{t.get('label')} ({t.get('confidence') if t.get('confidence') is not None else '-'})")
    else:
        console.print("memory / context: none (first turn or context off)")
    if res.get("explanation"):
        console.print(f"explanation ({res.get('explanation_source')}): [italic]{escape(res['explanation'])}[/italic]")
        console.print(f"cites: {', '.join(res.get('cited_evidence_ids') or []) or 'nothing'}")
        chk = rec.get("checks") or {}
        if chk:
            console.print(f"checks: label agreement {'yes' if chk['agrees'] else 'NO'}, citations valid "
                          f"{'yes' if chk['citations_valid'] else 'NO ' + str(chk['invalid_ids'])}")
    else:
        console.print("explanation: none (run without --explain)")
    for w in res.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print("timings ms: " + ", ".join(f"{k} {v:.0f}" for k, v in res.get("timings_ms", {}).items()), style="dim")


def _cue(c: dict[str, Any]) -> str:
    s = c["name"]
    if c.get("value") is not None:
        s += f" = {c['value']}"
    if c.get("detail"):
        s += f" ({c['detail']})"
    return s


def answer_question(rec: dict[str, Any], question: str) -> dict[str, Any]:
    """Answer ``question`` about a run record with the shared why service (agent/why.py)."""
    from emotion_agent.agent.why import answer_why, evidence_of

    if not " ".join((question or "").split()):
        raise WhyError("--ask needs a question")
    return answer_why(evidence_of(rec), question).model_dump()
