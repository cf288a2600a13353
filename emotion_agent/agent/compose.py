"""The deterministic explanation composer: complete, readable prose built only from the evidence's facts.

It runs in milliseconds and is always available: it is the explanation when the LLM is off, and the
fallback whenever an LLM answer fails the checks in :mod:`emotion_agent.agent.faithfulness`. Every sentence
states a fact that is in the result (the fused label and confidence, each modality's own reading, the words
that moved the text expert most by occlusion, prosody cues, the face reading, the conversation so far,
disagreement between modalities). Phrasing varies with the turn (a stable choice per utterance), and
references in the prose are readable ("the words", "the voice"); the evidence ids go in the citation list.
"""

from __future__ import annotations

import hashlib

from emotion_agent.agent.recall import MemoryRecall
from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.words import STOPWORDS, bare_word  # noqa: F401 - re-exported
from emotion_agent.tools.evidence import EmotionEvidence, FusedResult, WordWeight

#: How each label reads in prose: (noun phrase, adjective).
LABEL_PROSE = {
    "neutral": ("a neutral tone", "neutral"), "joy": ("joy", "joyful"), "surprise": ("surprise", "surprised"),
    "anger": ("anger", "angry"), "sadness": ("sadness", "sad"), "disgust": ("disgust", "disgusted"),
    "fear": ("fear", "afraid"),
}
#: What a face shows for each label.
FACE_LOOK = {"neutral": "a neutral expression", "joy": "a smile", "surprise": "a surprised look",
             "anger": "an angry expression", "sadness": "a sad expression", "disgust": "a disgusted look",
             "fear": "a fearful look"}
#: Prosody cue names (from tools/prosody.readable_cues) worth saying, in order.
VOICE_CUES = ("loudness", "pitch median", "pitch peaks", "tempo", "loudness variation", "voicing")


def _pick(options: list[str], seed: str) -> str:
    """A stable choice among phrasings (the same turn always reads the same; different turns vary)."""
    h = int(hashlib.sha1(seed.encode("utf-8")).hexdigest()[:8], 16)
    return options[h % len(options)]


def _conf_word(c: float) -> str:
    return "clearly" if c >= 0.7 else "probably" if c >= 0.45 else "tentatively"


def _top(e: EmotionEvidence) -> tuple[str, float]:
    label = max(e.distribution, key=e.distribution.__getitem__)
    return label, e.distribution[label]


#: Function words are never quoted as the reason for a label.
def quoted_words(weights: list[WordWeight], k: int = 3, min_weight: float = 0.02) -> list[str]:
    """The content words that pushed most toward the label (positive occlusion weight), in utterance order."""
    content = [w for w in weights if w.weight >= min_weight and bare_word(w.word).lower() not in STOPWORDS]
    best = sorted(content, key=lambda w: -w.weight)[:k]
    order = {id(w): i for i, w in enumerate(weights)}
    cleaned = []
    for w in sorted(best, key=lambda w: order[id(w)]):
        word = bare_word(w.word)
        if word and word not in cleaned:
            cleaned.append(word)
    return cleaned


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _voice_facts(e: EmotionEvidence) -> list[str]:
    by = {c.name: c for c in e.cues}
    out = []
    for name in VOICE_CUES:
        c = by.get(name)
        if c is None or not c.detail:
            continue
        if name == "loudness" and c.detail in ("loud", "quiet"):
            out.append(f"it is {c.detail}")
        elif name == "pitch median" and c.detail in ("high", "low"):
            out.append(f"the pitch is {c.detail}")
        elif name == "pitch peaks" and ("wide" in c.detail or "flat" in c.detail):
            out.append("the melody is " + ("lively" if "wide" in c.detail else "flat"))
        elif name == "tempo" and c.detail in ("fast", "slow"):
            out.append(f"the tempo is {c.detail}")
        elif name == "loudness variation" and c.detail == "strongly varying":
            out.append("the loudness varies strongly")
    return out[:3]


