"""service/ndimage.py against scipy.ndimage itself (installed for development and
training, not for serving): the same results on many random arrays, with the
parameters, dtypes and sizes the photo pipeline (service/ink.py, service/images.py)
uses. Integer and bool results are equal exactly; float results too, bit for bit (the
running sums and the Gaussian's products are done in scipy's order).
"""

from __future__ import annotations

import numpy as np
import pytest

from service import ndimage as ours

scipy_ndimage = pytest.importorskip("scipy.ndimage")

# Small, odd, even, one-pixel-wide, and the pipeline's largest (384 px).
SHAPES = [(1, 1), (1, 7), (6, 1), (2, 3), (5, 8), (13, 9), (64, 48), (128, 97), (160, 120),
          (384, 288)]


def _images(seed: int, dtype: type) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for shape in SHAPES:
        if dtype is bool:
            # Sparse, medium and dense masks: many separate marks, and long touching ones.
            for p in (0.1, 0.45, 0.7):
                out.append(rng.random(shape) < p)
        elif dtype is np.uint8:
            out.append(rng.integers(0, 256, shape, dtype=np.uint8))
        else:
            a = rng.random(shape, dtype=np.float32)
            a[rng.random(shape) < 0.3] = 1.0  # plateaus and ties, as paper has
            out.append(a)
    return out


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b), float(np.max(np.abs(a.astype(float) - b.astype(float))))


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.float32])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 11, 25, 300])
def test_max_and_min_filters_1d(dtype, size):
    for a in _images(size, dtype):
        for axis in (0, 1):
            _same(ours.maximum_filter1d(a, size, axis=axis),
                  scipy_ndimage.maximum_filter1d(a, size, axis=axis))
            _same(ours.minimum_filter1d(a, size, axis=axis),
                  scipy_ndimage.minimum_filter1d(a, size, axis=axis))


@pytest.mark.parametrize("dtype", [bool, np.float32])
@pytest.mark.parametrize("size", [3, 5, 9, 17, 41])
def test_maximum_filter(dtype, size):
    for a in _images(100 + size, dtype):
        _same(ours.maximum_filter(a, size=size), scipy_ndimage.maximum_filter(a, size=size))


@pytest.mark.parametrize("k", [3, 5, 7, 15, 23, 45])
def test_grey_closing(k):
    for a in _images(200 + k, np.float32):
        _same(ours.grey_closing(a, size=(k, k)), scipy_ndimage.grey_closing(a, size=(k, k)))


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def _brute_extreme(a: np.ndarray, foot: np.ndarray, reduce) -> np.ndarray:
    """Max or min over the footprint from a reflected copy, one offset at a time."""
    ry, rx = foot.shape[0] // 2, foot.shape[1] // 2
    padded = np.pad(a, ((ry, ry), (rx, rx)), mode="symmetric")
    h, w = a.shape
    return reduce([padded[dy:dy + h, dx:dx + w] for dy, dx in zip(*np.nonzero(foot),
                                                                  strict=True)], axis=0)


@pytest.mark.parametrize("radius", [1, 2, 3, 5, 8, 13])
def test_grey_dilation_and_erosion_with_a_disk(radius):
    foot = _disk(radius)
    for a in _images(300 + radius, np.float32):
        _same(ours.grey_erosion(a, footprint=foot), _brute_extreme(a, foot, np.min))
        _same(ours.grey_dilation(a, footprint=foot), _brute_extreme(a, foot, np.max))
        if radius > 3 * min(a.shape):
            # scipy reads past its line buffer there (values not in the image at all,
            # scipy 1.17): never in the pipeline, whose crops are wider than the disk.
            continue
        _same(ours.grey_dilation(a, footprint=foot),
              scipy_ndimage.grey_dilation(a, footprint=foot))
        _same(ours.grey_erosion(a, footprint=foot),
              scipy_ndimage.grey_erosion(a, footprint=foot))
    # A lopsided footprint: scipy's dilation mirrors it, the erosion does not.
    odd = np.zeros((5, 3), dtype=bool)
    odd[0, 0] = odd[1, :] = odd[4, 2] = odd[2, 1] = True
    for a in _images(399, np.float32):
        _same(ours.grey_dilation(a, footprint=odd), scipy_ndimage.grey_dilation(a, footprint=odd))
        _same(ours.grey_erosion(a, footprint=odd), scipy_ndimage.grey_erosion(a, footprint=odd))


@pytest.mark.parametrize("size", [2, 3, 4, 7, 10, 22, 115, 345])
def test_uniform_filters(size):
    for a in _images(400 + size, np.float32):
        _same(ours.uniform_filter(a, size=size), scipy_ndimage.uniform_filter(a, size=size))
    for mask in _images(500 + size, bool):
        a = mask.astype(np.float32)
        for axis in (0, 1):
            _same(ours.uniform_filter1d(a, size, axis=axis),
                  scipy_ndimage.uniform_filter1d(a, size, axis=axis))


def test_gaussian_filter():
    for sigma in (0.8, 0.5, 1.7):
        for a in _images(600, np.float32):
            _same(ours.gaussian_filter(a, sigma), scipy_ndimage.gaussian_filter(a, sigma))


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_binary_dilation(iterations):
    for a in _images(700 + iterations, bool):
        _same(ours.binary_dilation(a, iterations=iterations),
              scipy_ndimage.binary_dilation(a, iterations=iterations))


@pytest.mark.parametrize("eight", [False, True])
def test_label_and_find_objects(eight):
    structure = np.ones((3, 3)) if eight else None
    masks = _images(800 + eight, bool)
    # Shapes whose components merge late: spirals, combs, diagonals.
    comb = np.zeros((40, 40), dtype=bool)
    comb[::2] = True
    comb[:, 0] = True
    comb[:, -1] = True
    masks += [comb, comb[::-1, ::-1].copy(), np.eye(30, dtype=bool), np.eye(30, dtype=bool)[::-1],
              np.zeros((5, 5), dtype=bool), np.ones((7, 3), dtype=bool)]
    for a in masks:
        got, n = ours.label(a, structure=structure)
        want, m = scipy_ndimage.label(a, structure=structure)
        assert n == m
        _same(got, want)
        assert ours.find_objects(got) == scipy_ndimage.find_objects(want)


def test_find_objects_with_missing_labels():
    labels = np.zeros((6, 6), dtype=np.int32)
    labels[1:3, 2] = 3
    labels[4, 1:5] = 1
    assert ours.find_objects(labels) == scipy_ndimage.find_objects(labels)
