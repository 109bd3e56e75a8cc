"""Preprocessing of an uploaded picture into a model's image input, as its manifest
declares (``ImagePreprocessing``).

``ink`` mode is MNIST's recipe, generalised: the ink is found whatever the polarity,
colour and background, cropped, scaled so its longer side fits the declared box
(MNIST: 20 of 28) keeping the aspect ratio, and centred by its centre of mass (or its
bounding box) in the frame. ``resize`` mode resizes the whole picture to the frame.
Either way the values are mapped to the input's range, so the model sees what it was
trained on.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.manifest import InputSpec

FORMATS = {"PNG", "JPEG"}
MAX_ASPECT = 50  # a 20000x1 strip holds no digit
_INK_THRESHOLD = 0.2  # fraction of full ink that counts as part of the digit


def decode(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open and fully decode a PNG or JPEG, refusing anything else before decoding."""
    if not data:
        raise InvalidInput("The image is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in FORMATS:
                raise UnsupportedMediaType(
                    f"Images must be PNG or JPEG, got {img.format or 'an unknown format'}.")
            w, h = img.size
            # Checked from the header, before any pixel is decoded (decompression bombs).
            if w * h > max_pixels:
                raise PayloadTooLarge(f"The image is {w}x{h} = {w * h} pixels; the limit is "
                                      f"{max_pixels} pixels.")
            if max(w, h) > MAX_ASPECT * min(w, h):
                raise InvalidInput(f"The image is {w}x{h} pixels: too narrow to hold a digit "
                                   f"(the longer side may be at most {MAX_ASPECT} times the "
                                   "shorter).")
            if getattr(img, "n_frames", 1) > 1:
                raise InvalidInput("Animated images are not accepted; send a single frame.")
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard, for headers far past any sane size: name the size, not the
        # format (it is a PNG or a JPEG; just an absurdly large one).
        raise PayloadTooLarge(f"The image is too large: {str(exc).split(',')[0]}; the limit "
                              f"is {max_pixels} pixels.") from None
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(f"The upload is not a readable PNG or JPEG image "
                                   f"({type(exc).__name__}).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"The image could not be decoded (truncated or corrupt): "
                           f"{str(exc)[:100]}.") from None
    return img


def ink(img: Image.Image) -> np.ndarray:
    """Ink intensity in [0, 1] (1 = full ink), whatever the colour mode and polarity."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3]
        if alpha.min() < 0.5 < alpha.max():
            # Strokes drawn on a transparent canvas: opacity is the ink.
            return alpha
    gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 0.5:
        gray = 1.0 - gray  # dark ink on a light background
        background = 1.0 - background
    # Remove the background level (paper grey, JPEG noise) and stretch the ink to 1.
    gray = np.clip(gray - background, 0.0, None)
    peak = float(gray.max())
    return gray / peak if peak > 0 else gray


def to_input(img: Image.Image, spec: InputSpec) -> np.ndarray:
    """One sample of ``spec`` (an image input), shaped ``spec.shape[1:]``, in its dtype."""
    image = spec.image
    assert image is not None
    h, w, c = image.height, image.width, image.channels
    pre = image.preprocessing
    if pre.mode == "ink":
        box = pre.box or max(1, round(min(h, w) * 20 / 28))
        level = frame_ink(ink(img), h, w, box, pre.centre)[..., None].repeat(c, axis=-1)
    else:
        mode = "L" if c == 1 else ("RGBA" if c == 4 else "RGB")
        resized = img.convert(mode).resize((w, h), Image.Resampling.LANCZOS)
        level = np.asarray(resized, dtype=np.float32).reshape(h, w, c) / 255.0
    if pre.mode == "ink":  # ink level -> background .. ink values
        lo, hi = image.value_min, image.value_max
    else:  # the picture as it is: black .. white onto the input's value range
        lo, hi = sorted((image.value_min, image.value_max))
    out = lo + level * (hi - lo)
    out = np.clip(out, min(lo, hi), max(lo, hi)).reshape(spec.shape[1:])
    return out.astype(spec.dtype or np.float32)


def frame_ink(a: np.ndarray, h: int, w: int, box: int, centre: str) -> np.ndarray:
    """Ink levels in [0, 1] -> an h x w frame with the ink cropped, scaled so its longer
    side is ``box`` pixels, and centred by mass or by bounding box."""
    mask = a > _INK_THRESHOLD
    if not mask.any():
        raise InvalidInput("No digit found: the image is blank or has no contrast.")
    rows, cols = np.nonzero(mask)
    a = a[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    ah, aw = a.shape
    scale = box / max(ah, aw)
    new_w, new_h = max(1, round(aw * scale)), max(1, round(ah * scale))
    patch = Image.fromarray((a * 255).astype(np.uint8)).resize((new_w, new_h),
                                                              Image.Resampling.LANCZOS)
    p = np.asarray(patch, dtype=np.float32) / 255.0
    total = p.sum()
    if total <= 0:
        raise InvalidInput("No digit found after scaling: the strokes are too thin.")
    if centre == "mass":
        ys, xs = np.indices(p.shape)
        cy, cx = (ys * p).sum() / total, (xs * p).sum() / total
        top, left = round(h / 2 - cy), round(w / 2 - cx)
    else:
        top, left = (h - new_h) // 2, (w - new_w) // 2
    out = np.zeros((h, w), dtype=np.float32)
    # Paste with clipping: centring by mass may push a lopsided digit past the frame.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + new_h, h), min(left + new_w, w)
    out[y0:y1, x0:x1] = p[y0 - top: y1 - top, x0 - left: x1 - left]
    return out
