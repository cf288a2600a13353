"""Fusion: from the experts' evidence to one label, deterministically.

The fused label is computed from the evidence distributions — never parsed from LLM text.
Policies are registered by name in :data:`POLICIES`; ``weighted`` (confidence- and
modality-weighted average) is the default, ``learned`` loads a trained late-fusion model
(``evals/train_fusion.py``) when its weights exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agent.memory import MemoryRecall
from tools.evidence import LABELS, EmotionEvidence, normalize, uniform

#: How much each modality counts before its own confidence is applied.
MODALITY_WEIGHTS: dict[str, float] = {"text": 1.0, "transcript": 0.8, "audio": 0.5, "vision": 0.5}


@dataclass
class Fusion:
    label: str
    confidence: float
    distribution: dict[str, float]
    contributions: dict[str, float]
    used: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    policy: str = "weighted"


def _contributions(label: str, weighted: list[tuple[EmotionEvidence, float]]) -> dict[str, float]:
    """Share of the support for ``label`` that each modality brought (sums to 1)."""
    support: dict[str, float] = {}
    for ev, w in weighted:
        support[ev.modality] = support.get(ev.modality, 0.0) + w * ev.distribution[label]
    total = sum(support.values())
    return {m: round(s / total, 4) for m, s in support.items()} if total > 0 else {}


def informative(evidence: list[EmotionEvidence]) -> list[EmotionEvidence]:
    return [e for e in evidence if e.confidence > 0.0]


def weighted_fusion(evidence: list[EmotionEvidence], recall: MemoryRecall | None = None,
                    weights: dict[str, float] | None = None) -> Fusion:
    """Weighted mean of the distributions, weight = modality weight x evidence confidence."""
    weights = weights or MODALITY_WEIGHTS
    pairs = [(e, weights.get(e.modality, 0.3) * e.confidence) for e in informative(evidence)]
    pairs = [(e, w) for e, w in pairs if w > 0]
    if not pairs:
        return Fusion(label="neutral", confidence=0.0, distribution=uniform(), contributions={},
                      warnings=["no usable evidence: label defaults to neutral with zero confidence"])
    total = sum(w for _, w in pairs)
    dist = {lab: sum(w * e.distribution[lab] for e, w in pairs) / total for lab in LABELS}
    dist = normalize(dist)
    label = max(dist, key=dist.__getitem__)
    # Confidence: the fused top probability, discounted when only weak evidence was available.
    coverage = min(1.0, total / max(weights.get("text", 1.0), 1e-9))
    conf = dist[label] * (0.5 + 0.5 * min(1.0, coverage))
    return Fusion(label=label, confidence=round(float(conf), 4), distribution=dist,
                  contributions=_contributions(label, pairs), used=[e.id for e, _ in pairs])


def text_only_fusion(evidence: list[EmotionEvidence], recall: MemoryRecall | None = None) -> Fusion:
    """Ablation: the text (or transcript) expert alone."""
    only = [e for e in evidence if e.modality in ("text", "transcript")]
    f = weighted_fusion(only, recall)
    f.policy = "text_only"
    return f


POLICIES: dict[str, Callable[..., Fusion]] = {
    "weighted": weighted_fusion,
    "text_only": text_only_fusion,
}


def fuse(evidence: list[EmotionEvidence], recall: MemoryRecall | None = None, policy: str = "weighted") -> Fusion:
    if policy not in POLICIES:
        raise ValueError(f"unknown fusion policy '{policy}' (known: {', '.join(POLICIES)})")
    result = POLICIES[policy](evidence, recall)
    result.policy = policy
    return result


def entropy(dist: dict[str, float]) -> float:
    p = np.array([dist[k] for k in LABELS])
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())
