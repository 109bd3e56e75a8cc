"""Find the handwriting in a picture: the ink of one digit, separated from paper,
lighting, ruled lines and specks, as a map of ink levels in [0, 1].

Photos of paper are lit unevenly, so no single grey level separates ink from paper.
The paper's own brightness is estimated at every point (a grey-level closing, wider
than any pen stroke, removes the strokes and leaves the paper), and ink is measured
against it: ``(paper - pixel) / paper``, which is the same for a stroke in the shade as
in full light. Ink must stand out of the paper's grain and noise, and is whatever
reaches 40% of the strongest stroke's level; two or more thin straight runs across the
picture (ruled or squared paper) are dropped; and the digit is the heaviest mark
together with the marks close to it, so specks, smudges and page edges are left out.
Light ink on dark paper (chalk, a white pen) is the same with the picture inverted:
paper covers most of the picture, so its side of grey says which.

The picture is searched at 128 px across; a digit smaller than 24 px there is looked at
again, in its own region, at up to 384 px. service.ndimage does the image work (scipy's
results in numpy: separable grey-level morphology, labelling by runs): a few
milliseconds per picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service import ndimage
from service.errors import InvalidInput

DETAIL_SIZE = 384       # longer side at which the digit's strokes are measured
REGION_SIZE = 160       # longer side of the digit's region as measured
SCAN_ENOUGH = 24        # a digit this large in the scan needs no second, finer look
SCAN_SIZE = 128         # longer side at which the picture is searched for the digit
MIN_CONTRAST = 0.2      # strongest mark below this (relative to the paper): no ink at all
MIN_DIGIT_PIXELS = 8    # a mark smaller than this (at the detail size) is a speck
INK_FRACTION = 0.4      # a pixel is ink from this fraction of the strongest stroke's level


@dataclass
class Ink:
    """The digit's ink levels (cropped to it), and what was found on the way."""

    levels: np.ndarray          # 2-D float32 in [0, 1], 1 = full ink
    stroke_width: float         # median stroke width, in pixels of ``levels``
    marks: int                  # separate marks of comparable size outside the digit


def find(img: Image.Image) -> Ink:
    """The digit in ``img``, or InvalidInput("No digit found ...").

    The picture is searched for the digit at a small size (cheap: a few thousand
    pixels), and the digit's own strokes are then measured at a larger one."""
    alpha = _canvas_alpha(img)  # strokes drawn on a transparent canvas: opacity is ink
    if alpha is not None:
        scan = _resize(alpha, _fit(alpha.shape, SCAN_SIZE), Image.Resampling.BOX)
        return _digit(scan, lambda t, b, lft, r: alpha[t:b, lft:r], alpha.shape)
    luminance = _luminance(img)
    gray = np.asarray(luminance, dtype=np.float32) / 255.0
    size = _fit(gray.shape, SCAN_SIZE)
    scan = np.asarray(luminance.resize(size[::-1], Image.Resampling.BOX),
                      dtype=np.float32) / 255.0
    if not _dark_ink(scan):  # chalk or a white pen on dark paper: the same, inverted
        gray, scan = 1.0 - gray, 1.0 - scan
    paper = _paper(scan)
    fy, fx = scan.shape[0] / gray.shape[0], scan.shape[1] / gray.shape[1]

    def detail(t: int, b: int, lft: int, r: int) -> np.ndarray:
        """Ink levels of a region of the detail picture, at most REGION_SIZE across
        (several times the model's own box: enough to measure strokes by). The paper
        estimate is smooth: interpolated from the scan's."""
        region = gray[t:b, lft:r]
        shape = _fit(region.shape, REGION_SIZE)
        ys = t + (np.arange(shape[0]) + 0.5) * (b - t) / shape[0]
        xs = lft + (np.arange(shape[1]) + 0.5) * (r - lft) / shape[1]
        region = _resize(np.ascontiguousarray(region), shape, Image.Resampling.BOX)
        rows, cols = _lerp(ys * fy - 0.5, scan.shape[0]), _lerp(xs * fx - 0.5, scan.shape[1])
        return _relative(region, rows @ paper @ cols.T)

    return _digit(_relative(scan, paper), detail, gray.shape)


