"""Reports of MELD runs: ``report.md`` and a self-contained ``report.html`` (PNG plots inlined as base64).

    emotion-agent report runs/NAME            # one run
    emotion-agent report runs/A runs/B        # A vs B with per-class deltas

Everything is recomputed from the run's ``records.jsonl`` (and ``summary.json`` for provenance and
ablations), so a report of a resumed run covers all of its records.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from emotion_agent.tools.evidence import LABELS


class ReportError(ValueError):
    """The run folder cannot be reported (user-facing, one line)."""


def load_run(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run's summary and records; rescored from the records when the summary is stale."""
    from emotion_agent.evals.records import read_records
    from emotion_agent.evals.meld_summary import summarize_run

    records = read_records(run / "records.jsonl")
    if not records:
        raise ReportError(f"{run} has no records")
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if summary.get("n") != len(records):  # interrupted run: score what is there (keep ablations)
        ablations = summary.get("ablations")
        summary = summarize_run(run)
        if ablations:
            summary["ablations"] = ablations
    return summary, records


# ---- plots -----------------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def plot_confusion(metrics: dict[str, Any]) -> bytes:
    """PNG of the confusion matrix (counts, coloured by row share)."""
    plt = _plt()
    m = np.array(metrics["confusion"]["matrix"], dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right")
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(LABELS)):
        for j in range(len(LABELS)):
            ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="row share")
    ax.set_title("Confusion matrix (counts; colour = recall share)")
    return _png(fig)


