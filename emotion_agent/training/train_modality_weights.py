"""Learn the late-fusion parameters (``tools/weights/fusion_modalities.json``) from clips where modalities co-occur.

Data, all real co-occurrence (never one corpus's voice with another corpus's words):

* every labelled clip of ``<data>/speech`` (RAVDESS actors 1-20, EmoDB): the text expert's reading of the
  clip's **own** Whisper transcript and whether Whisper flagged it unreliable (from a ``emotion-agent batch``
  run over the folder), and the clip's voice read by a head trained **without that speaker** (the
  out-of-fold, temperature-calibrated distributions of ``train_speech_head --oof``);
* the real MELD clips (TV dialogue, an ``emotion-agent batch`` over ``<data>/meld/media``): too few to learn
  from (6), reported as a check of the acted-speech fit on natural dialogue.

What is learned (grid search, accuracy with mean log-likelihood as tie-break, both corpora weighted equally):
the voice's reliability relative to the transcript's, the informativeness threshold (KL, nats) and the discount
for an unreliable transcript. The voice's reliability is searched only up to the transcript's (``--max-audio``,
0.8): in these corpora the words never carry emotion (two carrier sentences, German through an English ASR), so
accuracy keeps rising with the voice's weight and the data cannot show where a voice head trained on acted
speech starts to outvote clear words in real conversation; unbounded, the search picks 2.0, and a sure acted
voice then overrules "I am so happy!" (the unbounded optimum is reported beside the shipped one). Typed text stays the reference (1.0) and the transcript keeps 0.8 of it; the
face's reliability cannot be learned here (no labelled clip has a face together with a voice or words) and
keeps its hand-set value. The held-out figure comes from speaker-disjoint cross-validation (parameters
chosen on 4 folds, scored on the 5th); the shipped parameters are then chosen on all folds.

    emotion-agent batch ../shared/data/speech --out runs/batch-speech-full/results.jsonl
    python -m emotion_agent.training.train_speech_head --oof runs/fusion/speech_oof.json --fold-heads DIR
    emotion-agent batch ../shared/data/meld/media --out runs/fusion/meld_clips.jsonl
    python -m emotion_agent.training.train_modality_weights --clips runs/batch-speech-full/results.jsonl \\
        --voice-oof runs/fusion/speech_oof.json --meld-clips runs/fusion/meld_clips.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotion_agent.agent.fusion import weighted_fusion
from emotion_agent.agent.fusion_params import PARAMS_FILE, FusionParams
from emotion_agent.evals.paths import RESULTS_DIR
from emotion_agent.training.train_speech_head import MELD_GOLD
from emotion_agent.tools.evidence import LABELS, EmotionEvidence, TranscriptInfo
from emotion_agent.tools.speech_emotion import ACTED_DOMAIN_FACTOR

AUDIO_GRID = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0)
KL_GRID = (0.1, 0.2, 0.3, 0.5, 0.8)
UNRELIABLE_GRID = (0.0, 0.1, 0.25, 0.5, 1.0)
TRANSCRIPT_WEIGHT = 0.8


@dataclass
class Clip:
    """One clip's co-occurring evidence and its gold label."""

    key: str
    corpus: str
    fold: int
    gold: str
    evidence: list[EmotionEvidence]


def _ev(modality: str, expert: str, dist: dict[str, float], confidence: float,
        transcript: TranscriptInfo | None = None) -> EmotionEvidence:
    dist = {k: float(dist.get(k, 0.0)) for k in LABELS}
    return EmotionEvidence(id=f"{expert}-x", modality=modality, expert=expert, model_id="offline", distribution=dist,
                           label=max(dist, key=dist.__getitem__), confidence=min(1.0, max(0.0, confidence)),
                           transcript=transcript)


def _asr(record: dict[str, Any]) -> EmotionEvidence:
    heard = record.get("transcript") or {}
    info = TranscriptInfo(text=heard.get("text") or "", reliable=heard.get("reliable") is not False,
                          mean_logprob=heard.get("mean_logprob"))
    return _ev("transcript", "transcribe", {k: 1 / len(LABELS) for k in LABELS}, 0.0, transcript=info)


