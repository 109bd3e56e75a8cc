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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.manifest import InputSpec

if TYPE_CHECKING:
    from PIL import Image

FORMATS = {"PNG", "JPEG"}
MAX_ASPECT = 50  # a 20000x1 strip holds no digit
_INK_THRESHOLD = 0.2  # fraction of full ink that counts as part of the digit
# Uploads are never looked at in more detail than this (service/ink.py works at 384 px);
# large JPEGs are decoded at a reduced scale no smaller than it.
DECODE_SIZE = 768


def decode(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open and fully decode a PNG or JPEG, refusing anything else before decoding."""
    # Pillow is imported at the first upload: 8 ms of start-up a server may never need.
    from PIL import Image, UnidentifiedImageError

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
            if img.format == "JPEG" and min(w, h) > 2 * DECODE_SIZE:
                # A phone photo: JPEG can decode at 1/2, 1/4 or 1/8 scale directly, far
                # cheaper than decoding 12 megapixels to shrink them afterwards.
                img.draft(img.mode, (DECODE_SIZE, DECODE_SIZE))
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


@dataclass
class Prepared:
    """An image input made from a picture, and what the service should tell the client
    about how it was found."""

    pixels: np.ndarray
    notes: list[str] = field(default_factory=list)


def prepare(img: Image.Image, spec: InputSpec) -> Prepared:
    """One sample of ``spec`` (an image input), shaped ``spec.shape[1:]``, in its dtype."""
    image = spec.image
    assert image is not None
    h, w, c = image.height, image.width, image.channels
    pre = image.preprocessing
    notes: list[str] = []
    if pre.mode == "ink":
        # Imported at the first photo: a server without image uploads never needs it.
        from service import ink

        found = ink.find(img)
        if found.marks:
            notes.append(f"{found.marks} other mark(s) of similar size were found; the "
                         "largest was taken as the digit")
        box = pre.box or max(1, round(min(h, w) * 20 / 28))
        levels = found.levels
        if pre.stroke is not None:
            levels = _normal_strokes(levels, found.stroke_width, pre.stroke)
        level = frame_ink(levels, h, w, box, pre.centre)[..., None].repeat(c, axis=-1)
        lo, hi = image.value_min, image.value_max  # ink level -> background .. ink values
    else:
        from PIL import Image

        mode = "L" if c == 1 else ("RGBA" if c == 4 else "RGB")
        resized = img.convert(mode).resize((w, h), Image.Resampling.LANCZOS)
        level = np.asarray(resized, dtype=np.float32).reshape(h, w, c) / 255.0
        # The picture as it is: black .. white onto the input's value range.
        lo, hi = sorted((image.value_min, image.value_max))
    out = lo + level * (hi - lo)
    out = np.clip(out, min(lo, hi), max(lo, hi)).reshape(spec.shape[1:])
    return Prepared(out.astype(spec.dtype or np.float32), notes)


def to_input(img: Image.Image, spec: InputSpec) -> np.ndarray:
    return prepare(img, spec).pixels


def _normal_strokes(levels: np.ndarray, width: float, stroke: list[float]) -> np.ndarray:
    """Strokes outside the training images' range of widths (relative to the digit's
    size: a fine-liner, a thin drawing-pad brush, a marker) brought to their median."""
    from service import ndimage

    low, median, high = stroke
    size = max(levels.shape)
    ratio = width / size
    radius = round(abs(median * size - width) / 2)
    if ratio < low and radius >= 1:
        return ndimage.grey_dilation(levels, footprint=_disk(radius))
    if ratio > high and radius >= 1:
        return ndimage.grey_erosion(levels, footprint=_disk(radius))
    return levels


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def frame_ink(a: np.ndarray, h: int, w: int, box: int, centre: str) -> np.ndarray:
    """Ink levels in [0, 1] -> an h x w frame with the ink cropped, scaled so its longer
    side is ``box`` pixels, and centred by mass or by bounding box."""
    from PIL import Image

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
