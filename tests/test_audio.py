"""Audio experts: transcription (faster-whisper + converted openai-whisper), speech emotion, bad input.

Real models on small real inputs (RAVDESS clips from ../shared/data/speech). Model-loading tests are
``@pytest.mark.slow``; the rest run in well under a second.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

from emotion_agent.tools.settings import Settings  # noqa: E402
from emotion_agent.tools.base import TurnInput  # noqa: E402
from emotion_agent.tools.evidence import LABELS  # noqa: E402

RAVDESS_KIDS = "ravdess/03-01-05-02-01-01-17.flac"  # angry, strong, "Kids are talking by the door"
# clearly acted clips (strong intensity): (path, expected label)
ACTED = [
    ("ravdess/03-01-05-02-02-02-03.flac", "anger"),
    ("ravdess/03-01-04-02-01-02-12.flac", "sadness"),
    ("ravdess/03-01-03-02-02-01-08.flac", "joy"),
    ("ravdess/03-01-06-02-01-01-14.flac", "fear"),
]


@pytest.fixture(scope="module")
def speech_dir() -> Path:
    d = Settings.from_env().data_dir / "speech"
    if not (d / "labels.csv").is_file():
        pytest.skip(f"speech data not found at {d}")
    return d


@pytest.fixture(scope="module")
def audio_settings() -> Settings:
    return Settings.from_env(asr_backend="faster-whisper", asr_model="whisper-tiny.en", speech_model="whisper-head",
                             max_audio_s=60.0)


@pytest.fixture
def silence_wav(tmp_path: Path) -> Path:
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(2 * 16_000, dtype=np.float32), 16_000)
    return p


@pytest.fixture
def bad_files(tmp_path: Path) -> list[Path]:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is a text file renamed to .wav\n" * 50)
    return [empty, text]


def _valid_distribution(ev) -> None:
    assert set(ev.distribution) == set(LABELS)
    assert abs(sum(ev.distribution.values()) - 1.0) < 1e-6
    assert all(v >= 0 for v in ev.distribution.values())
    assert 0.0 <= ev.confidence <= 1.0


# -- fast tests -------------------------------------------------------------------------------------------

def test_prosody_pitch_of_a_tone_and_silence():
    from emotion_agent.tools.prosody import prosody, readable_cues

    t = np.arange(32_000) / 16_000
    tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    p = prosody(tone)
    assert not p.silent and abs(p.f0_median_hz - 220) < 5
    assert any(name == "pitch median" for name, _, _ in readable_cues(p))
    assert prosody(np.zeros(16_000, dtype=np.float32)).silent


def test_wer():
    from emotion_agent.tools.transcribe import wer

    assert wer("Kids are talking by the door", "kids are talking by the door.") == 0.0
    assert wer("I’m sorry", "I'm sorry") == 0.0
    assert abs(wer("a b c d", "a x c") - 0.5) < 1e-9


def test_whisper_assets_registered():
    from emotion_agent.tools.assets import REGISTRY
    from emotion_agent.tools import audio_assets  # noqa: F401

    base = REGISTRY["whisper-base"]
    model_bin = next(f for f in base.files if f.target == "model.bin")
    assert len(model_bin.parts) == 2 and model_bin.sha256 and len(model_bin.sha256) == 64
    assert "whisper-tiny.en" in REGISTRY


def test_bad_files_give_clear_warnings(bad_files, audio_settings):
    from emotion_agent.tools.speech_emotion import SpeechEmotionExpert
    from emotion_agent.tools.transcribe import TranscribeExpert

    for expert in (TranscribeExpert(audio_settings), SpeechEmotionExpert(audio_settings)):
        empty, text = (expert.analyze(TurnInput(audio_path=p)) for p in bad_files)
        assert empty.confidence == 0.0 and "empty" in empty.warnings[0]
        assert text.confidence == 0.0 and "not a readable audio" in text.warnings[0]


def test_too_long_is_refused(tmp_path, audio_settings):
    from emotion_agent.tools.speech_emotion import SpeechEmotionExpert
    from emotion_agent.tools.transcribe import TranscribeExpert

    p = tmp_path / "long.wav"
    t = np.arange(3 * 16_000) / 16_000
    sf.write(p, (0.1 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16_000)
    short = Settings.from_env(max_audio_s=1.0)
    for expert in (TranscribeExpert(short), SpeechEmotionExpert(short)):
        ev = expert.analyze(TurnInput(audio_path=p))
        assert ev.confidence == 0.0 and "limit" in ev.warnings[0]


def test_silence_is_low_confidence_with_warning(silence_wav, audio_settings):
    """Silence is detected before any model runs: no guess, a warning."""
    from emotion_agent.tools.speech_emotion import SpeechEmotionExpert
    from emotion_agent.tools.transcribe import TranscribeExpert

    ser = SpeechEmotionExpert(audio_settings).analyze(TurnInput(audio_path=silence_wav))
    assert ser.confidence <= 0.2 and ser.warnings and "silent" in ser.warnings[0]
    _valid_distribution(ser)
    asr = TranscribeExpert(audio_settings).analyze(TurnInput(audio_path=silence_wav))
    assert asr.transcript is not None and asr.transcript.text == "" and asr.warnings and "silent" in asr.warnings[0]


# -- real models ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_transcribe_ravdess_clip(speech_dir, audio_settings):
    from emotion_agent.tools.transcribe import TranscribeExpert, words

    ev = TranscribeExpert(audio_settings).analyze(TurnInput(audio_path=speech_dir / RAVDESS_KIDS))
    assert ev.modality == "transcript" and ev.confidence == 0.0 and not ev.warnings
    assert {"kids", "talking", "door"} <= set(words(ev.transcript.text))
    for key in ("language", "language_probability", "segments", "speaking_rate_wps", "pauses"):
        assert key in ev.extra
    assert ev.extra["language"] == "en" and ev.extra["segments"][0]["end"] > 0
    assert any(c.name == "speaking rate" and "words/s" in str(c.value) for c in ev.cues)
    json.loads(ev.model_dump_json())  # evidence (with numpy-derived numbers) serialises


@pytest.mark.slow
def test_non_english_speech_gives_a_transcript_marked_unreliable(speech_dir, audio_settings):
    """German (EmoDB) through English-only Whisper: the gibberish transcript is flagged, English is not."""
    from emotion_agent.tools.transcribe import TranscribeExpert

    expert = TranscribeExpert(audio_settings)
    german = sorted((speech_dir / "emodb").glob("*.flac"))[::13][:8]
    if not german:
        pytest.skip("EmoDB not in the data folder")
    flags = [expert.analyze(TurnInput(audio_path=p)).transcript.reliable for p in german]
    assert flags.count(False) >= 2, flags
    english = expert.analyze(TurnInput(audio_path=speech_dir / RAVDESS_KIDS))
    assert english.transcript.reliable is True and english.transcript.mean_logprob > -1.0
    flagged = next(expert.analyze(TurnInput(audio_path=p)) for p, f in zip(german, flags) if f is False)
    assert any("transcript is unreliable" in w for w in flagged.warnings)


@pytest.mark.slow
def test_openai_whisper_conversion_gives_same_words(speech_dir, audio_settings):
    from emotion_agent.tools.transcribe import TranscribeExpert, words

    turn = TurnInput(audio_path=speech_dir / "ravdess/03-01-03-02-02-01-08.flac")
    fw = TranscribeExpert(audio_settings, backend="faster-whisper").analyze(turn)
    ow = TranscribeExpert(audio_settings, backend="whisper").analyze(turn)
    assert not ow.warnings, ow.warnings
    assert words(fw.transcript.text) == words(ow.transcript.text)
    assert "door" in words(ow.transcript.text)


@pytest.mark.slow
def test_speech_emotion_head_on_acted_clips(speech_dir, audio_settings):
    from emotion_agent.tools.speech_emotion import SpeechEmotionExpert

    expert = SpeechEmotionExpert(audio_settings)
    right = 0
    for rel, label in ACTED:
        ev = expert.analyze(TurnInput(audio_path=speech_dir / rel))
        _valid_distribution(ev)
        assert ev.modality == "audio" and not ev.warnings, ev.warnings
        assert any(c.name == "pitch peaks" and "median" in str(c.value) for c in ev.cues)
        assert any(c.name == "loudness" for c in ev.cues)
        right += ev.label == label
        json.loads(ev.model_dump_json())
    assert right >= 3, f"{right}/{len(ACTED)} acted clips right"


@pytest.mark.slow
def test_tiny_wav2vec2_checkpoint_backend(tmp_path, speech_dir):
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    from emotion_agent.tools.speech_emotion import SpeechEmotionExpert

    torch.manual_seed(0)
    labels = ["neu", "hap", "ang", "sad", "bored", "interest"]
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8, 8, 8, 8, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
        classifier_proj_size=8,
    )
    ckpt = tmp_path / "tiny-w2v2-ser"
    Wav2Vec2ForSequenceClassification(config).save_pretrained(ckpt)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(ckpt)
    settings = Settings.from_env(speech_model=str(ckpt))
    expert = SpeechEmotionExpert(settings, label_map={"interest": None})
    ev = expert.analyze(TurnInput(audio_path=speech_dir / RAVDESS_KIDS))
    _valid_distribution(ev)
    assert ev.model_id.startswith("hf-audio-classification:")
    assert ev.distribution["fear"] == 0.0 and ev.distribution["disgust"] == 0.0
    assert any("no class for" in w and "fear" in w for w in ev.warnings)
    assert ev.confidence > 0.0
    # an unmapped label is reported, not silently dropped
    settings_json = json.dumps({"hap": "joy"})
    os.environ["EMOTION_AGENT_SPEECH_LABEL_MAP"] = settings_json
    try:
        ev2 = SpeechEmotionExpert(settings).analyze(TurnInput(audio_path=speech_dir / RAVDESS_KIDS))
    finally:
        del os.environ["EMOTION_AGENT_SPEECH_LABEL_MAP"]
    assert any("interest" in w and "not mapped" in w for w in ev2.warnings)
    assert any("bored" in w and "no MELD counterpart" in w for w in ev2.warnings)


def test_a_segment_counts_as_speech_unless_whisper_calls_it_silence_and_is_unsure():
    from emotion_agent.tools.transcribe import heard

    assert heard({"no_speech_prob": 0.9, "avg_logprob": -0.3})      # sure of the words: kept
    assert heard({"no_speech_prob": 0.2, "avg_logprob": -1.8})      # unsure words, but speech: kept (flagged later)
    assert not heard({"no_speech_prob": 0.9, "avg_logprob": -1.5})  # Whisper's own non-speech rule