def _readings(record: dict[str, Any], modalities: tuple[str, ...]) -> list[EmotionEvidence]:
    return [_ev(m["modality"], m["expert"], m["distribution"], m["confidence"])
            for m in record.get("modalities", []) if m["modality"] in modalities and m["confidence"] > 0]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The readable lines of a batch results file."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("status") == "ok":
            out.append(rec)
    return out


def speech_clips(clips: Path, voice_oof: Path) -> list[Clip]:
    """Each labelled speech clip: its transcript reading (batch record) + its out-of-fold voice reading."""
    oof = json.loads(voice_oof.read_text(encoding="utf-8"))
    by_path = {c["path"]: c for c in oof["clips"]}
    out = []
    for rec in read_jsonl(clips):
        key = rec["input"].replace("\\", "/").split("/speech/")[-1]
        voice = by_path.get(key)
        if voice is None:
            continue
        dist = voice["distribution"]
        evidence = [_asr(rec), *_readings(rec, ("transcript", "text")),
                    _ev("audio", "speech_emotion", dist, max(dist.values()) * ACTED_DOMAIN_FACTOR)]
        out.append(Clip(key, voice["corpus"], int(voice["fold"]), voice["gold"], evidence))
    return out


def meld_clips(path: Path) -> list[Clip]:
    """The real MELD clips as the agent read them (voice, transcript and face where present)."""
    out = []
    for rec in read_jsonl(path):
        name = Path(rec["input"]).name
        gold = MELD_GOLD.get(name) or MELD_GOLD.get(Path(name).with_suffix(".wav").name)
        if gold:
            out.append(Clip(name, "meld", -1, gold, [_asr(rec), *_readings(rec, ("transcript", "text", "audio",
                                                                                   "vision"))]))
    return out


def params_of(audio: float, kl: float, unreliable: float, vision: float) -> FusionParams:
    """Parameters for one grid point."""
    return FusionParams({"text": 1.0, "transcript": TRANSCRIPT_WEIGHT, "audio": audio, "vision": vision}, kl,
                        unreliable, "grid")


def score(clips: list[Clip], params: FusionParams) -> tuple[float, float]:
    """(accuracy, mean log-likelihood of the gold label) of the fused readings."""
    hits, ll = 0, 0.0
    for c in clips:
        f = weighted_fusion(c.evidence, params=params)
        hits += f.label == c.gold
        ll += float(np.log(max(f.distribution.get(c.gold, 0.0), 1e-6)))
    n = max(len(clips), 1)
    return hits / n, ll / n


def balanced(clips: list[Clip], params: FusionParams) -> tuple[float, float]:
    """Accuracy and log-likelihood averaged over corpora (each corpus counts the same)."""
    parts = [score([c for c in clips if c.corpus == corpus], params)
             for corpus in sorted({c.corpus for c in clips})]
    return float(np.mean([p[0] for p in parts])), float(np.mean([p[1] for p in parts]))


def search(clips: list[Clip], vision: float, max_audio: float = float("inf")) -> tuple[FusionParams, tuple[float, float]]:
    """The grid point with the best balanced accuracy (log-likelihood breaks ties), voice weight ≤ ``max_audio``."""
    best: tuple[tuple[float, float], FusionParams] | None = None
    audios = [a for a in AUDIO_GRID if a <= max_audio]
    for audio, kl, unreliable in itertools.product(audios, KL_GRID, UNRELIABLE_GRID):
        params = params_of(audio, kl, unreliable, vision)
        s = balanced(clips, params)
        if best is None or s > best[0]:
            best = (s, params)
    assert best is not None
    return best[1], best[0]


