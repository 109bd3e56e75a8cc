"""The loops conv.py runs around its BLAS products: ``_convloops.c``, compiled when the
package is installed and called through ctypes (which releases the GIL, so the event loop
keeps serving meanwhile), or numpy where no C compiler was available at install time
(slower; logged once).

Each function writes into ``out`` (or ``v``), which must be a C-contiguous float32 array
of the shape it names: the C loops index it by those shapes, so they are checked before
every call. Inputs are converted to that layout when they are not in it already.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging

import numpy as np

log = logging.getLogger("modelserve.runtimes.lean")

_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
_char, _byref = ctypes.c_char, ctypes.byref


def _load() -> ctypes.CDLL | None:
    spec = importlib.util.find_spec("service.runtimes.lean._convloops")
    if spec is None or spec.origin is None:
        log.warning("the compiled convolution loops were not built at install time (no C "
                    "compiler?); running them in numpy, slower")
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError as exc:  # pragma: no cover (a broken build)
        log.warning("compiled convolution loops not loadable (%s); running them in numpy",
                    exc)
        return None
    lib.winograd_in.restype = _int
    lib.winograd_in.argtypes = [_ptr, _i64, _i64, _i64, _i64, _i64, _i64, _i64, _i64, _ptr]
    lib.winograd_out.restype = _int
    lib.winograd_out.argtypes = [_ptr, _ptr, _int, _int, _i64, _i64, _i64, _i64, _i64,
                                 _i64, _ptr]
    lib.max_bias_relu.restype = None
    lib.max_bias_relu.argtypes = [_ptr, _i64, _i64, _i64, _ptr, _int, _ptr]
    lib.pool.restype = None
    lib.pool.argtypes = [_ptr, _i64, _i64, _i64, _i64, _i64, _i64, _i64, _i64, _i64, _i64,
                         _int, _i64, _i64, _ptr]
    return lib


_LIB = _load()
COMPILED = _LIB is not None  # read at each call: tests switch to the numpy loops


def _address(a: np.ndarray) -> object:
    """a's data pointer for ctypes. A writable array lends its buffer directly: 0.3 µs
    where ``a.ctypes.data`` takes 0.9, a third of a call on one image's arrays."""
    try:
        return _byref(_char.from_buffer(a))
    except (TypeError, ValueError):  # read-only or empty
        return a.ctypes.data


