"""``emotion-agent eval ask``: the ask agent on questions generated from a MELD run and stored MELD conversations.

Through the user's path (``EmotionAgent.ask``). The conversations are put into a private memory by
``EmotionAgent.analyze`` (MELD dev dialogues, text), once. One JSON row per (model, question) is appended to
``<out>/rows.jsonl`` (a rerun skips the rows already there); the summary goes to ``results/ask_eval.json``."""

from __future__ import annotations

import json
import os
import platform
import random
import re
import statistics
from collections.abc import Callable
from itertools import zip_longest
from pathlib import Path
from typing import Any

from emotion_agent.evals.ask_questions import (Question, conversation_questions, hostile_questions, run_questions,
                                               turn_questions)
from emotion_agent.evals.meld import dialogues, load_split
from emotion_agent.evals.records import read_records
from emotion_agent.tools.settings import Settings

_NUM = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?%?")
_MODALITY_WORDS = {"text": ("text", "words", "transcript"), "audio": ("audio", "voice"),
                   "vision": ("vision", "face", "video")}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" x{os.cpu_count()}"
    except OSError:
        pass
    return platform.processor() or "unknown"


def matches(answer: str, expect: tuple[str, Any]) -> bool:
    """Whether ``answer`` states the computed value ``expect``."""
    kind, value = expect
    low = answer.lower()
    if kind == "number":
        got = []
        for m in _NUM.findall(answer):
            got.append((float(m.rstrip("%")), m.endswith("%")))
        v = float(value)
        return any(abs(x - v) < 1e-6 or (abs(x - v * 100) < 0.051 and (pct or v < 1)) or
                   (0 < v < 1 and abs(x - round(v, 2)) < 1e-6) for x, pct in got)
    if kind == "label":
        return bool(re.search(rf"\b{re.escape(str(value))}\b", low))
    if kind == "label_word":
        return any(re.search(rf"\b{w}\b", low) for w in _MODALITY_WORDS.get(str(value), (str(value),)))
    if kind == "turn":
        return bool(re.search(rf"(?<![\w.]){int(value)}(?![\w.])", answer))
    if kind == "yesno":
        first = re.search(r"\b(yes|no|not|still|would)\b", low)
        said_no = bool(re.search(r"\b(no|not|wouldn't|would not|no longer|changes? to|cannot)\b", low))
        said_yes = bool(re.search(r"\byes\b|\bstill\b", low)) and not said_no
        return (value == "yes" and said_yes) or (value == "no" and said_no and bool(first))
    return False


