"""The few scipy.ndimage functions the photo pipeline uses, in numpy, giving the same
results: same names, the subset of parameters used, scipy's defaults (mode "reflect",
origin 0, binary dilation's border 0, labels numbered in raster order of each mark's
first pixel). Keeps scipy (~110 MB) out of the serving install.

Filters are separable and linear time: running maxima by blocks (van Herk / Gil-Werman)
for the max/min filters, running sums for the uniform filter, done in float64 in the
same order of operations as scipy's C code so that float results match it bit for bit.
"""

from __future__ import annotations

import numpy as np


def _reflected(n: int, before: int, after: int) -> np.ndarray:
    """Indices of a line of ``n`` extended by scipy's mode "reflect" (d c b a | a b c d |
    d c b a), repeated when the extension is longer than the line."""
    at = np.arange(-before, n + after) % (2 * n)
    return np.where(at < n, at, 2 * n - 1 - at)


def _reflect(a: np.ndarray, before: int, after: int, axis: int) -> np.ndarray:
    # One gather: np.pad costs more than the filtering on these small images.
    return np.take(a, _reflected(a.shape[axis], before, after), axis=axis)


def _window(size: int) -> tuple[int, int]:
    """Samples before and after the centre: scipy puts the extra one of an even
    window before it."""
    before = size // 2
    return before, size - before - 1


