"""Checks that an explanation says only what the evidence supports (used on every LLM answer and by the eval).

Each check names one failure a reader would catch: prose that stops mid-sentence, argues for another label,
mentions a modality the turn did not have (a "raised voice" for typed text), quotes words the speaker never
said, copies the prompt's example, or repeats instructions found in the user's text.
"""

from __future__ import annotations

import re

from emotion_agent.tools.evidence import FusedResult

# ---- does the prose agree with the label? (used by the explainer and by the eval's checks) -------
#: Words that name each label in prose (the label itself plus its common adjective/noun forms).
LABEL_WORDS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neutrality"),
    "joy": ("joy", "joyful", "joyous", "happy", "happiness"),
    "surprise": ("surprise", "surprised", "surprising"),
    "anger": ("anger", "angry", "angered"),
    "sadness": ("sadness", "sad"),
    "disgust": ("disgust", "disgusted", "disgusting"),
    "fear": ("fear", "fearful", "afraid", "scared"),
}
_ASSERT = (r"(?:label(?:ed|led)?|classif(?:ied|y)|categori[sz]ed|emotion|answer|verdict|final label|tagged)"
           r"(?:\s+(?:is|was|as|should\s+be|would\s+be|of|=|:))+\s+\"?'?")
#: Any bracketed evidence-id-like token in prose (the checks count invented ones too).
ID_IN_TEXT = re.compile(r"\[([A-Za-z_]+-[0-9a-f]{4,})\]")


def mentions_label(text: str, label: str) -> bool:
    """``text`` (lower case) names ``label`` or one of its forms, as a whole word."""
    return any(re.search(rf"\b{w}\b", text) for w in LABEL_WORDS[label])


def asserted_labels(text: str) -> set[str]:
    """Labels the prose asserts as the answer: ``labeled (as) X``, ``the emotion is X``, ``classified as X``..."""
    low = text.lower()
    out = set()
    for lab, words in LABEL_WORDS.items():
        for w in words:
            if re.search(_ASSERT + rf"{w}\b", low):
                out.add(lab)
    return out


_VOICE = re.compile(r"\b(?:voice|vocal|tone of voice|pitch|loud(?:ly|er|ness)?|shout\w*|yell\w*|prosody|"
                    r"intonation|audio|sounds? (?:angry|happy|sad|scared|surprised|upset))\b", re.I)
_FACE = re.compile(r"\b(?:face|facial|smil\w*|frown\w*|grin\w*|eyes|eyebrows?|expression)\b", re.I)
_QUOTED = re.compile(r"[\"“‘]([^\"“”‘’]{1,60})[\"”’]|(?:^|(?<=[\s(]))'([^']{1,60})'(?=[\s.,;:!?)]|$)")
_COMPLETE = re.compile(r"[.!?][\"')\]]?\s*$")


def _has(result: FusedResult, *modalities: str) -> bool:
    return any(e.modality in modalities and e.confidence > 0 for e in result.evidence)