def report(name: str, clips: list[Clip], params: FusionParams) -> dict[str, Any]:
    """Per-corpus accuracy of ``params`` (and what the voice and the words alone score)."""
    rows = {}
    for corpus in sorted({c.corpus for c in clips}):
        sub = [c for c in clips if c.corpus == corpus]
        acc, ll = score(sub, params)
        voice = np.mean([any(e.modality == "audio" and e.label == c.gold for e in c.evidence) for c in sub])
        rows[corpus] = {"n": len(sub), "fused_accuracy": round(100 * acc, 1), "mean_log_likelihood": round(ll, 3),
                        "voice_alone_accuracy": round(100 * float(voice), 1)}
    print(f"{name}: " + "; ".join(f"{k} {v['fused_accuracy']:.1f} % (n {v['n']})" for k, v in rows.items()))
    return rows


def main(argv: list[str] | None = None) -> None:
    """Cross-validate the search, fit on everything, write the parameters and a results JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=Path, required=True, help="batch results over <data>/speech")
    ap.add_argument("--voice-oof", type=Path, required=True, help="train_speech_head --oof output")
    ap.add_argument("--meld-clips", type=Path, default=None, help="batch results over <data>/meld/media (check)")
    ap.add_argument("--out", type=Path, default=PARAMS_FILE, help="parameters file to write")
    ap.add_argument("--max-audio", type=float, default=TRANSCRIPT_WEIGHT,
                    help="upper bound of the voice's reliability (default: the transcript's; see the module doc)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)

    clips = speech_clips(args.clips, args.voice_oof)
    if not clips:
        raise SystemExit("no clip of the batch results has an out-of-fold voice reading: check both files")
    meld = meld_clips(args.meld_clips) if args.meld_clips else []
    hand = FusionParams()
    vision = hand.weights["vision"]
    print(f"{len(clips)} speech clips ({sum(c.corpus == 'ravdess' for c in clips)} RAVDESS, "
          f"{sum(c.corpus == 'emodb' for c in clips)} EmoDB), {len(meld)} MELD clips")

    held_out: list[tuple[Clip, bool]] = []
    chosen = []
    for fold in sorted({c.fold for c in clips}):
        params, _ = search([c for c in clips if c.fold != fold], vision, args.max_audio)
        chosen.append(params.to_json())
        for c in clips:
            if c.fold == fold:
                held_out.append((c, weighted_fusion(c.evidence, params=params).label == c.gold))
    cv = {corpus: round(100 * float(np.mean([ok for c, ok in held_out if c.corpus == corpus])), 1)
          for corpus in sorted({c.corpus for c, _ in held_out})}
    print(f"speaker-disjoint CV (parameters chosen without the scored speakers): {cv}")

    unbounded, (u_acc, _) = search(clips, vision)
    learned, (acc, ll) = search(clips, vision, args.max_audio)
    learned = FusionParams(learned.weights, learned.informative_kl, learned.unreliable_transcript_scale, "learned")
    print(f"learned on all folds: {learned.to_json()} (balanced accuracy {100 * acc:.1f} %, log-lik {ll:.3f})")
    result = {
        "command": "python -m emotion_agent.training.train_modality_weights " + " ".join(argv or []),
        "params": learned.to_json(), "hand_set": hand.to_json(), "max_audio": args.max_audio,
        "unbounded_optimum": {**unbounded.to_json(), "balanced_accuracy": round(100 * u_acc, 1)}, "cv_fused_accuracy": cv, "cv_fold_params": chosen,
        "speech_hand_set": report("hand-set", clips, hand), "speech_learned": report("learned", clips, learned),
        "grid": {"audio": AUDIO_GRID, "informative_kl": KL_GRID, "unreliable_transcript_scale": UNRELIABLE_GRID},
        "not_learned": "vision keeps its hand-set reliability: no labelled clip has a face with a voice or words; "
                       "typed text is the reference (1.0), the transcript keeps 0.8",
    }
    if meld:
        result["meld_hand_set"] = report("MELD clips, hand-set", meld, hand)
        result["meld_learned"] = report("MELD clips, learned", meld, learned)
    if not args.no_save:
        payload = {**learned.to_json(), "trained_on": f"{len(clips)} RAVDESS/EmoDB clips: own transcript + "
                   f"out-of-fold voice; voice weight searched up to {args.max_audio}", "cv_fused_accuracy": cv}
        args.out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "fusion_modalities.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
