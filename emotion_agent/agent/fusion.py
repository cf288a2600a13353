"""Fusion: from the experts' evidence to one label, deterministically.

The fused label is computed from the evidence distributions — never parsed from LLM text.
Policies are registered by name in :data:`POLICIES`; ``learned`` (the default) runs the trained
text + conversation model (``training/train_fusion.py``) and late-fuses the other modalities with it;
``weighted`` is the rule alone.

The late-fusion rule weighs each modality by how *informative* its evidence is in this turn: the
KL divergence of its distribution from what that expert says when it knows nothing (its prior),
times a reliability per modality. Lexically neutral carrier text ("Kids are talking by the door")
sits close to the text prior and counts little against a voice that is clearly angry; clear words
("I am furious!") sit far from it and outweigh an acted-speech voice head on real dialogue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion_agent.tools.resources import WEIGHTS_DIR
from emotion_agent.agent.fusion_params import FusionParams, load_params
from emotion_agent.agent.recall import MemoryRecall
from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.softmax import softmax
from emotion_agent.tools.evidence import LABELS, EmotionEvidence, ModalityView, normalize, uniform

#: MELD train's label frequencies: what the text expert leans to when the words carry no emotion.
_MELD_TRAIN_COUNTS = {"neutral": 4710, "joy": 1743, "surprise": 1205, "anger": 1109, "sadness": 683,
                      "disgust": 271, "fear": 268}
#: Each modality's uninformed distribution (voice and face heads were trained on balanced data: uniform).
PRIORS: dict[str, dict[str, float]] = {
    "text": normalize({k: float(v) for k, v in _MELD_TRAIN_COUNTS.items()}),
    "transcript": normalize({k: float(v) for k, v in _MELD_TRAIN_COUNTS.items()}),
}
#: A modality is "sure" of its label (for the disagreement report) at this top probability.
DISAGREEMENT_P = 0.5


@dataclass
class Fusion:
    """What a fusion policy decided: label, distribution, contributions, disagreement, warnings."""
    label: str
    confidence: float
    distribution: dict[str, float]
    contributions: dict[str, float]
    used: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Set by a policy that wants to say more than its registry name (e.g. a fallback); else by :func:`fuse`.
    policy: str = ""
    #: Modalities that are sure of different labels (filled by :func:`fuse`).
    disagreement: list[ModalityView] = field(default_factory=list)


def informativeness(e: EmotionEvidence, params: FusionParams | None = None) -> float:
    """KL divergence (nats) of the evidence's distribution from its modality's prior, softly thresholded at
    the parameters' ``informative_kl`` (a reading barely different from "I know nothing" must not outvote a
    modality that is sure); 0 for unusable evidence."""
    if e.confidence <= 0.0:
        return 0.0
    threshold = (params or load_params()).informative_kl
    prior = PRIORS.get(e.modality) or uniform()
    kl = float(sum(p * np.log(max(p, 1e-9) / max(prior[k], 1e-9)) for k, p in e.distribution.items() if p > 0))
    return kl * min(1.0, kl / threshold)


def disagreement(evidence: list[EmotionEvidence]) -> list[ModalityView]:
    """The modalities' own readings when at least two of them are sure of different labels (else empty)."""
    views: dict[str, ModalityView] = {}
    for e in informative(evidence):
        label = max(e.distribution, key=e.distribution.__getitem__)
        p = e.distribution[label]
        if p >= DISAGREEMENT_P and (e.modality not in views or p > views[e.modality].probability):
            views[e.modality] = ModalityView(modality=e.modality, expert=e.expert, label=label,
                                             probability=round(float(p), 3))
    if len({v.label for v in views.values()}) < 2:
        return []
    return sorted(views.values(), key=lambda v: -v.probability)


def _contributions(label: str, weighted: list[tuple[EmotionEvidence, float]]) -> dict[str, float]:
    """Share of the support for ``label`` that each modality brought (sums to 1)."""
    support: dict[str, float] = {}
    for ev, w in weighted:
        support[ev.modality] = support.get(ev.modality, 0.0) + w * ev.distribution[label]
    total = sum(support.values())
    return {m: round(s / total, 4) for m, s in support.items()} if total > 0 else {}


def support_shares(label: str, evidence: list[EmotionEvidence], weights: dict[str, float] | None = None) -> dict[str, float]:
    """Each modality's share of the support for ``label`` under the weighted rule (for a label set after fusion)."""
    params = load_params()
    weights = weights or modality_weights(evidence, params)
    return _contributions(label, [(e, weights.get(e.modality, 0.3) * informativeness(e, params))
                                  for e in informative(evidence)])


def informative(evidence: list[EmotionEvidence]) -> list[EmotionEvidence]:
    """Evidence that carries any information (confidence above zero)."""
    return [e for e in evidence if e.confidence > 0.0]


