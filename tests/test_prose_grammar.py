"""The composer's and the why service's prose reads right over many evidence combinations (fast, no models).

Checked slips: a verb that does not agree with its subject ("the voice give", "the words says"), a plural
pronoun for one modality ("the voice … so they lean"), "the words … are 'x'" for one word, a modality named
that has no evidence ("the face weighed most" with no face), "(… as said)", a word doubled, a negative gap,
stray spacing before punctuation.
"""

from __future__ import annotations

import itertools
import re

import pytest

from emotion_agent.agent.compose import compose
from emotion_agent.agent.recall import MemoryRecall, RecalledTurn
from emotion_agent.agent.why import answer_why
from emotion_agent.tools.base import TurnInput
from emotion_agent.tools.evidence import LABELS, Cue, EmotionEvidence, FusedResult, ModalityView, WordWeight

SINGULAR = ("the voice", "the face", "the conversation so far", "the text", "the transcript")
PLURAL = ("the words", "the transcribed words")
BASE_VERBS = {"give", "say", "lean", "point", "show", "sound", "carry", "suggest", "read", "weigh", "agree"}
S_VERBS = {v + "s" for v in BASE_VERBS}
EXPERT = {"text": "text_emotion", "transcript": "text_emotion", "audio": "speech_emotion", "vision": "facial_emotion"}
NAMED = {"audio": r"\bvoice\b", "vision": r"\bface\b"}


def slips(text: str, modalities: set[str]) -> list[str]:
    """Every grammar or fact slip found in ``text`` (a result whose evidence has ``modalities``)."""
    found = []
    for m in re.finditer(r"\b(the (?:voice|face|conversation so far|transcribed words|words|text|transcript))"
                         r"(?: alone| as a whole)? (\w+)", text, flags=re.IGNORECASE):
        subject, verb = m.group(1).lower(), m.group(2).lower()
        if subject in SINGULAR and verb in BASE_VERBS:
            found.append(f"singular subject, plural verb: {m.group(0)!r}")
        if subject in PLURAL and verb in S_VERBS:
            found.append(f"plural subject, singular verb: {m.group(0)!r}")
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if re.search(r"\bthe (voice|face)\b[^.;]*\b(they|their)\b", sentence, flags=re.IGNORECASE):
            found.append(f"plural pronoun for one modality: {sentence!r}")
        if re.search(r"\bthe word that\b[^;]*\bare\b|\bthe words that\b[^;]* is '[^']+';", sentence,
                     flags=re.IGNORECASE):
            found.append(f"number of 'word(s)': {sentence!r}")
        if re.search(r"words that pushed most [^;]* are '[^']+'; without them", sentence):
            found.append(f"one word called plural: {sentence!r}")
    for modality, pattern in NAMED.items():
        if re.search(pattern, text, flags=re.IGNORECASE) and modality not in modalities:
            found.append(f"names the {pattern} without {modality} evidence: {text!r}")
    if "as said" in text:
        found.append("'(… as said)'")
    doubled = re.search(r"\b(\w+) \1\b", text, flags=re.IGNORECASE)
    if doubled:
        found.append(f"doubled word {doubled.group(0)!r}")
    if re.search(r"\s[.,;:)]|\s{2,}|-0\.\d", text):
        found.append(f"spacing or negative figure: {text!r}")
    return found


def dist(label: str, p: float) -> dict[str, float]:
    return {k: (p if k == label else (1 - p) / 6) for k in LABELS}


def evidence(modality: str, label: str, p: float, words: list[WordWeight] | None, toward: str) -> EmotionEvidence:
    kw = {}
    if modality == "audio":
        kw["cues"] = [Cue(name="loudness", value="-15 dBFS", detail="loud"), Cue(name="tempo", value=5, detail="fast")]
    if modality == "vision":
        kw["detection"] = "crop"
    if modality in ("text", "transcript") and words:
        kw.update(attributions=words, attributions_toward=toward)
    return EmotionEvidence(id=f"{EXPERT[modality].split('_')[0]}-{abs(hash((modality, label))) % 10**6:06d}",
                           modality=modality, expert=EXPERT[modality], model_id="m",
                           distribution=dist(label, p), confidence=p, **kw)


