"""Are the explanations faithful? ERASER-style word metrics and automatic prose checks over MELD dev turns.

    python -m emotion_agent.evals.faithfulness --n 300 [--llm] [--out runs/faithfulness]

For each turn (MELD dev, stratified, with its dialogue as context) the agent labels it and explains it
through the real graph. The words the explanation relies on (the text expert's top occlusion words) are
then scored against the text expert itself:

* comprehensiveness = p(label | utterance) − p(label | utterance without the cited words)
* sufficiency gap   = p(label | utterance) − p(label | only the cited words)   (lower is better)

each against the same count of random words from the same utterance (the baseline). Every explanation
also goes through the checks of :mod:`emotion_agent.agent.faithfulness` (invented modality, another label,
truncation, quoted words not said, prompt-example copying, instruction following). Means come with 95 %
bootstrap CIs (scipy). Results: ``<out>/summary.json``; each turn's row is appended to ``<out>/rows.jsonl``
as soon as it is made (fsync'ed), so a rerun of the same command resumes where the last one stopped (the
clips' rows go to ``<out>/media.jsonl``, remade each run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from emotion_agent.tools.settings import Settings


def ci95(values: list[float]) -> list[float] | None:
    """95 % bootstrap CI of the mean (scipy.stats.bootstrap), or None for fewer than 3 values."""
    if len(values) < 3:
        return None
    from scipy.stats import bootstrap

    res = bootstrap((np.asarray(values, dtype=float),), np.mean, n_resamples=2000, confidence_level=0.95,
                    random_state=0, method="percentile")
    return [round(float(res.confidence_interval.low), 4), round(float(res.confidence_interval.high), 4)]


def main(argv: list[str] | None = None) -> int:
    """Explain MELD dev turns (and clips), score ERASER metrics and the prose checks."""
    from emotion_agent.agent.compose import bare_word, quoted_words
    from emotion_agent.agent.explain import attributions_of
    from emotion_agent.agent.inputs import InputError, make_turn
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.evals.meld import dialogues, load_split, stratified_sample
    from emotion_agent.tools.base import PriorTurn
    from emotion_agent.tools.evidence import LABELS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--llm", action="store_true", help="Let the LLM rephrase (checked); default: composer only.")
    ap.add_argument("--out", type=Path, default=Path("runs/faithfulness"))
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--media", action="store_true", help="Also explain every MELD clip in the data folder "
                                                         "(meld/media: audio and video), with the same checks.")
    args = ap.parse_args(argv)
    settings = Settings.from_env(explain_llm=args.llm)
    dev = load_split("dev", settings.require_data_dir())
    dias = dialogues(dev)
    sample = stratified_sample(dev, args.n, seed=args.seed)
    agent = EmotionAgent(settings, memory=False)
    text_expert = agent.experts["text_emotion"]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "rows.jsonl"
    rows = read_rows(log)
    done = {x["key"] for x in rows}
    if done:
        print(f"resuming: {len(done)} turn(s) already in {log}")
    log.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows), encoding="utf-8")  # drop damage
    t_start = time.perf_counter()
    fh = log.open("a", encoding="utf-8")
    for u in tqdm(sample, desc="faithfulness", unit="turn", dynamic_ncols=True):
        if u.key in done:
            continue
        prev = dias[u.dialogue_id][max(0, u.position - 3):u.position]
        try:
            turn = make_turn(text=u.text, speaker=u.speaker, context=[PriorTurn(speaker=p.speaker, text=p.text)
                                                                       for p in prev])
        except InputError:
            continue
        t0 = time.perf_counter()
        r = agent.analyze(turn, explain=True, remember=False, use_memory=False)
        latency = time.perf_counter() - t0
        issues = check(r, turn)
        row: dict[str, Any] = {"key": u.key, "label": r.label, "gold": u.emotion, "source": r.explanation_source,
                               "problems": issues, "explanation": r.explanation, "llm_refused": llm_refusal(r),
                               "latency_s": round(latency, 3)}
        rng = random.Random(f"{args.seed}:{u.key}")  # the random baseline does not depend on resumes
        words = (turn.text or "").split()
        cited = quoted_words(attributions_of(r))
        idx = [i for i, w in enumerate(words) if bare_word(w) in cited]
        if idx and len(idx) < len(words):
            rand = rng.sample(range(len(words)), len(idx))
            variants = [turn.text or "",
                        " ".join(w for i, w in enumerate(words) if i not in idx),
                        " ".join(words[i] for i in idx),
                        " ".join(w for i, w in enumerate(words) if i not in rand),
                        " ".join(words[i] for i in rand)]
            probs = text_expert._distributions(turn, variants)[:, LABELS.index(r.label)]
            full = float(probs[0])
            row.update(comprehensiveness=full - float(probs[1]), sufficiency_gap=full - float(probs[2]),
                       random_comprehensiveness=full - float(probs[3]), random_sufficiency_gap=full - float(probs[4]),
                       n_cited=len(idx), n_words=len(words))
        rows.append(row)
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    fh.close()
    media_rows = explain_media(agent, settings.require_data_dir(), check) if args.media else []
    (args.out / "media.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in media_rows))
    checks: dict[str, int] = {}
    for prefix, group in (("", rows), ("media: ", media_rows)):
        for x in group:
            for i in x["problems"]:
                key = prefix + i.split(" (")[0].split(",")[0]
                checks[key] = checks.get(key, 0) + 1
    latencies = [x["latency_s"] for x in rows if "latency_s" in x]
    rows_all = rows + media_rows
    refusals = [x["llm_refused"] for x in rows_all if x.get("llm_refused")]
    scored = [x for x in rows if "comprehensiveness" in x]
    summary: dict[str, Any] = {
        "n_turns": len(rows), "n_with_cited_words": len(scored), "llm": args.llm,
        "wall_s_this_run": round(time.perf_counter() - t_start, 1),
        "n_media_clips": len(media_rows),
        "explanation_sources": {s: sum(1 for x in rows_all if x["source"] == s) for s in ("llm", "template")},
        "llm_answers_refused": len(refusals),
        "llm_refusal_reasons": {k: sum(1 for r in refusals if r.startswith(k)) for k in
                                sorted({r.split(" (")[0] for r in refusals})},
        "check_failures": checks,
        "rates_percent": {k: round(100 * v / max(len(rows), 1), 2) for k, v in checks.items()},
        "latency_s": {"p50": round(float(np.percentile(latencies, 50)), 3),
                      "p95": round(float(np.percentile(latencies, 95)), 3)} if latencies else None,
    }
    for metric in ("comprehensiveness", "sufficiency_gap", "random_comprehensiveness", "random_sufficiency_gap"):
        vals = [x[metric] for x in scored]
        summary[metric] = {"mean": round(float(np.mean(vals)), 4) if vals else None, "ci95": ci95(vals)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows a previous run wrote (a cut or damaged line is skipped and made again)."""
    if not path.is_file():
        return []
    rows, seen = [], set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("key"), str) and row["key"] not in seen:
            seen.add(row["key"])
            rows.append(row)
    return rows