def plot_per_class(metrics_list: list[dict[str, Any]], names: list[str]) -> bytes:
    """PNG of per-class F1, one bar per run and label."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(metrics_list)
    x = np.arange(len(LABELS))
    for i, (m, name) in enumerate(zip(metrics_list, names)):
        ax.bar(x + i * width - 0.4 + width / 2, [m["per_class"][lab]["f1"] for lab in LABELS], width, label=name)
    ax.set_xticks(x, LABELS)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Per-class F1")
    if len(names) > 1:
        ax.legend()
    return _png(fig)


def plot_ablations(rows: list[dict[str, Any]]) -> bytes:
    """PNG of each ablation row's weighted-F1 with its 95 % interval."""
    plt = _plt()
    rows = [r for r in rows if r.get("weighted_f1") is not None]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(rows)))
    y = np.arange(len(rows))
    vals = [r["weighted_f1"] for r in rows]
    err = np.array([[r["weighted_f1"] - r["weighted_f1_ci95"][0], r["weighted_f1_ci95"][1] - r["weighted_f1"]]
                    if r.get("weighted_f1_ci95") else [0, 0] for r in rows]).T
    ax.barh(y, vals, xerr=err, color=["#999" if r["name"] == "always_neutral" else "#3b7dd8" for r in rows])
    ax.set_yticks(y, [r["name"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("weighted-F1 (%) with 95% bootstrap interval")
    ax.set_title("Ablations")
    for yi, v, r in zip(y, vals, rows):
        right = r["weighted_f1_ci95"][1] if r.get("weighted_f1_ci95") else v
        ax.text(right + 0.8, yi, f"{v:.1f}", va="center", fontsize=8)
    return _png(fig)


def plot_reliability(metrics: dict[str, Any]) -> bytes:
    """PNG reliability diagram: accuracy against confidence per bin."""
    plt = _plt()
    bins = metrics.get("reliability", [])
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="#888", label="perfect calibration")
    xs = [b["confidence"] for b in bins if b["n"]]
    ys = [b["accuracy"] for b in bins if b["n"]]
    ns = [b["n"] for b in bins if b["n"]]
    ax.scatter(xs, ys, s=[20 + 200 * n / max(ns) for n in ns] if ns else 20, zorder=3)
    ax.plot(xs, ys, color="#3b7dd8")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {metrics.get('ece', 0):.1f})")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def plot_latency(records: list[dict[str, Any]]) -> bytes:
    """PNG histogram of time per utterance, with p50 and p95 marked."""
    plt = _plt()
    wall = np.array([r.get("wall_ms", 0.0) for r in records])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(wall, bins=40, color="#3b7dd8")
    ax.axvline(np.median(wall), color="k", linestyle="--", label=f"p50 {np.median(wall):.0f} ms")
    ax.axvline(np.percentile(wall, 95), color="r", linestyle=":", label=f"p95 {np.percentile(wall, 95):.0f} ms")
    ax.set_xlabel("time per utterance (ms)")
    ax.set_ylabel("utterances")
    ax.set_title("Latency per turn")
    ax.legend()
    return _png(fig)


# ---- writing ---------------------------------------------------------------------------------
def _f(x: Any, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _ci(m: dict[str, Any]) -> str:
    ci = m.get("weighted_f1_ci95")
    return f"{ci[0]:.1f}–{ci[1]:.1f}" if ci else "-"


def run_markdown(run: Path, summary: dict[str, Any], images: dict[str, str]) -> str:
    """The Markdown report of one run (metrics, ablations, checks, latency, provenance)."""
    m = summary["metrics"]
    b = summary.get("always_neutral", {})
    c = summary.get("config", {})
    lines = [f"# MELD {c.get('split', '?')} run `{run.name}`", "",
             f"n = {m['n']} utterances · fusion `{c.get('fusion')}` · context {c.get('context')} · text mode "
             f"{', '.join(f'{k} ({v})' for k, v in (summary.get('text_modes') or {}).items()) or '-'} · modalities "
             f"{', '.join(c.get('modalities', []))} · explanations {'on' if c.get('explain') else 'off'} · "
             f"git {str((summary.get('git') or {}).get('commit'))[:10]}", "",
             "| | weighted-F1 | 95% CI | macro-F1 | accuracy | ECE | sentiment W-F1 |",
             "|---|---|---|---|---|---|---|",
             f"| agent | {m['weighted_f1']:.1f} | {_ci(m)} | {m['macro_f1']:.1f} | {m['accuracy']:.1f} | "
             f"{_f(m.get('ece'))} | {m['sentiment']['weighted_f1']:.1f} |",
             f"| always-neutral | {_f(b.get('weighted_f1'))} | {_ci(b)} | {_f(b.get('macro_f1'))} | "
             f"{_f(b.get('accuracy'))} | - | - |", "",
             "## Per class", "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for lab in LABELS:
        pc = m["per_class"][lab]
        lines.append(f"| {lab} | {pc['precision']:.1f} | {pc['recall']:.1f} | {pc['f1']:.1f} | {pc['support']} |")
    if summary.get("ablations"):
        lines += ["", "## Ablations", "", "| row | what | n | W-F1 | 95% CI | macro-F1 | acc | ECE |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in summary["ablations"]:
            lines.append(f"| {r['name']} | {r['description']} | {r['n']} | {_f(r['weighted_f1'])} | {_ci(r)} | "
                         f"{_f(r['macro_f1'])} | {_f(r['accuracy'])} | {_f(r.get('ece'))} |")
    adj = summary.get("adjudication") or next((r["adjudication"] for r in summary.get("ablations") or []
                                               if r.get("adjudication")), None)
    if adj:
        lines += adjudication_lines(adj)
    e = summary.get("explanations")
    if e:
        lines += ["", "## Explanation checks", "",
                  f"{e['n']} explanations: label agreement **{e['agreement_rate']:.1f} %**, valid citations "
                  f"**{e['citation_validity_rate']:.1f} %** (cited-id list {e.get('list_citation_validity_rate', 0):.1f} %, "
                  f"[ids] written in the prose {e.get('prose_citation_validity_rate', 0):.1f} %), at least one citation {e['cites_any_rate']:.1f} %, "
                  f"LLM-written {e['llm_share']:.0f} % (rest: template fallback).",
                  "Rule: the explanation names the emitted label (or a form of it) and asserts no other label as "
                  "the answer; every cited id (list and `[id]` in the prose) is an evidence id of the record."]
        if e.get("disagreements"):
            lines.append(f"Disagreeing records: {', '.join(e['disagreements'][:20])}")
    lat = summary.get("latency_ms", {})
    lines += ["", "## Latency (ms per utterance)", "", "| stage | p50 | p95 | mean |", "|---|---|---|---|"]
    for k, v in sorted(lat.items()):
        lines.append(f"| {k} | {_f(v['p50'], 1)} | {_f(v['p95'], 1)} | {_f(v['mean'], 1)} |")
    ws = summary.get("wall_seconds", {})
    lines += ["", f"Wall time: {ws.get('sum_of_sessions', 0):.0f} s over {ws.get('sessions', 0)} session(s) "
              f"(turns alone {ws.get('sum_of_turns', 0):.0f} s). Expert cache: {summary.get('expert_cache')}. "
              f"Modalities available: {summary.get('modalities_available')}; used: {summary.get('modalities_used')}.",
              "", "## Provenance", "", f"- models: {json.dumps(summary.get('model_ids', {}))}",
              f"- prompt hashes: {json.dumps(summary.get('prompt_hashes', {}))}",
              f"- packages: {json.dumps({k: v for k, v in (summary.get('packages') or {}).items() if v})}",
              f"- git: {json.dumps(summary.get('git'))}", ""]
    for name, title in (("confusion", "Confusion matrix"), ("per_class", "Per-class F1"),
                        ("ablations", "Ablations"), ("reliability", "Reliability"), ("latency", "Latency")):
        if name in images:
            lines.append(f"![{title}]({images[name]})")
    return "\n".join(lines) + "\n"


def adjudication_lines(adj: dict[str, Any]) -> list[str]:
    """The LLM-adjudication section: what the LLM changed, and W-F1 at each margin (0 = fusion alone)."""
    lines = ["", "## LLM adjudication", "",
             f"The LLM was asked on {adj['asked']} close calls (fused top-2 margin < {adj['margin']:g}); it changed "
             f"{adj['changed']} labels: {adj['changed_to_correct']} to the gold label, {adj['changed_from_correct']} "
             f"away from it; {adj['failed']} calls failed (fused label kept); LLM p50 "
             f"{_f(adj.get('llm_ms_p50'), 0)} ms. Smaller margins are re-scored from the same records.", "",
             "| margin < | adjudicated | changed | W-F1 | macro-F1 | accuracy |", "|---|---|---|---|---|---|"]
    for c in adj["curve"]:
        lines.append(f"| {c['margin']:g} | {c['adjudicated']} | {c['changed']} | {c['weighted_f1']:.1f} | "
                     f"{c['macro_f1']:.1f} | {c['accuracy']:.1f} |")
    return lines


def md_to_html(md: str, inline: dict[str, str], title: str) -> str:
    """A small Markdown subset (headings, tables, paragraphs, images) → HTML with inlined images."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush_table() -> None:
        """Emit the buffered rows as an HTML table (first row as header)."""
        if not table:
            return
        head, *body = table
        out.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr></thead><tbody>")
        for row in body:
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
        out.append("</tbody></table>")
        table.clear()

    def inline_fmt(s: str) -> str:
        """HTML-escape ``s`` and render ``**bold**`` and backtick code spans."""
        s = html.escape(s)
        import re

        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(set(c) <= {"-", ":"} for c in cells):
                continue
            table.append([inline_fmt(c) for c in cells])
            continue
        flush_table()
        if line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            src = src.rstrip(")")
            data = inline.get(src)
            if data:
                out.append(f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/></figure>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline_fmt(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<p>• {inline_fmt(line[2:])}</p>")
        elif line.strip():
            out.append(f"<p>{inline_fmt(line)}</p>")
    flush_table()
    style = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
             "img{max-width:100%}code{background:#f3f3f3;padding:0 3px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def _write(folder: Path, stem: str, md: str, pngs: dict[str, bytes], title: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    fig_dir = folder / "figures"
    fig_dir.mkdir(exist_ok=True)
    inline = {}
    for name, data in pngs.items():
        (fig_dir / f"{name}.png").write_bytes(data)
        inline[f"figures/{name}.png"] = base64.b64encode(data).decode("ascii")
    (folder / f"{stem}.md").write_text(md, encoding="utf-8")
    (folder / f"{stem}.html").write_text(md_to_html(md, inline, title), encoding="utf-8")
    return [folder / f"{stem}.md", folder / f"{stem}.html"]


def report_run(run: Path, out: Path | None = None) -> list[Path]:
    """Write ``report.md``, ``report.html`` and figures for a run; returns the two files."""
    summary, records = load_run(run)
    m = summary["metrics"]
    pngs = {"confusion": plot_confusion(m), "per_class": plot_per_class([m], [run.name]),
            "reliability": plot_reliability(m), "latency": plot_latency(records)}
    if summary.get("ablations"):
        pngs["ablations"] = plot_ablations(summary["ablations"])
    images = {k: f"figures/{k}.png" for k in pngs}
    md = run_markdown(run, summary, images)
    return _write(out or run, "report", md, pngs, f"MELD report {run.name}")


def compare_runs(a: Path, b: Path, out: Path | None = None) -> list[Path]:
    """Write a Markdown/HTML comparison of runs ``a`` and ``b``; returns the two files."""
    sa, ra = load_run(a)
    sb, rb = load_run(b)
    ma, mb = sa["metrics"], sb["metrics"]
    lines = [f"# MELD comparison: `{a.name}` (A) vs `{b.name}` (B)", "",
             f"A: {json.dumps(sa.get('config'))}", f"B: {json.dumps(sb.get('config'))}", ""]
    keys_a, keys_b = {r["key"] for r in ra}, {r["key"] for r in rb}
    common = keys_a & keys_b
    lines += [f"Utterances: A {len(keys_a)}, B {len(keys_b)}, common {len(common)}.", "",
              "| metric | A | B | B − A |", "|---|---|---|---|"]
    for k, name in (("weighted_f1", "weighted-F1"), ("macro_f1", "macro-F1"), ("accuracy", "accuracy"),
                    ("ece", "ECE")):
        va, vb = ma.get(k), mb.get(k)
        lines.append(f"| {name} | {_f(va)} | {_f(vb)} | {_f(None if va is None or vb is None else vb - va)} |")
    lines += [f"| W-F1 95% CI | {_ci(ma)} | {_ci(mb)} | |", "", "## Per-class F1", "",
              "| label | support | F1 A | F1 B | Δ F1 | recall A | recall B | Δ recall |",
              "|---|---|---|---|---|---|---|---|"]
    for lab in LABELS:
        pa, pb = ma["per_class"][lab], mb["per_class"][lab]
        lines.append(f"| {lab} | {pa['support']} | {pa['f1']:.1f} | {pb['f1']:.1f} | {pb['f1'] - pa['f1']:+.1f} | "
                     f"{pa['recall']:.1f} | {pb['recall']:.1f} | {pb['recall'] - pa['recall']:+.1f} |")
    if common:
        la = {r["key"]: r for r in ra}
        lb = {r["key"]: r for r in rb}
        fixed = sum(1 for k in common if not la[k]["correct"] and lb[k]["correct"])
        broke = sum(1 for k in common if la[k]["correct"] and not lb[k]["correct"])
        changed = sum(1 for k in common if la[k]["label"] != lb[k]["label"])
        lines += ["", f"On the common utterances B changed {changed} labels: fixed {fixed}, broke {broke} "
                  f"(net {fixed - broke:+d})."]
        # McNemar-style exact sign test on the discordant pairs
        from math import comb

        n = fixed + broke
        if n:
            tail = sum(comb(n, i) for i in range(0, min(fixed, broke) + 1)) / 2 ** n
            lines.append(f"Two-sided sign test on discordant pairs: p = {min(1.0, 2 * tail):.3g}.")
    pngs = {"per_class": plot_per_class([ma, mb], [f"A {a.name}", f"B {b.name}"])}
    lines += ["", "![Per-class F1](figures/per_class.png)"]
    folder = out or a / f"compare_{b.name}"
    return _write(folder, "compare", "\n".join(lines) + "\n", pngs, f"MELD {a.name} vs {b.name}")
