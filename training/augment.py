"""Augmentation of MNIST training images for a digit model that reads photos and
drawings: strokes thinner and thicker (a fine-liner, a marker), rotation, elastic
distortion (Simard et al., 2003), sensor noise and specks. Every image is then framed
again the way the service frames an upload (``service.images.frame_ink``), so a
thickened or rotated digit still fills MNIST's 20x20 box, centred by mass.

Training images only: the held-out test set is never augmented, and the photo-like test
pictures (tests/photos.py) are made by separate code.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from service.errors import InvalidInput
from service.images import frame_ink

_CROSS = ndimage.generate_binary_structure(2, 1)


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[n, 28, 28] MNIST digits (0-255, white on black) -> augmented copies, same scale."""
    out = np.empty(images.shape, dtype=np.float32)
    for i, img in enumerate(images):
        out[i] = _one(np.asarray(img, dtype=np.float32) / 255.0, rng) * 255.0
    return out


def _one(original: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = np.pad(original, 6)  # room to rotate, thicken and distort without clipping
    roll = rng.random()
    if roll < 0.25:
        thinner = ndimage.grey_erosion(a, footprint=_CROSS)  # a finer pen
        if thinner.sum() >= 0.6 * a.sum():  # unless the strokes were thin already
            a = thinner
    elif roll < 0.5:
        a = ndimage.grey_dilation(a, footprint=_CROSS if rng.random() < 0.5
                                  else np.ones((3, 3), bool))  # a marker
    if rng.random() < 0.6:
        a = ndimage.rotate(a, rng.uniform(-15, 15), reshape=False, order=1)
    if rng.random() < 0.5:
        a = _elastic(a, rng, alpha=rng.uniform(20, 34), sigma=4.0)
    try:
        framed = frame_ink(np.clip(a, 0, 1), 28, 28, 20, "mass")
    except InvalidInput:  # a faint digit eroded away: keep it as it was written
        framed = original
    if rng.random() < 0.3:
        framed = framed + rng.normal(0, rng.uniform(0.03, 0.1), framed.shape)
    if rng.random() < 0.15:  # a few specks of dust or paper grain
        specks = rng.random(framed.shape) < 0.004
        framed = np.maximum(framed, specks * rng.uniform(0.3, 0.8))
    return np.clip(framed, 0.0, 1.0)


def _elastic(a: np.ndarray, rng: np.random.Generator, *, alpha: float,
             sigma: float) -> np.ndarray:
    """Simard's elastic distortion: a random displacement field, smoothed."""
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, a.shape), sigma) * alpha
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, a.shape), sigma) * alpha
    y, x = np.indices(a.shape)
    return ndimage.map_coordinates(a, [y + dy, x + dx], order=1, mode="constant")
