"""Robust still-image loading for the vision experts: any common format → RGB uint8 array.

Handles jpg / png (alpha composited on mid-grey) / webp / gif (first frame) / bmp / tiff,
grayscale and 16-bit images, palette images, CMYK jpgs, EXIF orientation, and huge images
(JPEG draft decoding + downscale so the longest side is at most ``max_side``). Missing, empty,
truncated, corrupt or non-image files raise :class:`ExpertError` with a user-facing message.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion_agent.tools.base import ExpertError

MAX_FILE_BYTES = 64 * 1024 * 1024
#: Refuse decompression bombs above this many pixels (PIL's own guard is ~179 MP).
MAX_PIXELS = 200_000_000
DEFAULT_MAX_SIDE = 1920
_ALPHA_BACKGROUND = (128, 128, 128)


@dataclass
class LoadedImage:
    """A decoded image (RGB, possibly downscaled), its original size, scale and notes."""
    rgb: np.ndarray  # (H, W, 3) uint8, after EXIF rotation and downscale
    original_size: tuple[int, int]  # (width, height) as stored in the file
    format: str | None
    mode: str
    scale: float = 1.0  # rgb size / original (after rotation)
    notes: list[str] = field(default_factory=list)  # e.g. "EXIF rotation applied", "downscaled 4000→1920"


def load_image(path: Path | str, *, max_side: int = DEFAULT_MAX_SIDE) -> LoadedImage:
    """Read ``path`` as an RGB uint8 array (longest side ≤ ``max_side``)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ExpertError(f"image not found: {p.name}")
    size = p.stat().st_size
    if size == 0:
        raise ExpertError(f"{p.name} is empty")
    if size > MAX_FILE_BYTES:
        raise ExpertError(f"{p.name} is {size >> 20} MB; the image limit is {MAX_FILE_BYTES >> 20} MB")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            try:
                img = Image.open(p)
            finally:
                Image.MAX_IMAGE_PIXELS = old_limit
        with img:
            fmt = img.format
            mode = img.mode
            original = img.size
            if original[0] * original[1] > MAX_PIXELS:
                raise ExpertError(f"{p.name} is {original[0]}x{original[1]} pixels; the limit is "
                                  f"{MAX_PIXELS // 1_000_000} megapixels")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
                notes.append("animated image: first frame used")
            # JPEG: let libjpeg decode at 1/2, 1/4, 1/8 scale when the image is much bigger than needed.
            if fmt == "JPEG" and max(original) > 2 * max_side:
                img.draft(img.mode, (max_side, max_side))
            img.load()
            loaded = img.size
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            out = ImageOps.exif_transpose(img) if orientation not in (None, 1) else img
            if orientation not in (None, 1):
                notes.append("EXIF rotation applied")
            swapped = out.size != loaded
            rgb_img = _to_rgb(out)
    except ExpertError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise ExpertError(f"{p.name} is not a readable image (unknown or corrupt format)") from None
        raise ExpertError(f"{p.name} is too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ExpertError(f"{p.name} is a corrupt or truncated image ({type(exc).__name__}: {exc})") from None
    w, h = rgb_img.size
    if w < 1 or h < 1:
        raise ExpertError(f"{p.name} has no pixels")
    longest = max(w, h)
    if longest > max_side:
        scale = max_side / longest
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        notes.append(f"downscaled {w}x{h} → {nw}x{nh}")
        rgb_img = rgb_img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(rgb_img, dtype=np.uint8)
    scale = arr.shape[1] / (original[1] if swapped else original[0])
    return LoadedImage(rgb=np.ascontiguousarray(arr), original_size=original, format=fmt, mode=mode,
                       scale=scale, notes=notes)


def _to_rgb(img):  # PIL.Image -> PIL.Image in RGB
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, _ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV: PIL converts these directly.
    return img.convert("RGB")


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 → luminance uint8 (BT.601, as OpenCV and FER2013 use)."""
    import cv2

    if rgb.ndim == 2:
        return rgb
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