UTTERANCE = "I really cannot believe you lost my keys again today"
WORD_SETS = {"one": {"lost": 0.3}, "three": {"lost": 0.3, "keys": 0.2, "believe": 0.1, "today": -0.1}}


def cases():
    """(result, turn, recall) over modality sets, agreeing/disagreeing readings, 1 or 3 quoted words."""
    word_modalities = [None, "text", "transcript"]
    for words_m, audio, vision, label, other, n_words in itertools.product(
            word_modalities, (False, True), (False, True), ("anger", "neutral"), ("anger", "sadness"),
            ("one", "three")):
        mods = [m for m in (words_m, "audio" if audio else None, "vision" if vision else None) if m]
        if not mods:
            continue
        weights = [WordWeight(word=w, weight=WORD_SETS[n_words].get(w.strip("."), 0.0)) for w in UTTERANCE.split()]
        evs = []
        for i, m in enumerate(mods):
            lab = label if i == 0 else other
            evs.append(evidence(m, lab, 0.7 - 0.1 * i, weights if m in ("text", "transcript") else None, label))
        views = [ModalityView(modality=e.modality, expert=e.expert, label=max(e.distribution, key=e.distribution.get),
                              probability=max(e.distribution.values())) for e in evs]
        disagree = views if len({v.label for v in views}) > 1 else []
        contributions = {e.modality: round(1.0 / len(evs), 2) for e in evs}
        for extra_memory in (False, True):
            contrib = {**contributions, "memory": 0.9} if extra_memory else contributions
            result = FusedResult(label=label, confidence=0.62, distribution=dist(label, 0.62), evidence=evs,
                                 disagreement=disagree, contributions=contrib)
            turn = TurnInput(text=UTTERANCE if words_m == "text" else None, speaker="Ross",
                             audio_path="x.wav" if audio or words_m == "transcript" else None,
                             image_path="x.png" if vision else None,
                             transcript=UTTERANCE if words_m == "transcript" else None)
            recall = MemoryRecall(previous=[RecalledTurn(id="m-1", conversation_id="c1", turn_index=0, speaker="Ross", text="Hi", label="joy")])
            yield result, turn, recall, set(mods)


CASES = list(cases())


def test_the_combinations_cover_every_modality_mix():
    assert len(CASES) >= 100
    assert {frozenset(m) for *_, m in CASES} >= {frozenset({"audio"}), frozenset({"vision"}),
                                                  frozenset({"text", "audio", "vision"}),
                                                  frozenset({"transcript", "audio"})}


@pytest.mark.parametrize("question", ["why?", "why not sadness?", "why anger and not joy?", "why not neutral?"])
def test_why_answers_have_no_grammar_or_fact_slips(question):
    bad = {}
    for result, _turn, _recall, mods in CASES:
        answer = answer_why(result, question).answer
        if slips(answer, mods):
            bad[answer] = slips(answer, mods)
    assert not bad, "\n".join(f"{a}\n  -> {s}" for a, s in list(bad.items())[:5])


def test_composed_explanations_have_no_grammar_or_fact_slips():
    bad = {}
    for result, turn, recall, mods in CASES:
        weights = next((e.attributions for e in result.evidence if e.attributions), None)
        text, _ = compose(turn, result, recall, weights)
        if slips(text, mods):
            bad[text] = slips(text, mods)
    assert not bad, "\n".join(f"{a}\n  -> {s}" for a, s in list(bad.items())[:5])


def test_the_checker_catches_the_slips_it_names():
    assert slips("The voice give anger 0.70 and joy 0.10, so they lean anger.", {"audio"})
    assert slips("The words says anger.", {"text"})
    assert slips("The words that pushed most toward anger are 'lost'; without them the text reading drops.",
                 {"text"})
    assert slips("The modalities disagree (words: anger); the face weighed most.", {"text"})
    assert slips("It rests on 'God' (42% surprise as said).", {"text"})
    assert not slips("The voice gives anger 0.70 and joy 0.10, so it leans anger.", {"audio"})