def check(r: Any, turn: Any) -> list[str]:
    """Every faithfulness problem of the shown explanation, checked against the facts the composer gives."""
    from emotion_agent.agent.compose import compose
    from emotion_agent.agent.explain import attributions_of, example_answer
    from emotion_agent.agent.faithfulness import problems

    facts = compose(turn, r, None, attributions_of(r))[0]
    return problems(r.explanation or "", r, turn.spoken_text(), example=example_answer(),
                    removed_instructions=" ".join(turn.removed_instructions), facts=facts)


def llm_refusal(r: Any) -> str | None:
    """Why the LLM's rephrasing was not used (from the result's warning), or None."""
    for w in r.warnings:
        if w.startswith("LLM explanation not used ("):
            return w[len("LLM explanation not used ("):].split(")")[0].replace("the LLM gave no acceptable "
                                                                              "explanation: ", "")
    return None


def explain_media(agent: Any, data_dir: Path, check_fn: Any) -> list[dict[str, Any]]:
    """Explain each MELD clip (audio, or video with its audio track and frames) and check the prose."""
    from emotion_agent.agent.inputs import InputError, make_turn

    out = []
    for clip in sorted((data_dir / "meld" / "media").glob("*")):
        kind = {".wav": "audio", ".flac": "audio", ".mp4": "video", ".png": "image"}.get(clip.suffix.lower())
        if kind is None:
            continue
        try:
            turn = make_turn(**{kind: clip})
        except InputError as exc:
            out.append({"key": clip.name, "source": None, "problems": [], "refused": str(exc)})
            continue
        r = agent.analyze(turn, explain=True, remember=False, use_memory=False)
        t = turn.model_copy(update={"transcript": next((e.transcript.text for e in r.evidence
                                                        if e.transcript is not None), None)})
        out.append({"key": clip.name, "label": r.label, "source": r.explanation_source, "problems": check_fn(r, t),
                    "explanation": r.explanation, "llm_refused": llm_refusal(r),
                    "modalities": sorted({e.modality for e in r.evidence})})
    return out


if __name__ == "__main__":
    raise SystemExit(main())
