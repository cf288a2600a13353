"""Does an instruction's remnant survive stripping, and is the real content kept?

Over the corpus ``tests/injection_remnant_corpus.jsonl`` (instruction + content, both orders) it prints and
writes to ``results/injection_remnants.json``:

- ``remnant_rate``: share of cases where a word of the removed instruction is still in the analysed text
  (stripper) or quoted in the word attributions / explanation (end to end, ``--e2e N``);
- ``content_kept_rate``: share of cases where every content word is still in the analysed text.

``python -m emotion_agent.benchmarks.injection_remnants [--e2e 8]`` (end to end uses the real text expert
through ``EmotionAgent.analyze`` with the template explanation).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "injection_remnant_corpus.jsonl"


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    """The corpus cases, one JSON object a line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def words_in(text: str | None, words: list[str]) -> list[str]:
    """Which of ``words`` occur in ``text`` as whole words (case-insensitive)."""
    return [w for w in words if text and re.search(rf"\b{re.escape(w)}\b", text, re.I)]


def stripper_rates(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Remnant and content-kept rates of :func:`make_turn` (the one turn builder) alone."""
    from emotion_agent.agent.inputs import make_turn

    remnant, kept, bad = 0, 0, []
    for c in cases:
        text = make_turn(text=c["text"], check_media=False).text
        left = words_in(text, c["remnant_words"])
        missing = [w for w in c["content_words"] if w not in words_in(text, c["content_words"])]
        remnant += bool(left)
        kept += not missing
        if left or missing:
            bad.append({"id": c["id"], "analysed": text, "remnant": left, "content_missing": missing})
    n = len(cases)
    return {"n": n, "remnant_rate": remnant / n, "content_kept_rate": kept / n, "failures": bad}


def end_to_end_rates(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The same through ``EmotionAgent.analyze``: remnant words quoted in attributions or explanation."""
    from emotion_agent.agent.inputs import make_turn
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.tools.settings import Settings

    agent = EmotionAgent(Settings.from_env(explain_llm=False, llm_url=None, chroma_url=None))
    remnant, kept, rows = 0, 0, []
    for c in cases:
        turn = make_turn(text=c["text"], check_media=False)
        r = agent.analyze(turn, explain=True)
        quoted = " ".join(str(a.get("word", "")) for e in r.evidence
                          for a in (e.extra.get("attributions") or []))
        said = f"{quoted} {r.explanation or ''}"
        left = words_in(said, c["remnant_words"])
        missing = [w for w in c["content_words"] if w not in words_in(turn.text, c["content_words"])]
        remnant += bool(left)
        kept += not missing
        rows.append({"id": c["id"], "label": r.label, "explanation": r.explanation, "remnant_quoted": left,
                     "content_missing": missing})
    n = len(cases)
    return {"n": n, "remnant_rate": remnant / n, "content_kept_rate": kept / n, "cases": rows}


def main(argv: list[str] | None = None) -> None:
    """Print both rates and write them to ``results/injection_remnants.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--e2e", type=int, default=0, help="also run the first N cases end to end")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "injection_remnants.json")
    args = ap.parse_args(argv)
    cases = load_corpus()
    out: dict[str, Any] = {"corpus": str(CORPUS.relative_to(ROOT)), "stripper": stripper_rates(cases)}
    s = out["stripper"]
    print(f"stripper over {s['n']} cases: remnant {s['remnant_rate']:.1%}, content kept {s['content_kept_rate']:.1%}")
    if args.e2e:
        # both orders among the first cases: take alternate positions
        e = out["end_to_end"] = end_to_end_rates(cases[: args.e2e])
        print(f"end to end over {e['n']} cases: remnant quoted {e['remnant_rate']:.1%}, "
              f"content kept {e['content_kept_rate']:.1%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