def transcript_unreliable(evidence: list[EmotionEvidence]) -> bool:
    """Whether the transcription expert marked its transcript unreliable (Whisper's mean log-probability
    below its own -1.0 threshold: unclear or non-English speech)."""
    return any(e.transcript is not None and not e.transcript.reliable for e in evidence)


def modality_weights(evidence: list[EmotionEvidence], params: FusionParams | None = None) -> dict[str, float]:
    """The per-modality reliabilities for this turn: the transcript counts less when it is unreliable."""
    params = params or load_params()
    weights = dict(params.weights)
    if transcript_unreliable(evidence):
        weights["transcript"] = params.weights["transcript"] * params.unreliable_transcript_scale
    return weights


def transcript_scale(t: EmotionEvidence, evidence: list[EmotionEvidence]) -> float:
    """How much to trust the words of ``t`` alone: less when they are an unreliable transcript."""
    if t.modality != "transcript" or not transcript_unreliable(evidence):
        return 1.0
    return load_params().unreliable_transcript_scale


def weighted_fusion(evidence: list[EmotionEvidence], recall: MemoryRecall | None = None,
                    turn: TurnInput | None = None, weights: dict[str, float] | None = None,
                    params: FusionParams | None = None) -> Fusion:
    """Weighted mean of the distributions, weight = modality reliability x informativeness (KL from its prior)."""
    params = params or load_params()
    weights = weights or modality_weights(evidence, params)
    pairs = [(e, weights.get(e.modality, 0.3) * informativeness(e, params)) for e in informative(evidence)]
    pairs = [(e, w) for e, w in pairs if w > 0]
    if not pairs:
        return Fusion(label="neutral", confidence=0.0, distribution=uniform(), contributions={},
                      warnings=["no usable evidence: label defaults to neutral with zero confidence"])
    total = sum(w for _, w in pairs)
    dist = {lab: sum(w * e.distribution[lab] for e, w in pairs) / total for lab in LABELS}
    dist = normalize(dist)
    label = max(dist, key=dist.__getitem__)
    # Confidence: the fused top probability, discounted when only weak evidence was available
    # (the best single expert's confidence caps how sure the fusion may claim to be).
    best = max(e.confidence for e, _ in pairs)
    conf = dist[label] * (0.5 + 0.5 * min(1.0, best / 0.5))
    return Fusion(label=label, confidence=round(float(conf), 4), distribution=dist,
                  contributions=_contributions(label, pairs), used=[e.id for e, _ in pairs])


def text_only_fusion(evidence: list[EmotionEvidence], recall: MemoryRecall | None = None,
                     turn: TurnInput | None = None) -> Fusion:
    """Ablation: the text (or transcript) expert alone."""
    only = [e for e in evidence if e.modality in ("text", "transcript")]
    f = weighted_fusion(only, recall)
    f.policy = "text_only"
    return f


# ---- learned late fusion ----------------------------------------------------------------
#: Weights written by ``python -m emotion_agent.training.train_fusion`` (small .npz, applied in numpy, no pickle).
LEARNED_WEIGHTS = WEIGHTS_DIR / "fusion_learned.npz"
#: The same model trained without conversation features (ablation: what context adds).
LEARNED_NOCTX_WEIGHTS = WEIGHTS_DIR / "fusion_learned_noctx.npz"
_EPS = 1e-4


def _dist_vec(dist: dict[str, float] | None) -> np.ndarray:
    if not dist:
        return np.full(len(LABELS), 1.0 / len(LABELS))
    return np.array([float(dist.get(k, 0.0)) for k in LABELS])


def _pseudo_dist(label: str | None, confidence: float | None) -> np.ndarray:
    """A remembered turn that kept only (label, confidence): mass ``confidence`` on the label, rest spread."""
    if label not in LABELS:
        return np.full(len(LABELS), 1.0 / len(LABELS))
    c = min(max(float(confidence if confidence is not None else 0.5), 0.0), 1.0)
    v = np.full(len(LABELS), (1.0 - c) / (len(LABELS) - 1))
    v[LABELS.index(label)] = c
    return v


def previous_distributions(recall: MemoryRecall | None) -> list[np.ndarray]:
    """The previous turns' predicted distributions, oldest first (never gold labels).

    Uses a turn's full ``distribution`` when the memory kept one (the eval harness's memory does),
    else a pseudo-distribution from its stored label and confidence (Chroma memory).
    """
    if recall is None:
        return []
    out = []
    for t in recall.previous:
        out.append(_dist_vec(t.distribution) if t.distribution else _pseudo_dist(t.label, t.confidence))
    return out


def previous_speakers(recall: MemoryRecall | None) -> list[str | None]:
    """Who spoke each previous turn, oldest first (``None`` where memory does not know)."""
    return [t.speaker for t in recall.previous] if recall is not None else []


