"""Whisper with a short input window: CTranslate2 called directly instead of faster-whisper's ``transcribe``.

faster-whisper pads every clip to Whisper's 30 s window, so a 3 s clip pays for 30 s of encoder. CTranslate2's
``Whisper.generate`` accepts fewer mel frames: here the clip is padded to ``max(MIN_WINDOW_S, duration + 1 s)``
(at most 30 s). A short window can make Whisper loop (repeat the sentence) or invent words, so the output is
bounded (``max_length = 8 + 5 x seconds``, ``no_repeat_ngram_size = 3``) and checked by :func:`degenerate`; the
caller falls back to the full window when it looks degenerate.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
HOP = 160
#: Shortest window the clip is padded to (seconds): fewer frames than this made tiny.en loop more often.
MIN_WINDOW_S = 7.5
FULL_WINDOW_S = 30.0
#: A transcript this compressible (zlib ratio) is a repetition loop, as in Whisper's own fallback rule.
MAX_COMPRESSION = 2.4


def max_tokens(duration_s: float) -> int:
    """The token budget for a clip: 8 + 5 per second (a fast speaker says ~4 words/s)."""
    return int(8 + 5 * max(duration_s, 0.5))


def degenerate(text: str, n_tokens: int, budget: int, duration_s: float) -> str | None:
    """Why a short-window decode looks degenerate (None when it looks fine)."""
    stripped = text.strip()
    if n_tokens >= budget:
        return f"it used its whole token budget ({budget}): a repetition loop?"
    if len(stripped) > 20 and len(stripped) / max(1, len(zlib.compress(stripped.encode()))) > MAX_COMPRESSION:
        return "it repeats itself (compression ratio > 2.4)"
    n_words = len(stripped.split())
    if duration_s > 0 and n_words / duration_s > 7.0:
        return f"{n_words} words in {duration_s:.1f} s is faster than anyone speaks"
    return None


def trim_repeat(text: str) -> tuple[str, bool]:
    """Cut a transcript that starts its first sentence again ("Dogs are sitting. Dogs are sitt"): (text, cut?).

    With the window shorter than 30 s, tiny.en often reads the sentence once and then begins it again;
    ``no_repeat_ngram_size`` stops the exact repeat but not "sittin'".
    """
    match = re.search(r"[.!?](\s+)", text)
    if not match:
        return text, False
    first, rest = text[: match.start() + 1], text[match.end():]
    head, again = first.lower().split()[:2], rest.lower().split()[:2]
    if len(head) == 2 and again and again == head[: len(again)]:
        return first, True
    return text, False


def short_window_decode(model: Any, audio: np.ndarray, *, beam_size: int = 1) -> dict[str, Any]:
    """Decode 16 kHz float32 ``audio`` with a faster-whisper ``WhisperModel``'s CT2 model and a short window.

    Returns ``text``, ``avg_logprob``, ``no_speech_prob``, ``n_tokens``, ``budget``, ``window_s`` and
    ``degenerate`` (a reason, or None).
    """
    from emotion_agent.tools.openmp import import_ctranslate2

    ctranslate2 = import_ctranslate2()
    duration = len(audio) / SAMPLE_RATE
    window_s = min(FULL_WINDOW_S, max(MIN_WINDOW_S, duration + 1.0))
    n_frames = int(window_s * SAMPLE_RATE / HOP)
    n_frames -= n_frames % 2
    clip = np.zeros(int(window_s * SAMPLE_RATE), dtype=np.float32)  # zero padding, as Whisper pads to 30 s
    clip[: min(len(audio), len(clip))] = audio[: len(clip)]
    mel = model.feature_extractor(clip, padding=0)[:, :n_frames]
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
    tokenizer = model.hf_tokenizer
    sot = [tokenizer.token_to_id(t) for t in ("<|startoftranscript|>",)]
    if model.model.is_multilingual:
        sot += [tokenizer.token_to_id("<|en|>"), tokenizer.token_to_id("<|transcribe|>")]
    sot.append(tokenizer.token_to_id("<|notimestamps|>"))
    budget = max_tokens(duration)
    result = model.model.generate(features, [sot], beam_size=beam_size, max_length=budget,
                                  no_repeat_ngram_size=3, return_scores=True, return_no_speech_prob=True,
                                  suppress_blank=True)[0]
    ids = [t for t in result.sequences_ids[0] if t < tokenizer.token_to_id("<|endoftext|>")]
    text, looped = trim_repeat(tokenizer.decode(ids).strip())
    n = max(1, len(result.sequences_ids[0]))
    # CT2's score is already divided by the length (length_penalty 1); faster-whisper's mean counts one more token
    avg_logprob = float(result.scores[0]) * n / (n + 1) if result.scores else 0.0
    return {"text": text, "avg_logprob": avg_logprob, "no_speech_prob": float(result.no_speech_prob),
            "n_tokens": len(result.sequences_ids[0]), "budget": budget, "window_s": window_s,
            "trimmed_repeat": looped,
            "degenerate": degenerate(text, 0 if looped else len(result.sequences_ids[0]), budget, duration)}
