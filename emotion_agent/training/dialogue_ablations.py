"""The text ablation table: utterance only, + past turns, + past and later turns, each without and with the
dialogue model, on MELD dev and test, from the results files ``train_dialogue_model`` wrote.

    python -m emotion_agent.training.dialogue_ablations [--files results/text_dialogue_ctx0.json,...]
    python -m emotion_agent.training.dialogue_ablations --agreement runs/meld-test-XXXX [--mode online]

Every row names its input (which turns the text expert read: ctx0 = the utterance alone, ctx3 = with its 3
past turns), whether the dialogue model ran, and the mode (``utterance``: the expert alone; ``online``: the
dialogue model over past turns; ``offline``: past and later turns), with W-F1, macro-F1 and the fear, disgust
and sadness F1. Dev chose everything (epochs, variants, temperature); test is reported only. Writes
``results/text_dialogue_ablations.json`` and prints a Markdown table.

``--agreement RUN``: how often the labels of an ``eval meld`` run (the real path: CLI, graph, expert) equal
the shipped dialogue model's labels computed from the cached features, and both scores on the utterances the
run holds (a partial run is scored on what it wrote, and says so).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emotion_agent.evals.paths import RESULTS_DIR

DEFAULT_FILES = ("text_dialogue_ctx0.json", "text_dialogue_ctx3.json")
TURNS_READ = {"utterance": "utterance only", "online": "+ past turns", "offline": "+ past and later turns"}
COLUMNS = ("weighted_f1", "macro_f1", "fear_f1", "disgust_f1", "sadness_f1")


def table_rows(result: dict, source: str) -> list[dict]:
    """The expert-alone row and each mode's ensemble row of one results file, per split."""
    ctx = int(result["context_turns_in_features"])
    rows = []
    for split, split_rows in result["rows"].items():
        for r in split_rows:
            alone = r["model"].startswith("expert alone")
            if not alone and "seed " in r["model"] and " models" not in r["model"] and " seeds" not in r["model"]:
                continue  # single-seed rows: the ensemble is what ships
            mode = "utterance" if alone else r["mode"]
            reads = "utterance only" if alone and ctx == 0 else ("+ past turns (in the expert's input)" if alone
                                                                 else TURNS_READ[mode])
            rows.append({"split": split, "expert_input": f"ctx{ctx}", "turns_read": reads,
                         "dialogue_model": not alone, "mode": mode, "model": r["model"], "source": source,
                         **{c: r[c] for c in COLUMNS}})
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    head = ("| split | expert input | turns read | dialogue model | mode | W-F1 | macro-F1 | fear | disgust | "
            "sadness |\n|---|---|---|---|---|---|---|---|---|---|")
    body = [f"| {r['split']} | {r['expert_input']} | {r['turns_read']} | {'yes' if r['dialogue_model'] else 'no'} | "
            f"{r['mode']} | " + " | ".join(f"{r[c]:.1f}" for c in COLUMNS) + " |" for r in rows]
    return "\n".join([head, *body])


def agreement(run: Path, mode: str) -> dict:
    """Labels of ``run``'s records against the shipped ``mode`` model on the cached ctx3 features."""
    import numpy as np

    from emotion_agent.evals.metrics import classification_report
    from emotion_agent.evals.records import read_records
    from emotion_agent.tools.dialogue_text import shared_dialogue_model
    from emotion_agent.tools.evidence import LABELS
    from emotion_agent.tools.settings import Settings
    from emotion_agent.training.cache_text_features import load_features
    from emotion_agent.training.train_dialogue_model import by_dialogue

    settings = Settings.from_env()
    records = {r["key"]: r for r in read_records(run / "records.jsonl")}
    split = next(iter(records.values()))["split"]
    model, why = shared_dialogue_model(settings, mode)
    if model is None:
        raise SystemExit(why)
    feature_label = {}
    for d in by_dialogue(load_features(settings, 3, split)):
        p = model.predict(d["features"][None], d["logits"][None], [str(s) for s in d["speakers"]])[0]
        feature_label.update({str(k): LABELS[int(i)] for k, i in zip(d["keys"], p.argmax(1))})
    keys = [k for k in records if k in feature_label]
    gold = [records[k]["gold"] for k in keys]
    path = [records[k]["label"] for k in keys]
    feats = [feature_label[k] for k in keys]
    rep_path, rep_feat = (classification_report(gold, x, bootstrap=0) for x in (path, feats))
    modes = sorted({str(records[k]["result"].get("text_mode")) for k in keys})
    return {"run": str(run), "split": split, "mode": mode, "text_modes_in_run": modes, "utterances": len(keys),
            "label_agreement_pct": round(100 * float(np.mean([a == b for a, b in zip(path, feats)])), 2),
            "path_weighted_f1": round(rep_path["weighted_f1"], 2), "path_macro_f1": round(rep_path["macro_f1"], 2),
            "features_weighted_f1": round(rep_feat["weighted_f1"], 2),
            "features_macro_f1": round(rep_feat["macro_f1"], 2), "model": model.model_id}


def main() -> None:
    """Collect the rows, write the JSON, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default=",".join(DEFAULT_FILES), help="Results files (in results/ or paths).")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "text_dialogue_ablations.json")
    ap.add_argument("--agreement", type=Path, default=None, help="An eval meld run folder to compare (see above).")
    ap.add_argument("--mode", default="online")
    args = ap.parse_args()
    if args.agreement is not None:
        out = agreement(args.agreement, args.mode)
        print(json.dumps(out, indent=2))
        (RESULTS_DIR / f"text_dialogue_path_agreement_{out['split']}_{args.mode}.json").write_text(json.dumps(out, indent=2))
        return
    rows = []
    for name in args.files.split(","):
        path = Path(name) if Path(name).is_file() else RESULTS_DIR / name
        rows += table_rows(json.loads(path.read_text()), path.name)
    seen: set[tuple] = set()  # files of one context split by mode repeat the expert-alone row
    rows = [r for r in rows if not ((k := (r["split"], r["expert_input"], r["dialogue_model"], r["mode"])) in seen
                                    or seen.add(k))]
    rows.sort(key=lambda r: (r["split"] != "dev", r["expert_input"], r["dialogue_model"], r["mode"] != "online"))
    args.out.write_text(json.dumps({"rows": rows, "note": "dev chose every option; test is reported only. No "
                                    "expert reads later turns in its own input, so 'past and later turns' exists "
                                    "only with the dialogue model (offline)."}, indent=2))
    print(markdown(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
