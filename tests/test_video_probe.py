"""The video media check demuxes the whole file but decodes only each stream's first frame (the experts decode
it again): a good MELD video passes, a truncated or corrupt copy is still refused with a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emotion_agent.tools.media_checks import MediaCheckError, check_file

VIDEO = Path(os.environ.get("EMOTION_AGENT_DATA_DIR", "/work/shared/data")) / "meld/media/train_dia1_utt0.mp4"

pytestmark = pytest.mark.skipif(not VIDEO.is_file(), reason="MELD media clip not available")


def test_good_video_passes():
    assert check_file(VIDEO, "video") == "mp4"


@pytest.mark.parametrize("keep", [0.3, 0.6])
def test_truncated_video_is_refused(tmp_path, keep):
    data = VIDEO.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MediaCheckError) as exc:
        check_file(cut, "video")
    assert exc.value.status == 422


def test_corrupt_video_payload_is_refused(tmp_path):
    data = bytearray(VIDEO.read_bytes())
    bad = tmp_path / "bad.mp4"
    data[64:] = bytes(len(data) - 64)          # keep the signature, zero everything after it
    bad.write_bytes(bytes(data))
    with pytest.raises(MediaCheckError):
        check_file(bad, "video")