def _lerp(at: np.ndarray, n: int) -> np.ndarray:
    """Weights of linear interpolation at positions ``at`` among ``n`` samples, as a
    matrix: bilinear resampling of a region is then two small matrix products."""
    at = np.clip(at, 0, n - 1)
    low = np.minimum(np.floor(at).astype(int), n - 2) if n > 1 else np.zeros(len(at), int)
    frac = (at - low).astype(np.float32)
    out = np.zeros((len(at), n), dtype=np.float32)
    rows = np.arange(len(at))
    out[rows, low] = 1 - frac
    if n > 1:
        out[rows, low + 1] += frac
    return out


def _canvas_alpha(img: Image.Image) -> np.ndarray | None:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        if alpha.min() < 0.5 < alpha.max():
            return _resize(alpha, _fit(alpha.shape, DETAIL_SIZE), Image.Resampling.BOX)
    return None


def _luminance(img: Image.Image) -> Image.Image:
    """Luminance, reduced by a whole factor (area averages: no aliasing) to at most
    twice the detail size. Colour casts (yellowed paper, blue ink) need no special
    handling: the paper estimate is per pixel."""
    factor = max(img.size) // DETAIL_SIZE
    if factor >= 2:
        img = img.reduce(factor)
    return img.convert("L")


def _fit(shape: tuple[int, ...], longest: int) -> tuple[int, int]:
    h, w = shape[:2]
    scale = min(1.0, longest / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resize(a: np.ndarray, shape: tuple[int, int], method: Image.Resampling) -> np.ndarray:
    if a.shape == shape:
        return a
    return np.asarray(Image.fromarray(a).resize(shape[::-1], method))


def _dark_ink(gray: np.ndarray) -> bool:
    """Paper covers most of the picture: dark ink when most of it is light. Close to
    mid-grey, the side with the longer tail of outlying pixels is the ink."""
    median = float(np.median(gray[::2, ::2]))
    if 0.35 < median < 0.65:
        lo, hi = np.percentile(gray, [0.5, 99.5])
        return median - lo >= hi - median
    return median >= 0.5


def _paper(gray: np.ndarray) -> np.ndarray:
    """The paper's brightness at every point of a dark-ink picture: a grey-level closing
    wider than any stroke removes the strokes and keeps the paper, then it is smoothed.
    Computed at half the size (the paper varies slowly) and brought back."""
    half = _resize(gray, ((gray.shape[0] + 1) // 2, (gray.shape[1] + 1) // 2),
                   Image.Resampling.BOX)
    k = max(3, int(min(half.shape) * 0.35) | 1)
    paper = ndimage.grey_closing(half, size=(k, k))
    paper = ndimage.uniform_filter(paper, size=max(3, k // 2))
    return _resize(paper, gray.shape, Image.Resampling.BILINEAR)


def _relative(gray: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """Dark marks against the paper: (paper - pixel) / paper, in [0, 1]; the same for a
    stroke in the shade as in full light."""
    paper = np.maximum(paper, gray)  # never darker than what is seen
    return np.clip((paper - gray) / np.maximum(paper, 0.05), 0.0, 1.0)


def _marks(level: np.ndarray, ruled: bool | None) -> tuple[np.ndarray, int, float, bool]:
    """Connected marks of ink: (labels, count, the strongest level, whether the paper is
    ruled). Smoothed a little first, so that a single noisy pixel is neither the peak
    nor a mark. ``ruled``: None to find out (the whole picture: at least two lines),
    else whether to remove lines crossing the whole of ``level`` (the digit's box)."""
    # (The scan is an area average already; the detail region gets a light blur.)
    smooth = level if ruled is None else ndimage.gaussian_filter(level, 0.8)
    peak = float(smooth.max())
    floor = 0.0
    if ruled is None:
        # In the whole picture (mostly paper), ink must also stand out of the paper's
        # grain and the sensor's noise: their level from the median absolute deviation.
        sample = smooth[::2, ::2]
        centre = float(np.median(sample))
        noise = 1.4826 * float(np.median(np.abs(sample - centre)))
        if peak < centre + 10 * noise:
            raise InvalidInput("No digit found: the image is blank or has no contrast.")
        floor = centre + 4 * noise
    if peak < MIN_CONTRAST:
        raise InvalidInput("No digit found: the image is blank or has no contrast.")
    mask = smooth >= max(INK_FRACTION * peak, floor)
    if ruled is not False:
        lines = (_ruled_lines(mask, reach=0.6, least=2) if ruled is None
                 else _ruled_lines(mask, reach=0.9, least=1))
        if lines is not None:
            mask &= ~lines
        ruled = lines is not None
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        raise InvalidInput("No digit found: the image is blank or has no contrast.")
    return labels, n, peak, ruled


def _digit(scan: np.ndarray, detail: Callable[[int, int, int, int], np.ndarray],
           shape: tuple[int, ...]) -> Ink:
    """Find the digit's marks in ``scan``, then take its ink from ``detail`` (the ink
    levels of a region of the same picture at ``shape``, larger)."""
    labels, n, scan_peak, ruled = _marks(scan, None)
    mass = np.bincount(labels.ravel(), weights=scan.ravel(), minlength=n + 1)[1:]
    boxes = ndimage.find_objects(labels)
    # Grain and noise make many small marks of about the same weight; a digit is one
    # mark (or a few) far heavier than those.
    grain = float(np.percentile(mass, 90)) if n >= 10 else 0.0
    if n >= 10 and mass.max() < 8 * grain:
        raise InvalidInput("No digit found: only paper grain and noise, no mark stands out.")
    keep, marks = _cluster(mass, boxes, grain)
    member = np.zeros(n + 1, dtype=bool)
    member[keep + 1] = True
    top = min(boxes[k][0].start for k in keep)
    bottom = max(boxes[k][0].stop for k in keep)
    left = min(boxes[k][1].start for k in keep)
    right = max(boxes[k][1].stop for k in keep)
    # The digit's box, with a margin for the strokes' faint edges (below the scan's
    # threshold, still part of how the digit looks).
    size = max(bottom - top, right - left)
    pad = max(1, round(0.1 * size))
    top, bottom = max(0, top - pad), min(scan.shape[0], bottom + pad)
    left, right = max(0, left - pad), min(scan.shape[1], right + pad)
    if size >= SCAN_ENOUGH:  # the scan already shows the digit in enough detail
        region, peak = scan[top:bottom, left:right], scan_peak
        chosen = member[labels[top:bottom, left:right]]
    else:
        region, peak, chosen = _in_detail(detail, shape, scan, labels, member, ruled,
                                          (top, bottom, left, right))
    rows, cols = np.nonzero(chosen)
    if max(np.ptp(rows), np.ptp(cols)) + 1 < MIN_DIGIT_PIXELS:
        raise InvalidInput("No digit found: the only marks are specks too small to read; "
                           "take the photo closer to the digit.")
    # The strokes' soft edges belong to the digit too (anti-aliasing, a blurred photo).
    reach = max(2, round(0.04 * max(region.shape)))
    grown = ndimage.maximum_filter(chosen, size=2 * reach + 1)  # separable: linear time
    floor = 0.1 * peak
    ink = np.clip((region - floor) / max(peak - floor, 1e-6), 0.0, 1.0) * grown
    return Ink(ink.astype(np.float32), _stroke_width(chosen), marks)


def _in_detail(detail: Callable[[int, int, int, int], np.ndarray], shape: tuple[int, ...],
               scan: np.ndarray, labels: np.ndarray, member: np.ndarray, ruled: bool,
               box: tuple[int, int, int, int]) -> tuple[np.ndarray, float, np.ndarray]:
    """The digit's region at the detail size: (ink levels, peak, the digit's marks there:
    those where the scan found it)."""
    top, bottom, left, right = box
    fy, fx = shape[0] / scan.shape[0], shape[1] / scan.shape[1]
    t, b = int(top * fy), min(shape[0], int(np.ceil(bottom * fy)))
    lft, r = int(left * fx), min(shape[1], int(np.ceil(right * fx)))
    region = detail(t, b, lft, r)
    # The digit's own marks at the detail size: those where the scan found it.
    near = member[labels[top:bottom, left:right]]
    near = _resize(near.astype(np.uint8), region.shape, Image.Resampling.NEAREST) > 0
    near = ndimage.binary_dilation(near, iterations=2)
    fine, m, peak, _ = _marks(region, ruled)
    own = np.zeros(m + 1, dtype=bool)
    own[np.unique(fine[near & (fine > 0)])] = True
    own[0] = False
    chosen = own[fine]
    if not chosen.any():
        raise InvalidInput("No digit found: the image is blank or has no contrast.")
    return region, peak, chosen


def _ruled_lines(mask: np.ndarray, *, reach: float, least: int) -> np.ndarray | None:
    """The lines of ruled or squared paper: ``least`` parallel thin straight runs across
    ``reach`` of the picture. In a whole picture, one such run may be a digit's stroke
    (a tall thin 1), so two are needed; a digit's strokes are also thicker, or shorter.
    None when there are none."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for axis, length in ((1, int(w * reach)), (0, int(h * reach))):
        # Only rows (columns) with that much ink can hold such a run.
        if length < 2 or mask.sum(axis=axis).max() < length:
            continue
        # A morphological opening by a line of ``length`` pixels, with running sums and
        # maxima (linear time) instead of a structuring element of that length.
        full = ndimage.uniform_filter1d(mask.astype(np.float32), length, axis=axis) > 0.999
        runs = ndimage.maximum_filter1d(full, length, axis=axis) & mask
        if not runs.any():
            continue
        labels, _ = ndimage.label(runs)
        thin = []
        for k, box in enumerate(ndimage.find_objects(labels), start=1):
            thickness = (box[0].stop - box[0].start) if axis == 1 else (
                box[1].stop - box[1].start)
            if thickness <= max(3, round(min(h, w) * 0.012)):
                thin.append(k)
        if len(thin) >= least:
            out |= np.isin(labels, thin)
    if not out.any():
        return None
    # The line's soft edges and the pixels where it crosses a stroke.
    return ndimage.binary_dilation(out, iterations=1) & mask


def _cluster(mass: np.ndarray, boxes: list, grain: float) -> tuple[np.ndarray, int]:
    """The marks that make the digit: the heaviest, and every mark of some weight (more
    than the grain's) close enough to it (a 5's flag, a pen lifted mid-stroke). Returns
    their indices, and how many other marks of comparable weight there are (a second
    digit, a doodle)."""
    seed = int(np.argmax(mass))
    chosen = {seed}
    box = _span(boxes[seed])
    changed = True
    while changed:
        changed = False
        reach = 0.4 * max(box[1] - box[0], box[3] - box[2])
        for k, b in enumerate(boxes):
            if k in chosen or mass[k] < max(0.02 * mass[seed], 2 * grain):
                continue
            other = _span(b)
            if _gap(box, other) <= reach:
                chosen.add(k)
                box = (min(box[0], other[0]), max(box[1], other[1]),
                       min(box[2], other[2]), max(box[3], other[3]))
                changed = True
    rivals = sum(1 for k in range(len(mass)) if k not in chosen and mass[k] >= 0.25 * mass[seed])
    return np.array(sorted(chosen)), rivals


def _span(box: tuple[slice, slice]) -> tuple[int, int, int, int]:
    return box[0].start, box[0].stop, box[1].start, box[1].stop


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    dy = max(0, max(a[0], b[0]) - min(a[1], b[1]))
    dx = max(0, max(a[2], b[2]) - min(a[3], b[3]))
    return float(np.hypot(dy, dx))


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width: a stroke of width w and length L covers w * L pixels and has
    about 2 L of edge, so width ~ 2 * area / edge."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    edge = np.count_nonzero(mask) - np.count_nonzero(inner)
    return 2.0 * np.count_nonzero(mask) / max(edge, 1)


def stroke_ratio(image: np.ndarray) -> float | None:
    """Stroke width relative to the digit's size in one image whose ink is high (a
    training image): what publishing records as ``preprocessing.stroke`` for the
    uploads this service reframes. None for a blank image."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    top = float(a.max())
    if top <= 0:
        return None
    # Measured at about the size uploads are measured at, not at 28 or 8 pixels.
    a = _resize(a / top, _fit(a.shape, 112) if max(a.shape) > 112 else
                (round(a.shape[0] * 112 / max(a.shape)), round(a.shape[1] * 112 / max(a.shape))),
                Image.Resampling.BICUBIC)
    mask = a >= INK_FRACTION
    if not mask.any():
        return None
    rows, cols = np.nonzero(mask)
    size = max(np.ptp(rows), np.ptp(cols)) + 1
    return _stroke_width(mask) / size