def _input(a: np.ndarray, ndim: int, name: str) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def _output(a: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if a.dtype != np.float32 or not a.flags.c_contiguous or a.shape != shape:
        raise ValueError(f"{name} must be a C-contiguous float32 array of shape {shape}, "
                         f"got {a.dtype} {a.shape}")


def winograd_in(x: np.ndarray, top: int, left: int, th: int, tw: int,
                v: np.ndarray) -> None:
    """v[4i+j, tile, :] = (B^T d B)[i, j] for each 4x4 tile d of x (N, H, W, C), zeros
    outside x; the tile (ty, tx) starts at row 2ty - top, column 2tx - left."""
    x = _input(x, 4, "x")
    n, h, w, c = x.shape
    _output(v, (16, n * th * tw, c), "v")
    if COMPILED:
        if _LIB.winograd_in(_address(x), n, h, w, c, top, left, th, tw, _address(v)):
            raise MemoryError("winograd_in: no memory for one tile")
        return
    # Zeros around x out to the last tile's edge; x's cells past it are never read.
    xp = np.zeros((n, 2 * th + 2, 2 * tw + 2, c), dtype=np.float32)
    rows, cols = min(h, 2 * th + 2 - top), min(w, 2 * tw + 2 - left)
    xp[:, top : top + rows, left : left + cols] = x[:, :rows, :cols]
    # B^T along the tiles' rows, then B along their columns straight into v: written
    # with out= throughout, as temporaries took 3x the time.
    e = np.empty((4, n, th, 2 * tw + 2, c), dtype=np.float32)
    _transform_in([xp[:, r : r + 2 * th : 2] for r in range(4)], e)
    out = v.reshape(4, 4, n, th, tw, c)
    for i in range(4):
        _transform_in([e[i][:, :, j : j + 2 * tw : 2] for j in range(4)], out[i])


def _transform_in(d: list[np.ndarray], out: np.ndarray) -> None:
    """B^T applied along four rows (or columns) d, into out[0..3]."""
    np.subtract(d[0], d[2], out=out[0])
    np.add(d[1], d[2], out=out[1])
    np.subtract(d[2], d[1], out=out[2])
    np.subtract(d[1], d[3], out=out[3])


def winograd_out(m: np.ndarray, bias: np.ndarray, relu: bool, pooled: bool, th: int,
                 tw: int, out: np.ndarray) -> None:
    """out's 2x2 tile = A^T M A + bias (then ReLU), cropped to out's height and width;
    with ``pooled``, out's cell is the max of that tile (a valid 2x2 max pool)."""
    m, bias = _input(m, 3, "m"), _input(bias, 1, "bias")
    n, ho, wo, f = out.shape
    if m.shape != (16, n * th * tw, f) or bias.shape != (f,):
        raise ValueError(f"m {m.shape} and bias {bias.shape} do not fit out {out.shape}")
    _output(out, (n, ho, wo, f), "out")
    if COMPILED:
        if _LIB.winograd_out(_address(m), _address(bias), relu, pooled, th, tw, n, ho,
                             wo, f, _address(out)):
            raise MemoryError("winograd_out: no memory for one tile")
        return
    t = m.reshape(4, 4, n, th, tw, f)
    r0 = t[0] + t[1]  # A^T along the rows: r0[j], r1[j] are r_0j, r_1j of the C loop
    r0 += t[2]
    r1 = t[1] - t[2]
    r1 -= t[3]
    quads = np.empty((4, n, th, tw, f), dtype=np.float32)
    for r, (first, second) in zip((r0, r1), ((0, 1), (2, 3)), strict=True):
        np.add(r[0], r[1], out=quads[first])
        quads[first] += r[2]
        np.subtract(r[1], r[2], out=quads[second])
        quads[second] -= r[3]
    quads += bias
    if pooled:
        np.maximum(quads[0], quads[1], out=quads[0])
        np.maximum(quads[2], quads[3], out=quads[2])
        np.maximum(quads[0], quads[2], out=quads[0])
        out[...] = quads[0, :, :ho, :wo]
    else:
        full = np.empty((n, th, 2, tw, 2, f), dtype=np.float32)
        for q in range(4):
            full[:, :, q // 2, :, q % 2] = quads[q]
        out[...] = full.reshape(n, 2 * th, 2 * tw, f)[:, :ho, :wo]
    if relu:
        np.maximum(out, 0.0, out=out)


def max_bias_relu(blocks: np.ndarray, bias: np.ndarray, relu: bool, out: np.ndarray) -> None:
    """out = max over blocks (axis 0), + bias, then ReLU."""
    blocks, bias = _input(blocks, 3, "blocks"), _input(bias, 1, "bias")
    nb, p, f = blocks.shape
    if bias.shape != (f,):
        raise ValueError(f"bias must be ({f},), got {bias.shape}")
    _output(out, (p, f), "out")
    if COMPILED:
        _LIB.max_bias_relu(_address(blocks), nb, p, f, _address(bias), relu,
                           _address(out))
        return
    np.max(blocks, axis=0, out=out)
    out += bias
    if relu:
        np.maximum(out, 0.0, out=out)


def pool(x: np.ndarray, ph: int, pw: int, sh: int, sw: int, top: int, left: int,
         average: bool, out: np.ndarray) -> None:
    """A ph x pw max or average pool of x (N, H, W, C) into out (N, Ho, Wo, C), strides
    (sh, sw), the first window at (-top, -left). Padded cells do not count (TF's padding
    leaves each window at least one real cell)."""
    x = _input(x, 4, "x")
    n, h, w, c = x.shape
    if out.ndim != 4:
        raise ValueError(f"out must be (N, Ho, Wo, C), got shape {out.shape}")
    ho, wo = out.shape[1:3]
    _output(out, (n, ho, wo, c), "out")
    if COMPILED:
        _LIB.pool(_address(x), n, h, w, c, ph, pw, sh, sw, top, left, average, ho, wo,
                  _address(out))
        return
    # Padded with the operation's identity, out to the last window's far edge.
    hp, wp = max(top + h, (ho - 1) * sh + ph), max(left + w, (wo - 1) * sw + pw)
    xp = x
    if (hp, wp, top, left) != (h, w, 0, 0):
        xp = np.full((n, hp, wp, c), 0.0 if average else -np.inf, dtype=np.float32)
        xp[:, top : top + h, left : left + w] = x
    first = True
    for dy in range(ph):
        for dx in range(pw):
            window = xp[:, dy : dy + (ho - 1) * sh + 1 : sh, dx : dx + (wo - 1) * sw + 1 : sw]
            if first:
                out[...] = window
                first = False
            elif average:
                out += window
            else:
                np.maximum(out, window, out=out)
    if average:
        starts_y, starts_x = np.arange(ho) * sh - top, np.arange(wo) * sw - left
        count_y = np.minimum(starts_y + ph, h) - np.maximum(starts_y, 0)
        count_x = np.minimum(starts_x + pw, w) - np.maximum(starts_x, 0)
        out /= (count_y[:, None] * count_x[None, :]).astype(np.float32)[..., None]