def _extreme1d(a: np.ndarray, size: int, axis: int, ufunc: np.ufunc) -> np.ndarray:
    """Running maximum or minimum of ``size`` samples along ``axis`` in linear time:
    the window always spans at most two blocks of ``size``, so it is the suffix
    extreme of one block and the prefix extreme of the next."""
    if size <= 1:
        return a.copy()
    a = np.moveaxis(a, axis, -1)
    n = a.shape[-1]
    before, after = _window(size)
    index = _reflected(n, before, after)
    blocks = -(-index.size // size)
    # The fill past the end (the last sample again) is never inside any output's window.
    index = np.r_[index, np.full(blocks * size - index.size, index[-1])]
    padded = np.take(a, index, axis=-1)
    shaped = padded.reshape(*a.shape[:-1], blocks, size)
    prefix = ufunc.accumulate(shaped, axis=-1).reshape(padded.shape)
    suffix = ufunc.accumulate(shaped[..., ::-1], axis=-1)[..., ::-1].reshape(padded.shape)
    out = ufunc(suffix[..., :n], prefix[..., size - 1:size - 1 + n])
    return np.ascontiguousarray(np.moveaxis(out, -1, axis))


def maximum_filter1d(a: np.ndarray, size: int, axis: int = -1) -> np.ndarray:
    return _extreme1d(np.asarray(a), size, axis, np.maximum)


def minimum_filter1d(a: np.ndarray, size: int, axis: int = -1) -> np.ndarray:
    return _extreme1d(np.asarray(a), size, axis, np.minimum)


def _sizes(size: int | tuple[int, ...], ndim: int) -> tuple[int, ...]:
    return (size,) * ndim if isinstance(size, int) else tuple(size)


def maximum_filter(a: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    out = np.asarray(a)
    for axis, n in enumerate(_sizes(size, out.ndim)):
        out = maximum_filter1d(out, n, axis)
    return out


def minimum_filter(a: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    out = np.asarray(a)
    for axis, n in enumerate(_sizes(size, out.ndim)):
        out = minimum_filter1d(out, n, axis)
    return out


def _footprint_extreme(a: np.ndarray, footprint: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
    """Max or min over a 2-D footprint of odd size: per footprint row, a 1-D running
    extreme over each of its runs, shifted into place."""
    a = np.asarray(a)
    fh, fw = footprint.shape
    if fh % 2 == 0 or fw % 2 == 0:
        raise ValueError("footprint must have odd sizes")
    ry, rx = fh // 2, fw // 2
    padded = _reflect(_reflect(a, ry, ry, 0), rx, rx, 1)
    h, w = a.shape
    out: np.ndarray | None = None
    for dy in range(fh):
        rows = padded[dy:dy + h]
        cols = np.flatnonzero(footprint[dy])
        if cols.size == 0:
            continue
        # Each run of the footprint's row: a running extreme of its length.
        breaks = np.flatnonzero(np.diff(cols) > 1)
        for start, stop in zip(np.r_[0, breaks + 1], np.r_[breaks + 1, cols.size],
                               strict=True):
            c0, length = int(cols[start]), int(stop - start)
            # Output column j takes padded columns j + c0 .. j + c0 + length - 1.
            line = rows[:, c0:c0 + w + length - 1]
            before, _ = _window(length)
            part = _extreme1d(line, length, 1, ufunc)[:, before:before + w]
            out = part if out is None else ufunc(out, part)
    if out is None:
        raise ValueError("footprint is empty")
    return out


def grey_dilation(a: np.ndarray, size: int | tuple[int, ...] | None = None,
                  footprint: np.ndarray | None = None) -> np.ndarray:
    """Odd sizes and footprints only (the mirrored footprint of scipy's grey dilation
    is then centred the same)."""
    if footprint is not None:
        return _footprint_extreme(a, np.asarray(footprint, dtype=bool)[::-1, ::-1], np.maximum)
    assert size is not None
    if any(n % 2 == 0 for n in _sizes(size, np.ndim(a))):
        raise ValueError("grey_dilation: even sizes are not supported")
    return maximum_filter(a, size)


def grey_erosion(a: np.ndarray, size: int | tuple[int, ...] | None = None,
                 footprint: np.ndarray | None = None) -> np.ndarray:
    if footprint is not None:
        return _footprint_extreme(a, np.asarray(footprint, dtype=bool), np.minimum)
    assert size is not None
    return minimum_filter(a, size)


def grey_closing(a: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    return grey_erosion(grey_dilation(a, size), size)


def uniform_filter1d(a: np.ndarray, size: int, axis: int = -1) -> np.ndarray:
    """Running mean along ``axis`` as scipy (1.x) computes it: a running sum in float64
    (the first window's, then + entering - leaving at each step) over ``size``, cast to
    the input's dtype."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError("uniform_filter1d: float input only")
    if size <= 1:
        return a.copy()
    line = np.moveaxis(a, axis, -1).astype(np.float64)
    n = line.shape[-1]
    before, after = _window(size)
    padded = _reflect(line, before, after, -1)
    steps = np.empty_like(line)
    # Sequential sums (np.add.accumulate), as scipy's loop adds them.
    steps[..., 0] = np.add.accumulate(padded[..., :size], axis=-1)[..., -1]
    steps[..., 1:] = padded[..., size:size + n - 1] - padded[..., :n - 1]
    out = np.add.accumulate(steps, axis=-1) / size
    return np.ascontiguousarray(np.moveaxis(out, -1, axis)).astype(a.dtype)


def uniform_filter(a: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    out = np.asarray(a)
    for axis, n in enumerate(_sizes(size, out.ndim)):
        if n > 1:
            out = uniform_filter1d(out, n, axis)
    return out.copy() if out is a else out


def _correlate_symmetric1d(a: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """scipy's correlate1d for symmetric weights: centre * w0, then each pair of
    samples at equal distance added first and multiplied by their weight, farthest first."""
    radius = len(weights) // 2
    line = np.moveaxis(a, axis, -1).astype(np.float64)
    n = line.shape[-1]
    padded = _reflect(line, radius, radius, -1)
    out = padded[..., radius:radius + n] * weights[radius]
    for j in range(-radius, 0):
        out += (padded[..., radius + j:radius + j + n]
                + padded[..., radius - j:radius - j + n]) * weights[radius + j]
    return np.ascontiguousarray(np.moveaxis(out, -1, axis)).astype(a.dtype)


def gaussian_filter(a: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """A float image blurred along each axis in turn (the result of each pass in the
    input's dtype, as scipy stores it)."""
    out = np.asarray(a)
    if not np.issubdtype(out.dtype, np.floating):
        raise TypeError("gaussian_filter: float input only")
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    weights = (weights / weights.sum())[::-1]
    for axis in range(out.ndim):
        out = _correlate_symmetric1d(out, weights, axis)
    return out


def binary_dilation(a: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Dilation by the cross (4-neighbours), ``iterations`` times; outside is 0."""
    out = np.asarray(a, dtype=bool)
    for _ in range(iterations):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's runs of True in raster order: (row, start, stop)."""
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, stops = np.nonzero(edges == -1)
    return rows, starts, stops


def label(mask: np.ndarray, structure: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Connected components of a 2-D mask: 4-connected by default, 8-connected with a
    full 3x3 ``structure``. Labels 1..n in raster order of each component's first
    pixel, as int32, and n."""
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError("label: 2-D input only")
    if structure is None:
        diagonal = False
    else:
        s = np.asarray(structure, dtype=bool)
        cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
        if s.shape != (3, 3) or not (s.all() or np.array_equal(s, cross)):
            raise ValueError("label: only the 4- or 8-connected structure is supported")
        diagonal = bool(s.all())
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    rows, starts, stops = _runs(mask)
    if rows.size == 0:
        return labels, 0
    # Runs touching in the row above: with keys row * span + column, those of row r - 1
    # overlapping a run of row r are one contiguous range of the sorted runs.
    span = w + 2
    reach = 1 if diagonal else 0
    lo = np.searchsorted((rows * span + stops), (rows - 1) * span + starts - reach,
                         side="right")
    hi = np.searchsorted((rows * span + starts), (rows - 1) * span + stops + reach,
                         side="left")
    count = np.maximum(hi - lo, 0)
    below = np.repeat(np.arange(rows.size), count)
    above = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(count.sum())
    # Union-find over runs, every root its component's first run: hook the larger
    # root onto the smaller, then compress the paths fully, until all edges agree.
    parent = np.arange(rows.size)
    while below.size:
        ra, rb = parent[above], parent[below]
        differ = ra != rb
        if not differ.any():
            break
        np.minimum.at(parent, np.maximum(ra, rb)[differ], np.minimum(ra, rb)[differ])
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    roots, number = np.unique(parent, return_inverse=True)
    labels.flat[np.flatnonzero(mask)] = np.repeat(number.astype(np.int32) + 1, stops - starts)
    return labels, int(roots.size)


def find_objects(labels: np.ndarray) -> list[tuple[slice, slice] | None]:
    """Each label's bounding box as slices, indexed by label - 1 (None for a number
    with no pixels)."""
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    if n <= 0:
        return []
    rows, cols = np.nonzero(labels > 0)
    which = labels[rows, cols] - 1
    top, left = np.full(n, labels.shape[0]), np.full(n, labels.shape[1])
    bottom, right = np.full(n, -1), np.full(n, -1)
    np.minimum.at(top, which, rows)
    np.maximum.at(bottom, which, rows)
    np.minimum.at(left, which, cols)
    np.maximum.at(right, which, cols)
    return [(slice(int(top[k]), int(bottom[k]) + 1), slice(int(left[k]), int(right[k]) + 1))
            if bottom[k] >= 0 else None for k in range(n)]