#: Feature layout version written into the weights file; v1 files (no speaker/position features) still load.
FEATURE_VERSION = 2
#: Dialogue position is capped here (MELD dialogues rarely run longer; the scale stays in [0, 1]).
POSITION_CAP = 20


def _same(a: str | None, b: str | None) -> bool:
    return bool(a and b and a.strip().lower() == b.strip().lower())


def fusion_features(text_dist: np.ndarray, previous: list[np.ndarray], k: int, *,
                    prev_speakers: list[str | None] | None = None, speaker: str | None = None,
                    position: int | None = None, version: int = FEATURE_VERSION) -> np.ndarray:
    """Feature vector of the learned fusion (shared by training and inference).

    v1: log text distribution (7) | previous turn's distribution (7) + present flag | recency-weighted mean
    of the last ``k`` turns' distributions (7) | how many previous turns there were (scaled) | first-turn
    flag | agreement of the text top label with the previous turn's top label.
    v2 adds the conversation's structure: speaker changed since the previous turn (flag) | the same
    speaker's latest distribution inside the window (7) + present flag | dialogue position
    (``min(position, 20) / 20``). With ``k = 0`` (no conversation) every context feature is zero.
    Unknown speakers count as "no change" and "not present"; unknown position as 0.
    """
    n = len(LABELS)
    prev = previous[-k:] if k > 0 else []
    last = prev[-1] if prev else np.zeros(n)
    if prev:
        w = 0.5 ** np.arange(len(prev))[::-1]
        mean = (np.stack(prev) * w[:, None]).sum(0) / w.sum()
    else:
        mean = np.zeros(n)
    agree = float(bool(prev) and int(np.argmax(text_dist)) == int(np.argmax(last)))
    parts: list[np.ndarray | list[float]] = [
        np.log(np.clip(text_dist, _EPS, 1.0)), last, [float(bool(prev))], mean,
        [len(prev) / max(k, 1)], [float(not prev)], [agree],
    ]
    if version >= 2:
        spk = list(prev_speakers or [])[-len(prev):] if prev else []
        spk = [None] * (len(prev) - len(spk)) + spk
        changed = float(bool(prev) and bool(speaker) and bool(spk[-1]) and not _same(spk[-1], speaker))
        own = [d for d, s in zip(prev, spk) if _same(s, speaker)]
        own_last = own[-1] if own else np.zeros(n)
        pos = min(max(int(position or 0), 0), POSITION_CAP) / POSITION_CAP if k > 0 else 0.0
        parts += [[changed], own_last, [float(bool(own))], [pos]]
    return np.concatenate(parts).astype(np.float64)


class LearnedFusionModel:
    """Standardise → linear → softmax over :func:`fusion_features` (multinomial logistic regression)."""

    def __init__(self, path: Path):
        data = np.load(path, allow_pickle=False)
        labels = [str(x) for x in data["labels"]]
        if labels != list(LABELS):
            raise ValueError(f"{path}: label order {labels} differs from MELD's {list(LABELS)}")
        self.path = path
        self.mean, self.scale = data["mean"], data["scale"]
        self.coef, self.intercept = data["coef"], data["intercept"]
        self.context_k = int(data["context_k"])
        self.temperature = float(data["temperature"]) if "temperature" in data else 1.0
        self.feature_version = int(data["feature_version"]) if "feature_version" in data else 1
        expected = len(fusion_features(np.full(len(LABELS), 1.0 / len(LABELS)), [], max(self.context_k, 1),
                                       version=self.feature_version))
        if self.coef.shape[1] != expected:
            raise ValueError(f"{path}: {self.coef.shape[1]} weights per class but feature set v"
                             f"{self.feature_version} has {expected}; retrain with python -m emotion_agent.training.train_fusion")
        self.meta = {k: str(data[k]) for k in ("trained_on", "dev_weighted_f1", "kind") if k in data}

    def predict_proba(self, feats: np.ndarray) -> np.ndarray:
        """The learned fusion's distribution for feature rows."""
        return softmax(((feats - self.mean) / self.scale) @ self.coef.T + self.intercept, self.temperature)


_LEARNED: dict[tuple[str, int], LearnedFusionModel] = {}
_LEARNED_LOCK = threading.Lock()


def load_learned(path: Path | None = None) -> LearnedFusionModel | None:
    """The learned model, cached per (path, mtime); ``None`` when no weights file exists."""
    path = Path(path or LEARNED_WEIGHTS)
    if not path.is_file():
        return None
    key = (str(path), path.stat().st_mtime_ns)
    with _LEARNED_LOCK:  # eval workers and the service's threads may load it at the same moment
        model = _LEARNED.get(key)
        if model is None:
            model = LearnedFusionModel(path)
            for old in [k for k in _LEARNED if k[0] == key[0]]:  # a retrained file replaces its older version
                del _LEARNED[old]
            _LEARNED[key] = model
    return model


