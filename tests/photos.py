"""Photo-like pictures of handwritten digits, made from held-out MNIST test digits (never
training images), for testing ``:predict_image`` the way people use it: a digit written
on paper with a pen, photographed with a phone.

Each condition changes one thing about a clean scan (dark ink on white paper, the digit
somewhere in a larger frame); ``combined`` draws several at once. ``canvas`` is a
drawing pad instead: thin anti-aliased strokes on white or on a transparent canvas.
This generator is independent of the training code: the model never sees its output.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

CONDITIONS = ["clean", "lighting", "noise", "rotation", "fineliner", "marker", "ruled",
              "squared", "jpeg", "dark-paper", "colour", "small", "combined", "canvas"]


class Sheet:
    """A picture in the making: a float RGB page in [0, 1] and where the digit goes."""

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        self.rng = rng
        self.page = np.ones((height, width, 3), dtype=np.float32)
        self.height, self.width = height, width


def _ink_mask(digit: np.ndarray, size: int, rng: np.random.Generator, *, thickness: int = 0,
              angle: float = 0.0) -> np.ndarray:
    """The MNIST digit (white on black, 28x28) as ink coverage in [0, 1] at ``size``
    pixels: as written (0), with a fine pen (< 0: a thin line along each stroke's centre)
    or a marker (> 0: strokes about twice as wide), optionally rotated."""
    img = Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)
    cover = np.asarray(img, dtype=np.float32) / 255.0
    if thickness > 0:
        cover = ndimage.grey_dilation(cover, footprint=_disk(max(1, round(size / 28))))
    elif thickness < 0:
        cover = _centre_line(cover, width=rng.uniform(0.06, 0.1) * size / 28 * 10)
    if angle:
        cover = ndimage.rotate(cover, angle, reshape=False, order=1, mode="constant")
    return np.clip(cover, 0.0, 1.0)


def _centre_line(cover: np.ndarray, width: float) -> np.ndarray:
    """Each stroke redrawn as a line of ``width`` pixels along its centre, anti-aliased."""
    from skimage.morphology import skeletonize

    centre = skeletonize(cover > 0.5)
    line = ndimage.binary_dilation(centre, structure=_disk(max(1, round(width / 2))))
    return ndimage.gaussian_filter(line.astype(np.float32), 0.6)


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def _place(sheet: Sheet, cover: np.ndarray, ink: tuple[float, float, float]) -> None:
    """Lay ink of colour ``ink`` with coverage ``cover`` somewhere on the page."""
    h, w = cover.shape
    top = int(sheet.rng.integers(0, sheet.height - h + 1))
    left = int(sheet.rng.integers(0, sheet.width - w + 1))
    region = sheet.page[top:top + h, left:left + w]
    alpha = cover[..., None] * sheet.rng.uniform(0.85, 1.0)
    region[:] = region * (1 - alpha) + np.asarray(ink, np.float32) * alpha


def _lines(sheet: Sheet, *, vertical: bool) -> None:
    """Ruled (or squared) paper: thin light-blue lines every 20-35 pixels."""
    gap = int(sheet.rng.integers(20, 36))
    colour = np.asarray([0.55, 0.7, 0.9], np.float32)
    strength = sheet.rng.uniform(0.4, 0.7)
    offset = int(sheet.rng.integers(0, gap))
    for y in range(offset, sheet.height, gap):
        sheet.page[y] = sheet.page[y] * (1 - strength) + colour * strength
    if vertical:
        for x in range(offset, sheet.width, gap):
            sheet.page[:, x] = sheet.page[:, x] * (1 - strength) + colour * strength


def _lighting(sheet: Sheet) -> None:
    """Uneven light across the sheet: a linear gradient and a dim corner (vignette)."""
    ys, xs = np.mgrid[0:sheet.height, 0:sheet.width].astype(np.float32)
    angle = sheet.rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / sheet.width + np.sin(angle) * ys / sheet.height)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    low = sheet.rng.uniform(0.45, 0.7)
    light = low + (1 - low) * ramp
    cy, cx = sheet.rng.uniform(0, sheet.height), sheet.rng.uniform(0, sheet.width)
    dist = np.hypot(ys - cy, xs - cx) / np.hypot(sheet.height, sheet.width)
    light *= 1 - 0.25 * dist
    sheet.page *= light[..., None]


def _noise(sheet: Sheet) -> None:
    """Sensor noise and a little lens blur."""
    sheet.page = ndimage.gaussian_filter(sheet.page, sigma=(0.7, 0.7, 0))
    sheet.page += sheet.rng.normal(0, sheet.rng.uniform(0.03, 0.06), sheet.page.shape)


def _paper(sheet: Sheet, tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
    """Paper is never perfectly even: a faint low-frequency texture and a tint."""
    texture = ndimage.gaussian_filter(sheet.rng.normal(0, 1, (sheet.height, sheet.width)), 8)
    texture = texture / max(float(np.abs(texture).max()), 1e-6) * 0.03
    sheet.page = sheet.page * np.asarray(tint, np.float32) - texture[..., None]


def _encode(page: np.ndarray, fmt: str, quality: int = 90, mode: str = "RGB") -> bytes:
    img = Image.fromarray((np.clip(page, 0, 1) * 255).round().astype(np.uint8))
    if mode == "L":
        img = img.convert("L")
    out = io.BytesIO()
    img.save(out, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return out.getvalue()


def photo(digit: np.ndarray, condition: str, rng: np.random.Generator) -> bytes:
    """One picture of ``digit`` (an MNIST test image) under ``condition``."""
    if condition == "canvas":
        return _canvas(digit, rng)
    chosen = {condition} if condition != "combined" else set(
        rng.choice(["lighting", "noise", "rotation", "fineliner", "marker", "ruled", "jpeg",
                    "colour"], size=3, replace=False))
    return compose(digit, chosen, rng)


def compose(digit: np.ndarray, chosen: set[str], rng: np.random.Generator) -> bytes:
    """A picture of ``digit`` with every condition in ``chosen``."""
    height = int(rng.integers(300, 560))
    width = int(rng.integers(300, 560))
    sheet = Sheet(rng, height, width)
    tint = (1.0, 1.0, 1.0)
    ink = (rng.uniform(0.05, 0.2),) * 3
    size = int(rng.integers(110, 240))
    thickness, angle = 0, 0.0
    fmt, quality = ("PNG", 95) if rng.random() < 0.5 else ("JPEG", 92)
    steps: list[Callable[[Sheet], None]] = []
    chosen = set(chosen)
    if "fineliner" in chosen and "marker" in chosen:
        chosen.discard("marker")
    if "lighting" in chosen:
        steps.append(_lighting)
    if "noise" in chosen:
        steps.append(_noise)
    if "rotation" in chosen:
        angle = float(rng.choice([-1, 1]) * rng.uniform(6, 15))
    if "fineliner" in chosen:
        thickness = -1
    if "marker" in chosen:
        thickness = 1
    if "jpeg" in chosen:
        fmt, quality = "JPEG", int(rng.integers(45, 70))
    if "colour" in chosen:
        tint = (1.0, 0.96, 0.82)  # yellowish paper, blue ballpoint
        ink = (0.1, 0.15, 0.55)
    if "small" in chosen:
        size = int(rng.integers(45, 80))
    _paper(sheet, tint)
    if "ruled" in chosen or "squared" in chosen:
        _lines(sheet, vertical="squared" in chosen)
    _place(sheet, _ink_mask(digit, size, rng, thickness=thickness, angle=angle), ink)
    for step in steps:
        step(sheet)
    page = sheet.page
    if "dark-paper" in chosen:  # chalk on a blackboard
        page = 1.0 - page * rng.uniform(0.75, 0.95)
    return _encode(page, fmt, quality, mode="L" if rng.random() < 0.3 else "RGB")


def _canvas(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A drawing pad: the digit redrawn along its strokes' centres with a thin round
    brush, anti-aliased, black on white or on a transparent canvas."""
    size = 280
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC),
                     np.float32) / 255.0
    alpha = _centre_line(big, width=rng.uniform(3.0, 7.0))
    pixels = (np.clip(alpha, 0, 1) * 255).round().astype(np.uint8)
    out = io.BytesIO()
    if rng.random() < 0.5:
        rgba = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        rgba.putalpha(Image.fromarray(pixels))
        rgba.save(out, "PNG")
    else:
        Image.fromarray(255 - pixels).save(out, "PNG")
    return out.getvalue()
