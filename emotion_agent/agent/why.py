"""The why service: answers an analyst's question about one labelled turn, from its evidence only.

One implementation for the CLI (``emotion-agent why … --ask``) and the HTTP API (``POST /v1/why``).
It answers contrastive questions ("why not sadness?", "why anger and not fear?") from the stored
distributions, contributions and word attributions: what pushed toward each label, by how much the
other label would have to rise to win, and which modality disagreed. It never repeats the utterance
(it may quote at most three words of it, the ones that moved the text expert), cites the evidence it
used, and refuses a question that is only instructions with a clear message. Deterministic: no LLM,
so no answer can be invented.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from emotion_agent.agent.compose import STOPWORDS, bare_word
from emotion_agent.agent.faithfulness import LABEL_WORDS
from emotion_agent.agent.injection import strip_injection_spans
from emotion_agent.tools.evidence import LABELS, EmotionEvidence, FusedResult, WordWeight

_WHAT = {"text": "the words", "transcript": "the transcribed words", "audio": "the voice", "vision": "the face",
         "memory": "the conversation so far"}
_PLURAL = {"text", "transcript"}  # "the words give …"; the others are singular ("the voice gives …")


def _who(modality: str) -> str:
    """How a modality reads in prose ("the voice")."""
    return _WHAT.get(modality, f"the {modality} reading")


def _verb(modality: str, plural: str, singular: str) -> str:
    """The verb form that agrees with the modality's noun phrase."""
    return plural if modality in _PLURAL else singular


def _quoted(words: list[str]) -> str:
    """'a', 'b' and 'c'."""
    q = [f"'{w}'" for w in words]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " and " + q[-1]


class WhyAnswer(BaseModel):
    """An answer to one question about one turn."""

    question: str
    answer: str
    label: str
    contrast: str | None = Field(default=None, description="The other label the question asked about, if any.")
    cited_evidence_ids: list[str] = Field(default_factory=list)
    refused: bool = Field(default=False, description="True when the question held only instructions.")
    source: str = "evidence"


def labels_in(text: str) -> list[str]:
    """MELD labels named in ``text`` (any of their word forms), in order of appearance."""
    low = text.lower()
    hits = []
    for label, words in LABEL_WORDS.items():
        for w in words:
            m = re.search(rf"\b{w}\b", low)
            if m:
                hits.append((m.start(), label))
                break
    return [lab for _, lab in sorted(hits)]


def _attributions(result: FusedResult) -> tuple[list[WordWeight], str | None]:
    for e in result.evidence:
        if e.attributions:
            return list(e.attributions), e.attributions_toward
    return [], None


def _words(weights: list[WordWeight], sign: int, k: int = 3) -> list[str]:
    chosen = sorted((w for w in weights if sign * w.weight > 0.01 and bare_word(w.word).lower() not in STOPWORDS),
                    key=lambda w: -sign * w.weight)
    out: list[str] = []
    for w in chosen:
        word = bare_word(w.word)
        if word and word not in out:
            out.append(word)
        if len(out) == k:
            break
    return out


def answer_why(result: FusedResult, question: str) -> WhyAnswer:
    """Answer ``question`` about ``result`` from its evidence (see the module docstring)."""
    raw = " ".join((question or "").split())[:500]
    clean, spans = strip_injection_spans(raw)
    label = result.label
    if not clean or not re.search(r"[A-Za-z]", clean):
        return WhyAnswer(question=raw, label=label, refused=True,
                         answer="The question only contained instructions or no words, so there is nothing to "
                                f"answer. Ask about the label, for example: why {label} and not sadness?")
    named = [x for x in labels_in(clean) if x != label]
    contrast = named[-1] if named else None
    dist = result.distribution
    informative = [e for e in result.evidence if e.confidence > 0]
    cited: list[str] = []
    parts: list[str] = []
    p_label = dist.get(label, 0.0)
    if not informative:
        parts.append(f"The turn was labelled {label} with no usable evidence (confidence "
                     f"{result.confidence:.2f}), so no modality argues for or against any label.")
        return WhyAnswer(question=raw, answer=" ".join(parts), label=label, contrast=contrast)
    if contrast is None:
        runner = max((x for x in LABELS if x != label), key=lambda x: dist.get(x, 0.0))
        parts.append(f"The fused result gives {label} {p_label:.2f}, ahead of {runner} at {dist.get(runner, 0):.2f}.")
        other = runner
    else:
        p_other = dist.get(contrast, 0.0)
        gap = p_label - p_other
        if gap > 0:
            parts.append(f"{contrast.capitalize()} got {p_other:.2f} against {p_label:.2f} for {label}: it would "
                         f"need about {gap:.2f} more of the fused probability to win.")
        else:  # the label was not the fused top (e.g. set by adjudication): say so instead of a negative gap
            parts.append(f"{contrast.capitalize()} got {p_other:.2f} against {p_label:.2f} for {label}: the fused "
                         f"probabilities alone did not rank {label} first.")
        other = contrast
    for e in informative:
        a, b = e.distribution.get(label, 0.0), e.distribution.get(other, 0.0)
        who, m = _who(e.modality), e.modality
        top = max(e.distribution, key=e.distribution.__getitem__)
        lean = label if a >= b else other
        leaning = (f"{_verb(m, 'they lean', 'it leans')} {lean}" if round(a, 2) != round(b, 2)
                   else f"{_verb(m, 'they do', 'it does')} not separate the two")
        parts.append(f"{who.capitalize()} {_verb(m, 'give', 'gives')} {label} {a:.2f} and {other} {b:.2f}, so "
                     f"{leaning}"
                     + (f" ({_verb(m, 'their', 'its')} own top reading is {top})" if top not in (label, other)
                        else "") + ".")
        cited.append(e.id)
    weights, toward = _attributions(result)
    if weights and toward == label:
        pro, con = _words(weights, +1), _words(weights, -1)
        if pro:
            one = len(pro) == 1
            parts.append(f"The {'word' if one else 'words'} that pushed most toward {label} "
                         f"{'is' if one else 'are'} {_quoted(pro)}; without {'it' if one else 'them'} the text "
                         f"reading of {label} would drop.")
        if con:
            parts.append(f"{'The word' if len(con) == 1 else 'Words'} that pulled away from it: {_quoted(con)}.")
    if result.contributions:
        strongest = max(result.contributions.items(), key=lambda kv: kv[1])
        parts.append(f"{_who(strongest[0]).capitalize()} carried {strongest[1]:.0%} of the "
                     f"support for {label}.")
    if result.disagreement:
        parts.append("The modalities disagree: " + "; ".join(
            f"{_who(v.modality)} {_verb(v.modality, 'say', 'says')} {v.label} ({v.probability:.2f})"
            for v in result.disagreement)
            + ".")
    if spans:
        parts.append("(Instructions inside the question were ignored.)")
    return WhyAnswer(question=raw, answer=" ".join(parts), label=label, contrast=contrast,
                     cited_evidence_ids=list(dict.fromkeys(cited)))


def evidence_of(record: dict) -> FusedResult:
    """A stored record (a run's ``result`` or the service's memory record) as a ``FusedResult``."""
    data = record.get("result", record)
    return FusedResult.model_validate(data)


__all__ = ["WhyAnswer", "answer_why", "evidence_of", "labels_in", "EmotionEvidence"]
