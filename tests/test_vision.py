"""Vision experts with the REAL packaged models on small real inputs (MELD frames, FER2013 crops),
plus bad inputs built in tmp_path. The describe_scene path runs a tiny random-weight LLaVA built here."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from emotion_agent.tools.settings import Settings  # noqa: E402
from emotion_agent.tools.base import TurnInput  # noqa: E402
from emotion_agent.tools.evidence import LABELS  # noqa: E402

DATA = Settings.from_env().data_dir
CLIP = DATA / "meld" / "media" / "train_dia1_utt0.mp4"
MOSAIC = DATA / "meld" / "media" / "train_dia1038_utt17_frames.png"
FACES = DATA / "faces"

pytestmark = pytest.mark.skipif(not CLIP.is_file() or not MOSAIC.is_file(), reason="shared MELD media missing")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def analyzer():
    from emotion_agent.tools.face_analyzer import FaceAnalyzer

    return FaceAnalyzer()


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    from emotion_agent.tools.media import decode

    return decode(CLIP, max_frames=8, want_audio=False).frames[3]  # 1280x720, Joey, one face


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    """One 426x240 tile of the mosaic: Joey (left, smiling) and Ross (right)."""
    from PIL import Image

    with Image.open(MOSAIC) as im:
        rgb = np.asarray(im.convert("RGB"))
    return rgb[:240].copy()


def expert(analyzer, **overrides):
    from emotion_agent.tools.face_emotion import FacialEmotionExpert

    return FacialEmotionExpert(Settings.from_env(**overrides), analyzer=analyzer)


def save(rgb: np.ndarray, path: Path, mode: str | None = None, **kw) -> Path:
    from PIL import Image

    img = Image.fromarray(rgb)
    if mode:
        img = img.convert(mode)
    img.save(path, **kw)
    return path


# ----------------------------------------------------------------------------- detector + expression
def test_detector_finds_the_face_in_a_720p_frame(analyzer, frame):
    faces = analyzer.detector.detect(frame)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert 550 < (x0 + x1) / 2 < 750 and 150 < (y0 + y1) / 2 < 330  # Joey's face, centre-right
    assert 120 < x1 - x0 < 260 and faces[0].score > 0.7
    assert faces[0].keypoints.shape == (6, 2)


def test_detector_two_faces_and_no_false_positive(analyzer, tile):
    assert len(analyzer.detector.detect(tile)) == 2
    y, x = np.mgrid[0:240, 0:426]
    gradient = np.stack([x * 255 // 426, y * 255 // 240, np.full_like(x, 128)], -1).astype(np.uint8)
    assert analyzer.detector.detect(gradient) == []


def test_fer_model_reads_fer2013_smiles():
    from emotion_agent.tools.face_model import FerModel

    if not (FACES / "labels.csv").is_file():
        pytest.skip("faces data missing")
    from PIL import Image

    rows = [r for r in csv.DictReader((FACES / "labels.csv").open()) if r["emotion"] == "joy"][:10]
    crops = np.stack([np.asarray(Image.open(FACES / r["path"]).convert("L")) for r in rows])
    probs = FerModel().predict(crops)
    assert probs.shape == (10, 7) and np.allclose(probs.sum(1), 1)
    assert (probs.argmax(1) == LABELS.index("joy")).sum() >= 7


def test_fer_class_order_maps_to_meld():
    from emotion_agent.tools.face_model import FER_CLASSES, FER_INDEX

    mapped = [FER_CLASSES[i] for i in FER_INDEX]
    assert mapped == ["neutral", "happy", "surprise", "angry", "sad", "disgust", "fear"]


# ----------------------------------------------------------------------------- image expert
def test_image_evidence_structure(analyzer, frame, tmp_path):
    ev = expert(analyzer).analyze(TurnInput(image_path=save(frame, tmp_path / "f.jpg", quality=90)))
    assert ev.expert == "facial_emotion" and ev.modality == "vision"
    assert set(ev.distribution) == set(LABELS) and abs(sum(ev.distribution.values()) - 1) < 1e-6
    assert 0 < ev.confidence <= 1 and not ev.warnings
    assert ev.extra["n_faces"] == 1 and len(ev.extra["faces"]) == 1
    face = ev.extra["faces"][0]
    assert {"box", "score", "distribution", "label"} <= set(face)
    assert any("primary face" in c.name for c in ev.cues)
    assert ev.latency_ms > 0


@pytest.mark.parametrize("rule", ["largest", "central"])
def test_many_faces_primary_rule(analyzer, tile, tmp_path, rule):
    # Pad the tile on the right so that the right-hand face (Ross) becomes the most central one.
    padded = np.concatenate([tile, np.zeros((240, 300, 3), np.uint8)], axis=1)
    ev = expert(analyzer, face_select=rule).analyze(TurnInput(image_path=save(padded, tmp_path / "two.png")))
    assert ev.extra["n_faces"] == 2 and ev.extra["face_select"] == rule
    faces = ev.extra["faces"]
    primary = faces[ev.extra["primary"]]
    sizes = [f["box"][2] - f["box"][0] for f in faces]
    centers = [abs((f["box"][0] + f["box"][2]) / 2 - padded.shape[1] / 2) for f in faces]
    if rule == "largest":
        assert sizes[ev.extra["primary"]] == max(sizes)
    else:
        assert centers[ev.extra["primary"]] == min(centers)
    assert primary["distribution"] == pytest.approx(ev.distribution, abs=1e-3)
    assert any(c.name == "faces" and c.value == 2 and rule in (c.detail or "") for c in ev.cues)


@pytest.mark.parametrize("fmt", ["jpg", "png_rgba", "webp", "gray", "cmyk", "bmp", "png16"])
def test_image_formats(analyzer, frame, tmp_path, fmt):
    from PIL import Image

    small = frame[::2, ::2].copy()  # 640x360 keeps the test fast
    if fmt == "jpg":
        p = save(small, tmp_path / "a.jpg")
    elif fmt == "png_rgba":
        rgba = np.dstack([small, np.full(small.shape[:2], 255, np.uint8)])
        rgba[:40, :40, 3] = 0  # some transparency
        p = tmp_path / "a.png"
        Image.fromarray(rgba, "RGBA").save(p)
    elif fmt == "webp":
        p = save(small, tmp_path / "a.webp")
    elif fmt == "gray":
        p = save(small, tmp_path / "g.png", mode="L")
    elif fmt == "cmyk":
        p = save(small, tmp_path / "c.jpg", mode="CMYK")
    elif fmt == "bmp":
        p = save(small, tmp_path / "a.bmp")
    else:
        gray16 = (np.asarray(Image.fromarray(small).convert("L"), np.uint16) * 257)
        p = tmp_path / "g16.png"
        Image.fromarray(gray16).save(p)
    ev = expert(analyzer).analyze(TurnInput(image_path=p))
    assert ev.extra["n_faces"] == 1, (fmt, ev.warnings)
    assert ev.confidence > 0


def test_exif_rotation_is_applied(analyzer, frame, tmp_path):
    from PIL import Image

    small = frame[::2, ::2].copy()
    # Store the pixels rotated by 90° with orientation tag 6 (viewer must rotate 90° clockwise back).
    stored = Image.fromarray(small).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    stored.save(p, exif=exif)
    from emotion_agent.tools.images import load_image

    img = load_image(p)
    assert img.rgb.shape[:2] == small.shape[:2] and "EXIF rotation applied" in img.notes
    ev = expert(analyzer).analyze(TurnInput(image_path=p))
    assert ev.extra["n_faces"] == 1
    x0, y0, x1, y1 = ev.extra["faces"][0]["box"]
    assert 275 < (x0 + x1) / 2 < 375  # same place as in the upright frame (640 px wide)


def test_huge_image_is_downscaled(analyzer, frame, tmp_path):
    import cv2

    huge = cv2.resize(frame, (5120, 2880), interpolation=cv2.INTER_LINEAR)
    p = save(huge, tmp_path / "huge.jpg", quality=80)
    from emotion_agent.tools.images import load_image

    img = load_image(p)
    assert max(img.rgb.shape) <= 1920 and any("downscaled" in n for n in img.notes)
    ev = expert(analyzer).analyze(TurnInput(image_path=p))
    assert ev.extra["n_faces"] == 1
    x0, _, x1, _ = ev.extra["faces"][0]["box"]
    assert 2200 < (x0 + x1) / 2 < 3000  # boxes reported in original pixels


@pytest.mark.parametrize("kind", ["corrupt", "text", "truncated", "empty", "missing"])
def test_bad_files_give_clear_zero_confidence_evidence(analyzer, frame, tmp_path, kind):
    p = tmp_path / "bad.jpg"
    if kind == "corrupt":
        p.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    elif kind == "text":
        p.write_text("this is not an image\n" * 20)
    elif kind == "truncated":
        save(frame, tmp_path / "full.jpg")
        p.write_bytes((tmp_path / "full.jpg").read_bytes()[:3000])
    elif kind == "empty":
        p.write_bytes(b"")
    ev = expert(analyzer).analyze(TurnInput(image_path=p))
    assert ev.confidence == 0.0 and ev.distribution == pytest.approx({k: 1 / 7 for k in LABELS})
    assert len(ev.warnings) == 1
    msg = ev.warnings[0]
    assert "bad.jpg" in msg
    assert any(w in msg for w in ("not a readable image", "corrupt", "truncated", "empty", "not found")), msg


def test_no_face_is_zero_confidence_not_a_guess(analyzer, tmp_path):
    y, x = np.mgrid[0:300, 0:400]
    gradient = np.stack([x * 255 // 400, y * 255 // 300, np.full_like(x, 90)], -1).astype(np.uint8)
    ev = expert(analyzer).analyze(TurnInput(image_path=save(gradient, tmp_path / "grad.png")))
    assert ev.confidence == 0.0 and ev.warnings and "no face found" in ev.warnings[0]
    assert ev.extra["n_faces"] == 0


# ----------------------------------------------------------------------------- video
@pytest.mark.parametrize("strategy", ["uniform", "middle", "expressive"])
def test_video_aggregates_into_one_evidence(analyzer, strategy):
    ev = expert(analyzer, video_frames=6, frame_strategy=strategy).analyze(TurnInput(video_path=CLIP))
    assert ev.expert == "facial_emotion" and 0 < ev.confidence <= 1, ev.warnings
    assert ev.extra["source"] == "video" and ev.extra["strategy"] == strategy
    assert ev.extra["frames_sampled"] == 6 and len(ev.extra["frames"]) == 6
    times = [f["time_s"] for f in ev.extra["frames"]]
    assert times == sorted(times) and all(0 <= t <= ev.extra["duration_s"] for t in times)
    if strategy == "middle":
        assert times[0] > 0.15 * ev.extra["duration_s"] and times[-1] < 0.85 * ev.extra["duration_s"]
    if strategy == "expressive":
        assert ev.extra["frames_decoded"] > 6
    names = [c.name for c in ev.cues]
    assert any(n.endswith("/6 frames") for n in names)
    assert any(n.startswith("most expressive frame at") for n in names)


def test_video_decode_is_shared_with_audio_experts(analyzer):
    import emotion_agent.tools.media as media

    media._CACHE.clear()
    expert(analyzer, video_frames=8).analyze(TurnInput(video_path=CLIP))
    n = len(media._CACHE)
    m = media.decode(CLIP, want_frames=False, max_seconds=60)  # what an audio expert asks for
    assert len(media._CACHE) == n and m.has_audio and m.frames
    same = media.decode(CLIP, max_frames=8, want_audio=False, fast_frames=True)  # frames-only, same sampling
    assert same is m and len(media._CACHE) == n
    with pytest.raises(Exception, match="limit"):
        media.decode(CLIP, want_frames=False, max_seconds=1)  # a cached decode still honours max_seconds


def _write_mp4(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def test_video_without_faces(analyzer, tmp_path):
    y, x = np.mgrid[0:96, 0:128]
    frames = [np.stack([(x + 8 * i) % 256, y * 2, np.full_like(x, 60)], -1).astype(np.uint8) for i in range(12)]
    p = _write_mp4(tmp_path / "noface.mp4", frames)
    ev = expert(analyzer, video_frames=4).analyze(TurnInput(video_path=p))
    assert ev.confidence == 0.0 and "no face found" in ev.warnings[0]


def test_video_not_a_video(analyzer, tmp_path):
    p = tmp_path / "clip.mp4"
    p.write_text("not a video")
    ev = expert(analyzer).analyze(TurnInput(video_path=p))
    assert ev.confidence == 0.0 and "clip.mp4" in ev.warnings[0]


# ----------------------------------------------------------------------------- describe_scene
def test_scene_off_by_default(tmp_path):
    from emotion_agent.tools.scene import SceneExpert

    ex = SceneExpert(Settings(vlm_model=None))
    assert ex.accepts(TurnInput(image_path=tmp_path / "x.jpg")) is False
    ev = ex.analyze(TurnInput(image_path=tmp_path / "x.jpg"))
    assert ev.confidence == 0.0 and ev.warnings


def test_parse_answer_lenient():
    from emotion_agent.tools.scene import parse_answer

    good = parse_answer('Sure! {"expression": "broad smile", "gaze": "at camera", "label": "Happy", '
                        '"probabilities": {"joy": 0.8, "neutral": 0.2}} done')
    assert good["label"] == "joy" and good["distribution"]["joy"] == pytest.approx(0.8)
    assert good["fields"]["expression"] == "broad smile"
    sloppy = parse_answer("{'label': 'sad', 'scene': 'kitchen',}")
    assert sloppy["label"] == "sadness" and sloppy["fields"]["scene"] == "kitchen"
    truncated = parse_answer('{"expression": "frown", "label": "angry", "probabilities": {"anger": 0.6')
    assert truncated["label"] == "anger"
    assert parse_answer("the person looks like a person")["label"] is None
    assert parse_answer('{"label": "happy or sad"}')["label"] is None  # ambiguous: no guess


class _StubVLM:
    def __init__(self, answer: str):
        self.answer = answer

    def generate(self, image, instruction: str, max_new_tokens: int = 10) -> str:
        assert "JSON" in instruction and "neutral" in instruction  # the prompt file, filled
        return self.answer


def test_scene_expert_parsing_paths(frame, tmp_path):
    from emotion_agent.tools.scene import SceneExpert

    img = save(frame[::4, ::4].copy(), tmp_path / "f.png")
    s = Settings.from_env(vlm_model="stub")
    ok = SceneExpert(s, vlm=_StubVLM('{"expression": "smile", "label": "joy"}')).analyze(TurnInput(image_path=img))
    assert ok.label == "joy" and 0 < ok.confidence <= 0.6 and not ok.warnings
    assert any(c.name == "expression" for c in ok.cues)
    bad = SceneExpert(s, vlm=_StubVLM("blah blah")).analyze(TurnInput(image_path=img))
    assert bad.confidence == 0.0 and bad.warnings and bad.distribution == pytest.approx({k: 1 / 7 for k in LABELS})


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> Path:
    """A tiny random-weight LLaVA (CLIP vision tower + Llama text model) with a locally built processor."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    words = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "{", "}", '"', ":", ",", "."] + list(LABELS) + \
        "label expression gaze posture scene the a face person smiling looking USER ASSISTANT".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                                  eos_token="</s>", pad_token="<pad>")
    hf_tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_proc = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    chat = ("{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    proc = transformers.LlavaProcessor(image_processor=image_proc, tokenizer=hf_tok, patch_size=16,
                                       vision_feature_select_strategy="default", chat_template=chat,
                                       num_additional_image_tokens=1)
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=32, patch_size=16, projection_dim=32)
    text = transformers.LlamaConfig(vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64,
                                    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                    max_position_embeddings=512)
    cfg = transformers.LlavaConfig(vision_config=vision, text_config=text,
                                   image_token_index=hf_tok.convert_tokens_to_ids("<image>"),
                                   vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(cfg).eval()
    out = tmp_path_factory.mktemp("tiny-llava")
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


@pytest.mark.slow
def test_scene_expert_real_transformers_path(tiny_llava, frame, tmp_path):
    import emotion_agent.tools.media as media
    from emotion_agent.tools.scene import SceneExpert

    s = Settings.from_env(vlm_model=str(tiny_llava), video_frames=4)
    ex = SceneExpert(s)
    img = save(frame[::4, ::4].copy(), tmp_path / "f.jpg")
    assert ex.accepts(TurnInput(image_path=img))
    ev = ex.analyze(TurnInput(image_path=img))
    assert ev.expert == "describe_scene" and ev.modality == "vision" and ev.model_id == str(tiny_llava)
    assert set(ev.distribution) == set(LABELS) and 0.0 <= ev.confidence <= 0.6
    assert isinstance(ev.extra["answer"], str) and ev.extra["prompt"] == "prompts/describe_scene.md"
    if ev.confidence == 0.0:  # random weights: usually nothing parseable → uniform + warning
        assert ev.warnings and "parsed" in ev.warnings[0]
    media._CACHE.clear()
    ev_v = ex.analyze(TurnInput(video_path=CLIP))
    assert ev_v.extra["source"].startswith("video frame at") and set(ev_v.distribution) == set(LABELS)


def test_scene_expert_bad_model_path(tmp_path):
    from emotion_agent.tools.scene import SceneExpert

    img = tmp_path / "g.png"
    save(np.full((32, 32, 3), 128, np.uint8), img)
    ev = SceneExpert(Settings.from_env(vlm_model=str(tmp_path / "nope"))).analyze(TurnInput(image_path=img))
    assert ev.confidence == 0.0 and "could not load the vision-language model" in ev.warnings[0]


def test_prior_correction_is_opt_in(tmp_path, monkeypatch):
    from emotion_agent.tools.base import ExpertError
    from emotion_agent.tools.face_model import CALIBRATION_FILE, FerModel, calibration_from_env

    monkeypatch.delenv("EMOTION_AGENT_FACE_CALIBRATION", raising=False)
    assert calibration_from_env() is None
    monkeypatch.setenv("EMOTION_AGENT_FACE_CALIBRATION", "1")
    assert calibration_from_env() == CALIBRATION_FILE
    crop = np.tile(np.linspace(40, 200, 48, dtype=np.uint8), (48, 1))[None]
    plain, calibrated = FerModel().predict(crop), FerModel(calibration=CALIBRATION_FILE).predict(crop)
    assert not np.allclose(plain, calibrated) and np.isclose(calibrated.sum(), 1)
    with pytest.raises(ExpertError):
        FerModel(calibration=tmp_path / "missing.npz")


def test_registry_builds_the_vision_experts():
    from emotion_agent.tools.registry import build_experts

    experts = build_experts(Settings(vlm_model=None), only=["facial_emotion", "describe_scene"])
    assert set(experts) == {"facial_emotion", "describe_scene"}
    assert experts["facial_emotion"].accepts(TurnInput(video_path=CLIP))
    assert not experts["describe_scene"].accepts(TurnInput(video_path=CLIP))


def test_plain_image_has_no_spurious_notes(tmp_path):
    from emotion_agent.tools.images import load_image

    p = save(np.full((40, 60, 3), 100, np.uint8), tmp_path / "plain.jpg")
    img = load_image(p)
    assert img.notes == [] and img.rgb.shape == (40, 60, 3) and img.scale == 1.0


def test_audio_first_then_frames_decodes_each_stream_once(monkeypatch):
    import emotion_agent.tools.media as media

    calls = []
    real = media._decode

    def spy(p, **kw):
        calls.append((kw["want_audio"], kw["want_frames"]))
        return real(p, **kw)

    monkeypatch.setattr(media, "_decode", spy)
    media._CACHE.clear()
    audio = media.decode(CLIP, want_frames=False)  # an audio expert came first
    both = media.decode(CLIP, max_frames=8, want_audio=True, fast_frames=True)  # then facial_emotion
    assert calls == [(True, False), (False, True)]
    assert both.audio is audio.audio and len(both.frames) > 0


def test_parallel_decodes_of_one_clip_share_one_decode(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import emotion_agent.tools.media as media

    calls = []
    real = media._decode
    monkeypatch.setattr(media, "_decode", lambda p, **kw: calls.append(kw) or real(p, **kw))
    media._CACHE.clear()
    with ThreadPoolExecutor(3) as ex:  # facial_emotion, transcribe, speech_emotion in one ToolNode round
        futures = [ex.submit(media.decode, CLIP, max_frames=8, want_audio=True, fast_frames=True)] + [
            ex.submit(media.decode, CLIP, want_frames=False, max_seconds=60) for _ in range(2)]
        results = [f.result() for f in futures]
    assert sum(kw["want_audio"] for kw in calls) == 1  # the audio track is decoded once
    assert sum(kw["want_frames"] for kw in calls) == 1  # and the video track once
    assert results[1] is results[2] and results[0].frames and results[0].has_audio


def test_decompression_bomb_is_refused(tmp_path):
    import struct
    import zlib

    from emotion_agent.tools.base import ExpertError
    from emotion_agent.tools.images import load_image

    p = save(np.zeros((1, 1, 3), np.uint8), tmp_path / "bomb.png")
    data = bytearray(p.read_bytes())
    ihdr = bytes(data[12:16]) + struct.pack(">II", 30000, 30000) + bytes(data[24:29])  # claims 900 MP
    data[16:24] = struct.pack(">II", 30000, 30000)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    p.write_bytes(bytes(data))
    with pytest.raises(ExpertError, match="too large|megapixels"):
        load_image(p)


def test_face_crops_are_read_through_the_image_path(analyzer, data_dir):
    """FER2013-style 48x48 crops: found after padding or read as a crop, never thrown away."""
    import csv

    rows = list(csv.DictReader((data_dir / "faces" / "labels.csv").open()))[:12]
    kinds = []
    for r in rows:
        ev = expert(analyzer).analyze(TurnInput(image_path=data_dir / "faces" / r["path"]))
        assert ev.confidence > 0 and ev.extra["n_faces"] >= 1, ev.warnings
        kinds.append(ev.detection or "detector")
        assert any(c.name == "face crop" for c in ev.cues) or kinds[-1] == "detector"
    assert len(kinds) == 12


def test_small_square_non_face_is_marked_low_confidence(analyzer, tmp_path):
    y, x = np.mgrid[0:96, 0:96]
    img = np.stack([x * 2, y * 2, np.full_like(x, 90)], -1).astype(np.uint8)
    ev = expert(analyzer).analyze(TurnInput(image_path=save(img, tmp_path / "icon.png")))
    assert ev.confidence < 0.3 and any("low confidence" in w for w in ev.warnings)