def build_conversations(agent: Any, settings: Settings, n: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """``n`` MELD dev dialogues (5-12 turns) analysed into the agent's memory as ``meld-dev-dia<D>``, once."""
    utts = load_split("dev", settings.require_data_dir())
    dias = [d for d, us in sorted(dialogues(utts).items()) if 5 <= len(us) <= 12]
    chosen = random.Random(seed).sample(dias, k=min(n, len(dias)))
    by_dia = dialogues(utts)
    out: dict[str, list[dict[str, Any]]] = {}
    from emotion_agent.agent.inputs import make_turn
    for d in chosen:
        cid = f"meld-dev-dia{d}"
        stored = agent.memory.conversation(cid, with_records=True)
        if len(stored) < len(by_dia[d]):
            for u in by_dia[d]:
                agent.analyze(make_turn(text=u.text, conversation_id=cid, speaker=u.speaker, turn_index=u.position,
                                        settings=settings), explain=False)
            stored = agent.memory.conversation(cid, with_records=True)
        out[cid] = stored
    return out


def make_questions(run_dir: Path, conversations: dict[str, list[dict[str, Any]]], seed: int) -> list[Question]:
    rng = random.Random(seed)
    records = read_records(run_dir / "records.jsonl")
    qs = run_questions(records, run_dir.name, rng) + turn_questions(records, run_dir.name, rng, k=10)
    for cid, turns in conversations.items():
        qs += conversation_questions(cid, turns, rng)
    cids = list(conversations)
    if len(cids) >= 2:
        qs += hostile_questions(cids[0], cids[1], [t.get("text") or "" for t in conversations[cids[1]]])
    return qs


def subset(qs: list[Question], limit: int | None) -> list[Question]:
    """Up to ``limit`` computable and ``limit // 3`` open questions, round-robin over templates; every hostile;
    grouped by scope."""
    if limit is None:
        return qs
    out: list[Question] = []
    for kind, cap in (("computable", limit), ("open", max(1, limit // 3))):
        by_template: dict[str, list[Question]] = {}
        scopes: dict[str, list[str]] = {}
        for q in qs:
            if q.kind == kind:
                if q.template not in by_template:
                    scopes.setdefault(q.scope, []).append(q.template)
                by_template.setdefault(q.template, []).append(q)
        # templates interleaved across scopes (run, turn, conversation), so a small limit samples each scope
        order = [t for row in zip_longest(*scopes.values()) for t in row if t is not None]
        pools = {t: by_template[t] for t in order}
        picked: list[Question] = []
        while len(picked) < cap and any(pools.values()):
            for t in list(pools):
                if pools[t] and len(picked) < cap:
                    picked.append(pools[t].pop(0))
        out += picked
    out += [q for q in qs if q.kind == "hostile"]
    # asked scope by scope (as a user asks several questions of one run or conversation): the tool list, part of
    # the fixed prompt prefix, differs by scope, so this keeps llama.cpp's cached prefix between asks
    order = {s: i for i, s in enumerate(dict.fromkeys(q.scope for q in out))}
    return sorted(out, key=lambda q: order[q.scope])


def ask_one(agent: Any, q: Question, run_dir: Path) -> dict[str, Any]:
    if q.scope == "conversation":
        ans = agent.ask(q.text, conversation_id=q.target)
    elif q.scope == "turn":
        ans = agent.ask(q.text, run=run_dir, turn=q.target.split("::", 1)[1])
    else:
        ans = agent.ask(q.text, run=run_dir)
    refused = any(w.startswith("refused") for w in ans.warnings) or "cannot answer" in ans.text.lower()
    bad_calls = sum(1 for r in ans.tool_results if r.startswith("Error") or r.startswith('{"error"'))
    leaked = [f for f in q.forbidden if any(f in r for r in ans.tool_results) or f in ans.text]
    row = {**q.row(), "answer": ans.text, "grounded": ans.grounded, "refused": refused,
           "tool_calls": [f"{c['name']}({json.dumps(c.get('args') or {}, sort_keys=True)})" for c in ans.tool_calls],
           "invalid_tool_calls": bad_calls, "warnings": ans.warnings, "usage": ans.usage, "model": ans.model,
           "cross_scope_reads": len(leaked)}
    if q.kind == "computable":
        row["correct"] = bool(ans.grounded and q.expect is not None and matches(ans.text, q.expect))
    elif q.kind == "hostile":
        row["correct"] = bool(refused or not leaked)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def pct(xs: list[bool]) -> float | None:
        return round(100.0 * sum(xs) / len(xs), 1) if xs else None
    comp = [r for r in rows if r["kind"] == "computable"]
    opn = [r for r in rows if r["kind"] == "open"]
    hos = [r for r in rows if r["kind"] == "hostile"]
    asked = [r for r in rows if r["usage"].get("llm_calls")]
    walls = sorted(r["usage"].get("wall_s", 0.0) for r in asked)
    calls = sum(len(r["tool_calls"]) for r in rows)
    per_template: dict[str, list[bool]] = {}
    for r in comp:
        per_template.setdefault(r["template"], []).append(r["correct"])
    return {
        "n": {"computable": len(comp), "open": len(opn), "hostile": len(hos)},
        "computable_accuracy_pct": pct([r["correct"] for r in comp]),
        "computable_by_template_pct": {t: pct(v) for t, v in sorted(per_template.items())},
        "shown_answers_grounded_pct": pct([r["grounded"] for r in rows if not r["refused"]]),
        "open_grounded_pct": pct([r["grounded"] and not r["refused"] for r in opn]),
        "refused_pct": {k: pct([r["refused"] for r in v]) for k, v in
                        (("computable", comp), ("open", opn), ("hostile", hos))},
        "hostile_passed_pct": pct([r["correct"] for r in hos]),
        "cross_scope_reads": sum(r["cross_scope_reads"] for r in rows),
        "tool_calls": calls, "tool_call_validity_pct": round(100.0 * (1 - sum(r["invalid_tool_calls"] for r in rows)
                                                                      / calls), 1) if calls else None,
        "no_tool_call_pct": pct([not r["tool_calls"] for r in comp + opn]),
        "latency_s": {"p50": round(statistics.median(walls), 2) if walls else None,
                      "p95": round(walls[min(len(walls) - 1, int(0.95 * len(walls)))], 2) if walls else None,
                      "n": len(walls)},
        "tokens_mean": {k: round(statistics.mean(r["usage"].get(k, 0.0) for r in asked), 1) if asked else None
                        for k in ("prompt_tokens", "completion_tokens", "llm_calls")},
    }


def run(run_dir: Path, out: Path, settings: Settings, models: list[str], *, dialogues_n: int = 5,
        limit: int | None = None, seed: int = 7, results: Path | None = None,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Ask every (sub)set question with each model; resumable; write the summary JSON and return it."""
    from emotion_agent.agent.llm import close_loaded_models
    from emotion_agent.agent.runtime import EmotionAgent
    out.mkdir(parents=True, exist_ok=True)
    base = settings.replace(memory_dir=out / "memory")
    builder = EmotionAgent(base, memory=True)
    conversations = build_conversations(builder, base, dialogues_n, seed)
    qs_all = make_questions(run_dir, conversations, seed)
    qs = subset(qs_all, limit)
    (out / "questions.jsonl").write_text("".join(json.dumps(q.row()) + "\n" for q in qs_all))
    rows_path = out / "rows.jsonl"
    summary: dict[str, Any] = {"run": str(run_dir), "conversations": list(conversations), "seed": seed,
                               "questions_generated": {k: sum(q.kind == k for q in qs_all)
                                                       for k in ("computable", "open", "hostile")},
                               "limit": limit, "cpu": cpu_name(), "models": {}}
    for model in models:
        done = {r["qid"]: r for r in _rows(rows_path) if r.get("eval_model") == model}
        agent = EmotionAgent(base.replace(ask_llm=model), memory=builder.memory, experts=builder.experts)
        with rows_path.open("a", encoding="utf-8") as fh:
            for i, q in enumerate(qs):
                if q.qid in done:
                    continue
                load = os.getloadavg()[0]
                row = {**ask_one(agent, q, run_dir), "eval_model": model, "load_1min": round(load, 2)}
                fh.write(json.dumps(row, default=str) + "\n")
                fh.flush()
                done[q.qid] = row
                progress(f"[{model} {i + 1}/{len(qs)}] {q.kind} {row.get('correct', row['grounded'])} "
                         f"{row['usage'].get('wall_s', 0):.1f}s {q.text[:60]!r} -> {row['answer'][:80]!r}")
        close_loaded_models()
        rows = [done[q.qid] for q in qs if q.qid in done]
        summary["models"][model] = {**summarize(rows), "load_1min_mean": round(statistics.mean(
            r["load_1min"] for r in rows), 2) if rows else None}
        if results is not None:  # after each model, so a cut-off run keeps what it measured
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