def ngrams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Lower-case word n-grams of ``text``."""
    words = re.findall(r"[a-z']+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


#: Words of an explanation's frame that any answer may share with the prompt's example.
GENERIC = frozenset("""reading likely most model text words word confidence confident moderate here toward towards
drives drive speaker turn label labelled labeled emotion evidence fits shows show points point way said says
fused seems sounds appears strongly clearly probably tentatively also both because with that this from have
been they them what when which while into about more than only just like their there these those would could
should other each some something""".split())


def content_words(text: str) -> set[str]:
    """Lower-case words of four or more letters that carry content (not label words, not generic frame words)."""
    labels = {w for words in LABEL_WORDS.values() for w in words}
    from emotion_agent.agent.compose import STOPWORDS

    return {w for w in re.findall(r"[a-z]{4,}", (text or "").lower())
            if w not in GENERIC and w not in labels and w not in STOPWORDS}


#: Words an explanation may use beyond its facts and the utterance: how it frames a reading, not claims about
#: the turn. Anything else must come from the facts or the speaker's words (checked per word stem).
FRAME_WORDS = frozenset("""reading reads read readings confident confidence percent carry carries carried carrying
weight weighs weaken weakens strengthen strengthens push pushes pushed pushing overall mostly main mainly strong
stronger strongest clear clearer suggest suggests suggested indicate indicates indicated indication express
expresses expressed expressing comes come across sound look looks fits fit best likely likelier signal signals
cue cues phrase phrases sentence sentences utterance user person people tone feel feels feeling feelings
emotional alone whole together agree agrees agreeing point direction since removing removed remove without less
least high higher low lower slightly somewhat quite very rather fairly mild strongly overall reason reasons
support supports supported supporting lean leans leaning mainly largely partly part parts mention mentions
mentioned saying stated states state note notes noted given based above below among chiefly especially
particular particularly specific certain uncertain sure unsure moderately highly plain plainly simply still though
however although even further therefore thus hence result results answer""".split())
_CONTEXT_CLAIM = re.compile(r"\b(?:conversation|earlier|previous(?:ly)?|before|context|last turn|prior)\b", re.I)


def stem(word: str) -> str:
    """A crude stem (enough to match 'crying'/'cry', 'tired'/'tire', 'words'/'word')."""
    w = word.lower()
    for suffix in ("ingly", "edly", "ness", "ment", "ing", "ies", "ied", "ed", "es", "ly", "s", "y", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def unsupported_words(text: str, sources: str) -> list[str]:
    """Content words of ``text`` that neither ``sources`` (facts, evidence, utterance) nor the explanation frame
    vocabulary contain, compared by stem: what the prose adds on its own."""
    known = {stem(w) for w in re.findall(r"[a-z]+", sources.lower())}
    known |= {stem(w) for w in FRAME_WORDS | GENERIC}
    out = []
    for w in sorted(content_words(text)):
        if stem(w) not in known and w not in FRAME_WORDS:
            out.append(w)
    return out


def problems(text: str, result: FusedResult, utterance: str | None, *, example: str = "",
             removed_instructions: str = "", facts: str = "") -> list[str]:
    """Every reason ``text`` must not be shown as the explanation of ``result`` (empty: it passes)."""
    out: list[str] = []
    if not text or not text.strip():
        return ["empty"]
    if not _COMPLETE.search(text):
        out.append("truncated (does not end a sentence)")
    other = asserted_labels(text) - {result.label}
    if other:
        out.append(f"argues for another label ({', '.join(sorted(other))})")
    named = named_labels(without_label_prefix(text, result.label))
    if named and result.label not in named:
        out.append(f"names {', '.join(sorted(named))} but never the label {result.label}")
    repeated = repeated_sentence(text)
    if repeated:
        out.append(f"repeats a sentence ('{repeated[:40]}')")
    said = (utterance or "").lower()
    # words quoted from the utterance ("'yelling'") are the speaker's, not a claim about the voice or face
    claims = _QUOTED.sub(lambda m: " " if (m.group(1) or m.group(2) or "").strip().lower() in said else m.group(0),
                         text)
    if _VOICE.search(claims) and not _has(result, "audio"):
        out.append("mentions the voice, but the turn has no voice evidence")
    if _FACE.search(claims) and not _has(result, "vision"):
        out.append("mentions a face, but the turn has no face evidence")
    label_words = {w for words in LABEL_WORDS.values() for w in words}
    for pair in _QUOTED.findall(text):
        quote = (pair[0] or pair[1]).strip()
        q = quote.lower().strip(".,;:!?")
        if q and q not in said and q not in label_words:
            out.append(f"quotes '{quote}', which the speaker did not say")
    if example:
        specific = content_words(example) - content_words(utterance or "") - content_words(facts)
        copied = sorted(w for w in content_words(text) & specific)
        if copied:
            out.append(f"copies the prompt's example ({', '.join(copied[:3])})")
    if removed_instructions and ngrams(text, 3) & (ngrams(removed_instructions, 3) - ngrams(utterance or "", 3)):
        out.append("repeats instructions from the user's text")
    if facts:  # with the facts at hand (every LLM answer), the prose may only restate them
        if _CONTEXT_CLAIM.search(claims) and not _CONTEXT_CLAIM.search(facts) and not _CONTEXT_CLAIM.search(said):
            out.append("mentions the conversation, but the facts say nothing about it")
        cues = " ".join(str(c) for e in result.evidence for c in e.cues)
        added = unsupported_words(text, f"{facts} {utterance or ''} {cues} {result.label}")
        if len(added) >= 2:
            out.append(f"adds claims that are not in the facts ({', '.join(added[:4])})")
    return out


def named_labels(text: str) -> set[str]:
    """Every label whose word forms occur in ``text`` ("was surprised" names surprise)."""
    low = text.lower()
    return {lab for lab in LABEL_WORDS if mentions_label(low, lab)}


def label_prefix(label: str) -> str:
    """What the explainer puts in front of prose that forgot to name the label ("Fear: ")."""
    return f"{label.capitalize()}: "


def without_label_prefix(text: str, label: str) -> str:
    """``text`` without the :func:`label_prefix` the explainer may have added."""
    prefix = label_prefix(label)
    return text[len(prefix):] if text.startswith(prefix) else text


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after . ! ? followed by a space)."""
    return [x.strip() for x in re.split(r"(?<=[.!?])\s+", text.strip()) if x.strip()]


def repeated_sentence(text: str) -> str:
    """The first sentence that occurs twice in ``text`` (compared without case and spacing), or ''."""
    seen: set[str] = set()
    for sent in sentences(text):
        key = " ".join(sent.lower().split())
        if key in seen and len(key) > 12:
            return sent
        seen.add(key)
    return ""


def last_complete_sentences(text: str) -> str:
    """``text`` cut after its last complete sentence ('' when there is none)."""
    m = list(re.finditer(r"[.!?][\"')\]]?(?=\s|$)", text))
    return text[: m[-1].end()].strip() if m else ""