def _fallback(evidence: list[EmotionEvidence], recall: MemoryRecall | None, name: str, reason: str) -> Fusion:
    """The weighted rule, named ``<name>->weighted`` and with the reason as a warning."""
    f = weighted_fusion(evidence, recall)
    f.policy = f"{name}->weighted"
    f.warnings.append(f"{reason}; used weighted fusion")
    return f


def _text_view_fusion(t: EmotionEvidence, view: dict[str, float], confidence: float,
                      evidence: list[EmotionEvidence], recall: MemoryRecall | None, policy: str) -> Fusion:
    """The text + context ``view`` alone, or late-fused with the other modalities by the weighted rule."""
    others = [e for e in informative(evidence) if e is not t]
    if others:
        t2 = t.model_copy(update={"distribution": view, "confidence": confidence})
        f = weighted_fusion([t2, *others], recall, weights=modality_weights(evidence))
        f.used = [e.id for e in informative(evidence)]
        f.policy = policy
        return f
    label = max(view, key=view.__getitem__)
    return Fusion(label=label, confidence=round(float(view[label]) * transcript_scale(t, evidence), 4),
                  distribution=normalize(view), contributions={t.modality: 1.0}, used=[t.id], policy=policy)


def learned_fusion(evidence: list[EmotionEvidence], recall: MemoryRecall | None = None,
                   turn: TurnInput | None = None, path: Path | None = None, name: str = "learned") -> Fusion:
    """Learned late fusion: the text expert's distribution + the conversation's previous predictions.

    The policy name says what ran: ``<name>`` (the weights file applied), ``<name>(context in text model)``
    (the text expert reads the dialogue itself, so no weights file is loaded) or ``<name>->weighted`` with
    a warning (no usable text evidence, or the weights file is missing). Other modalities (audio, vision),
    when present, are combined with the text + context distribution by the weighted rule.
    """
    text = [e for e in informative(evidence) if e.modality in ("text", "transcript")]
    if not text:
        return _fallback(evidence, recall, name, "no text evidence for the learned fusion")
    t = text[0]
    if t.extra.get("context_in_model"):
        # The fine-tuned text expert already reads the dialogue (past turns with speakers): a second context
        # model trained on the MiniLM head's outputs lowered MELD dev W-F1 (docs/measurements.md), so its
        # distribution is used as the text + context view and no weights file is read.
        return _text_view_fusion(t, dict(t.distribution), t.confidence, evidence, recall,
                                 f"{name}(context in text model)")
    weights = Path(path or LEARNED_WEIGHTS)
    model = load_learned(weights)
    if model is None:
        return _fallback(evidence, recall, name, f"learned fusion weights not found at {weights} "
                         "(train: python -m emotion_agent.training.train_fusion)")
    feats = fusion_features(_dist_vec(t.distribution), previous_distributions(recall), model.context_k,
                            prev_speakers=previous_speakers(recall), speaker=turn.speaker if turn else None,
                            position=turn.turn_index if turn else None, version=model.feature_version)
    proba = model.predict_proba(feats[None, :])[0]
    learned = {lab: float(p) for lab, p in zip(LABELS, proba)}
    return _text_view_fusion(t, learned, max(t.confidence, float(proba.max())), evidence, recall, name)


def learned_noctx_fusion(evidence: list[EmotionEvidence], recall: MemoryRecall | None = None,
                         turn: TurnInput | None = None) -> Fusion:
    """Ablation: the learned fusion trained without conversation features."""
    return learned_fusion(evidence, recall, turn, LEARNED_NOCTX_WEIGHTS, name="learned_noctx")


POLICIES: dict[str, Callable[..., Fusion]] = {
    "weighted": weighted_fusion,
    "text_only": text_only_fusion,
    "learned": learned_fusion,
    "learned_noctx": learned_noctx_fusion,
}


def fuse(evidence: list[EmotionEvidence], recall: MemoryRecall | None = None, policy: str = "weighted",
         turn: TurnInput | None = None) -> Fusion:
    """The fused label under ``policy``; ``turn`` (speaker, position) feeds the learned fusion's context features."""
    if policy not in POLICIES:
        raise ValueError(f"unknown fusion policy '{policy}' (known: {', '.join(POLICIES)})")
    result = POLICIES[policy](evidence, recall, turn)
    result.policy = result.policy or policy
    result.disagreement = disagreement(evidence)
    if result.disagreement:
        said = ", ".join(f"{v.modality} {v.label} ({v.probability:.2f})" for v in result.disagreement)
        result.warnings.append(f"modalities disagree: {said}; fused label {result.label}")
    return result
