"""Video clips through the agent with each face model: the frames-pooled path of ``analyze --video``.

For each ``.mp4`` in ``<data>/meld/media`` and each expression model (the CNN and fer), the clip goes through
``EmotionAgent.analyze(make_turn(video=...))`` with the face expert as the only expert (the audio experts
would read the same clip's sound whatever the face model; ``analyze --video`` runs them all). What comes back:
the fused label, the face evidence's pooled label and confidence, the label of each sampled frame, the model
that read them and the wall time. MELD gives one gold label per utterance (listed when known), a check that
the path works rather than an accuracy figure.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from emotion_agent.tools.settings import Settings


def meld_gold(data_dir: Path) -> dict[str, str]:
    """``<split>_dia<D>_utt<U>`` → MELD emotion, from the split CSVs that exist."""
    out: dict[str, str] = {}
    for split, name in (("train", "train_sent_emo.csv"), ("dev", "dev_sent_emo.csv"), ("test", "test_sent_emo.csv")):
        path = data_dir / "meld" / name
        if path.is_file():
            with path.open(encoding="utf-8", errors="replace") as fh:
                for r in csv.DictReader(fh):
                    out[f"{split}_dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}"] = r["Emotion"].strip().lower()
    return out


def video_checks(settings: Settings, models: dict[str, Settings]) -> list[dict[str, Any]]:
    """One row per (clip, model): fused label, pooled face label, per-frame labels, model id, wall seconds."""
    from emotion_agent.agent.inputs import make_turn
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.tools.registry import build_experts

    clips = sorted((settings.data_dir / "meld" / "media").glob("*.mp4"))
    gold = meld_gold(settings.data_dir) if clips else {}
    rows = []
    for name, s in models.items():
        agent = EmotionAgent(s, memory=False, experts=build_experts(s, only=["facial_emotion"]))
        for clip in clips:
            t0 = time.perf_counter()
            result = agent.analyze(make_turn(video=clip), explain=False, remember=False)
            face = next((e for e in result.evidence if e.expert == "facial_emotion"), None)
            frames = (face.extra.get("frames") or []) if face else []
            rows.append({"clip": clip.name, "gold": gold.get(clip.stem), "model": name, "label": result.label,
                         "confidence": round(result.confidence, 3),
                         "face_label": max(face.distribution, key=face.distribution.__getitem__) if face else None,
                         "face_confidence": round(face.confidence, 3) if face else None,
                         "frame_labels": [(f.get("primary") or {}).get("label") for f in frames],
                         "face_model_id": face.model_id if face else None,
                         "wall_s": round(time.perf_counter() - t0, 2)})
    return rows


def auto_choice() -> str:
    """What the default setting (``face_model=auto``) reads faces with, and why."""
    from emotion_agent.tools.face_model import load_expression_model

    return load_expression_model("auto").why


def loaded_model_id(expert: Any) -> str:
    """The face expert's model id once its expression model is loaded (the setting's id if it cannot load)."""
    from emotion_agent.tools.base import ExpertError

    try:
        expert.analyzer  # noqa: B018 - loads the configured expression model
    except ExpertError:
        pass
    return expert.model_id