def compose(turn: TurnInput, result: FusedResult, recall: MemoryRecall | None = None,
            attributions: list[WordWeight] | None = None) -> tuple[str, list[str]]:
    """A complete explanation of ``result`` and the ids of the evidence it relies on."""
    label, conf = result.label, result.confidence
    noun = LABEL_PROSE[label][0]
    seed = (turn.spoken_text() or "") + label
    cited: list[str] = []
    sentences: list[str] = []
    pct = f"{conf:.0%}"
    if conf <= 0.0:
        sentences.append(f"No usable evidence was found, so the label defaults to {label} with no confidence.")
    else:
        if conf < 0.45:
            sentences.append(_pick([
                f"A tentative call: {label} ({pct} confidence).",
                f"Tentatively {label} ({pct} confidence).",
            ], seed))
        else:
            sentences.append(_pick([
                f"The turn reads as {label} ({pct} confidence).",
                f"The speaker {_conf_word(conf)} shows {noun} ({pct} confidence).",
                f"Of the seven labels, {label} fits this turn best ({pct} confidence).",
            ], seed))

    by_modality: dict[str, EmotionEvidence] = {}
    for e in result.evidence:
        if e.confidence > 0 and e.modality not in by_modality:
            by_modality[e.modality] = e
    words = by_modality.get("text") or by_modality.get("transcript")
    if words is not None:
        w_label, w_p = _top(words)
        source = "the words" if words.modality == "text" else "the transcribed words"
        quoted = quoted_words(attributions or []) if w_label == label else []
        if w_label == label and quoted:
            q = _join([f"'{w}'" for w in quoted])
            alone = "the text" if words.modality == "text" else "the transcript"
            sentences.append(_pick([
                f"It rests mostly on {q} in {source} ({w_p:.0%} from {alone} alone).",
                f"{source.capitalize()} point the same way, above all {q} ({w_p:.0%} from {alone} alone).",
                f"Removing {q} from {source} would weaken the reading most ({w_p:.0%} from {alone} alone).",
            ], seed + "w"))
        elif w_label == label:
            sentences.append(f"{source.capitalize()} as a whole point the same way ({w_p:.0%}).")
        else:
            sentences.append(f"{source.capitalize()} alone lean {w_label} ({w_p:.0%}).")
        cited.append(words.id)
    voice = by_modality.get("audio")
    if voice is not None:
        v_label, v_p = _top(voice)
        facts = _voice_facts(voice)
        detail = f": {_join(facts)}" if facts else ""
        sentences.append(f"The voice sounds {LABEL_PROSE[v_label][1]} ({v_p:.0%}){detail}.")
        cited.append(voice.id)
    else:
        silent = next((e for e in result.evidence if e.modality == "audio" and e.no_speech), None)
        if silent is not None:
            sentences.append("No speech was detected in the audio, so the voice adds nothing.")
    face = by_modality.get("vision")
    if face is not None:
        f_label, f_p = _top(face)
        how = " (the image was read as a face crop)" if "crop" in (face.detection or "") else ""
        sentences.append(f"The face shows {FACE_LOOK[f_label]} ({f_p:.0%}){how}.")
        cited.append(face.id)
    if recall is not None and recall.previous:
        last = recall.previous[-1]
        if last.label:
            who = "the same speaker" if last.speaker and last.speaker == turn.speaker else "the previous turn"
            sentences.append(f"Just before, {who} read as {last.label}.")
    if result.disagreement:
        def side(modality: str) -> str:
            return {"text": "words", "transcript": "words", "audio": "voice", "vision": "face",
                    "memory": "conversation"}.get(modality, modality)
        parts = [f"{side(v.modality)}: {v.label}" for v in result.disagreement]
        strongest = max(result.contributions.items(), key=lambda kv: kv[1])[0] if result.contributions else None
        tail = f"; the {side(strongest)} weighed most" if strongest else ""
        sentences.append(f"The modalities disagree ({'; '.join(parts)}){tail}.")
    if 0.0 < conf < 0.35:
        sentences.append("The evidence is weak: treat it with caution.")
    return " ".join(sentences), list(dict.fromkeys(cited))
