"""Convolution and pooling kernels with Keras's semantics (channels_last, float32).

They run on numpy, BLAS (through numpy's matmul) and the C loops of ``_convloops.c``
(``convloops.py``: compiled at install time, called through ctypes; numpy loops where no
C compiler was there). No numba, no LLVM.

``Conv2D`` prepares a kernel once (at load time) and picks how to run it; ``conv2d`` is
the one-call form. Measured on the digits CNN's shapes (2-core Xeon, one BLAS thread):

- 3x3, stride 1, >= 16 input channels: Winograd F(2x2, 3x3). Each 4x4 input tile is
  transformed (C loop), 16 BLAS products of (tiles, C) @ (C, F) replace one of
  (pixels, 9C) @ (9C, F), and a C loop transforms back, adding the bias and ReLU.
  2.25x fewer multiplications: 1.3-1.7x faster than im2col at batch 64, 1.8x at batch
  1, and its float32 error is no larger.
- otherwise im2col plus one BLAS product: every kh x kw window copied into a matrix
  row. With few channels (the first layer, C=1) the matrix is built transposed, so the
  copy runs along image rows rather than 9-float windows: 2x faster there. The bias,
  ReLU and a fused pool then take one C pass (1.4-1.8x faster than numpy's).
  A plain compiled convolution loop was 1.5-3x slower than either: BLAS sets the pace.

A following MaxPooling2D can be fused into the ``Conv2D`` call (``pool=``): the pooled
output is all that is written, which saves a pass over the largest array of the net.
Stand-alone pools are one C pass (numpy's strided views took 2.5x as long).
"same" padding follows TensorFlow: total pad = max((ceil(H/s) - 1) * s + k - H, 0),
the odd one at the bottom/right; padded cells do not count in a pool.

The C loops and BLAS run without the GIL (the inference thread leaves the event loop
alone). Instances are read-only after construction: safe from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from service.runtimes.lean import convloops
from service.runtimes.lean.program import Unsupported

Pair = int | Sequence[int]
PADDINGS = ("same", "valid")
WINOGRAD_MIN_CHANNELS = 16  # below this the 16 products are too thin for BLAS
TRANSPOSED_MAX_CHANNELS = 4  # above this the row-wise copy loses its long runs
CHUNK_IMAGES = 64  # images per pass: bounds the temporaries, no slower than one pass

# Winograd F(2x2, 3x3) (Lavin & Gray 2015): kernel g -> G g G^T; the input and output
# transforms (B^T and A^T) are written out in convloops.py.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def _pair(value: Pair, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _as_input(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, C), got shape {x.shape}")
    # Keras layers compute in float32; one dtype and layout also means one compiled loop.
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise Unsupported(f"padding {padding!r} (only 'same' and 'valid')")


def _pads(size: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """(output size, pad before, pad after) along one axis."""
    if padding == "valid":
        if size < k:
            raise ValueError(f"a window of {k} does not fit an input of {size} ('valid')")
        return (size - k) // s + 1, 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def _geometry(shape: tuple[int, ...], size: tuple[int, int], strides: tuple[int, int],
              padding: str) -> tuple[int, int, tuple[int, int, int, int]]:
    """Output height and width, and the (top, bottom, left, right) padding."""
    ho, top, bottom = _pads(shape[1], size[0], strides[0], padding)
    wo, left, right = _pads(shape[2], size[1], strides[1], padding)
    return ho, wo, (top, bottom, left, right)


def _padded(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = pads
    if not any(pads):
        return x
    n, h, w, c = x.shape
    # One allocation and one copy: np.pad costs several times this for small arrays.
    xp = np.zeros((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    xp[:, top : top + h, left : left + w] = x
    return xp


class Conv2D:
    """Keras ``Conv2D``: kernel (kh, kw, C, F) in Keras's layout, bias (F,) or None,
    activation None/"linear"/"relu". Call it with x (N, H, W, C).

    ``pool`` fuses a following ``MaxPooling2D(pool, padding="valid")`` (strides = pool
    size, Keras's default) into the call. im2col lays the pixels out by their place in
    the pool window, so the pool is a max over contiguous blocks, and adds the bias and
    ReLU after it (both commute with a max) on the pooled cells only; Winograd with a
    2x2 pool takes the max of each 2x2 output tile it computes."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None = None,
                 strides: Pair = (1, 1), padding: str = "same",
                 dilation_rate: Pair = (1, 1), activation: str | None = None,
                 pool: Pair | None = None) -> None:
        _check_padding(padding)
        if _pair(dilation_rate, "dilation_rate") != (1, 1):
            raise Unsupported(f"dilation_rate {dilation_rate!r} (only 1)")
        if activation not in (None, "linear", "relu"):
            raise Unsupported(f"activation {activation!r} in Conv2D (only linear and relu)")
        kernel = np.asarray(kernel, dtype=np.float32)
        if kernel.ndim != 4:
            raise ValueError(f"kernel must be (kh, kw, C, F), got shape {kernel.shape}")
        kh, kw, c, f = kernel.shape
        if bias is not None and np.shape(bias) != (f,):
            raise ValueError(f"bias must be ({f},), got shape {np.shape(bias)}")
        self.size, self.channels, self.filters = (kh, kw), c, f
        self.strides = _pair(strides, "strides")
        self.padding = padding
        self.relu = activation == "relu"
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float32)
        self._bias = np.zeros(f, np.float32) if bias is None else self.bias  # for the loops
        self.pool = (1, 1) if pool is None else _pair(pool, "pool")
        if self.size == (3, 3) and self.strides == (1, 1) and c >= WINOGRAD_MIN_CHANNELS:
            self.method = "winograd"
            u = np.einsum("ai,ijcf,bj->abcf", _G, kernel.astype(np.float64), _G)
            self._weights = u.reshape(16, c, f).astype(np.float32)
        else:
            self.method = "im2col-transposed" if c <= TRANSPOSED_MAX_CHANNELS else "im2col"
            self._weights = np.ascontiguousarray(kernel.reshape(kh * kw * c, f))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _as_input(x)
        if x.shape[3] != self.channels:
            raise ValueError(f"x has {x.shape[3]} channels, the kernel expects "
                             f"{self.channels}")
        if len(x) <= CHUNK_IMAGES:
            return self._call(x)
        # The temporaries grow ~10x the output (im2col, Winograd tiles): bounded per chunk.
        first = self._call(x[:CHUNK_IMAGES])
        out = np.empty((len(x), *first.shape[1:]), dtype=np.float32)
        out[:CHUNK_IMAGES] = first
        for start in range(CHUNK_IMAGES, len(x), CHUNK_IMAGES):
            out[start : start + CHUNK_IMAGES] = self._call(x[start : start + CHUNK_IMAGES])
        return out

    def _call(self, x: np.ndarray) -> np.ndarray:
        ho, wo, pads = _geometry(x.shape, self.size, self.strides, self.padding)
        if self.method == "winograd":
            if self.pool in ((1, 1), (2, 2)):
                return self._winograd(x, ho, wo, pads)
            return max_pool2d(self._winograd(x, ho, wo, pads), self.pool)
        po, _, _ = _pads(ho, self.pool[0], self.pool[0], "valid")
        qo, _, _ = _pads(wo, self.pool[1], self.pool[1], "valid")
        products = self._im2col(x, po, qo, pads)
        if self.pool == (1, 1) and self.bias is None and not self.relu:
            return products.reshape(len(x), po, qo, self.filters)
        out = np.empty((len(x), po, qo, self.filters), dtype=np.float32)
        blocks = products.reshape(self.pool[0] * self.pool[1], -1, self.filters)
        convloops.max_bias_relu(blocks, self._bias, self.relu, out.reshape(blocks.shape[1:]))
        return out

    def _im2col(self, x: np.ndarray, po: int, qo: int,
                pads: tuple[int, int, int, int]) -> np.ndarray:
        """The products (ph*pw*N*po*qo, F), one block of N*po*qo per place in the pool
        window (without a pool: one block, po and qo are Ho and Wo)."""
        (kh, kw), (sh, sw), (ph, pw) = self.size, self.strides, self.pool
        c, n = self.channels, len(x)
        xp = _padded(x, pads)
        s0, s1, s2, s3 = xp.strides
        # Output pixels ordered (pool row, pool column, N, pooled row, pooled column).
        pixels = (ph, pw, n, po, qo)
        steps = (s1 * sh, s2 * sw, s0, s1 * sh * ph, s2 * sw * pw)
        if self.method == "im2col-transposed":
            view = as_strided(xp, (kh, kw, c, *pixels), (s1, s2, s3, *steps), writeable=False)
            cols = np.ascontiguousarray(view).reshape(kh * kw * c, -1).T
        else:
            # Window axes (kh, kw, C): at stride 1 each kernel row is one run of kw*C floats.
            view = as_strided(xp, (*pixels, kh, kw, c), (*steps, s1, s2, s3), writeable=False)
            cols = view.reshape(-1, kh * kw * c)
        return cols @ self._weights

    def _winograd(self, x: np.ndarray, ho: int, wo: int,
                  pads: tuple[int, int, int, int]) -> np.ndarray:
        n = len(x)
        th, tw = -(-ho // 2), -(-wo // 2)
        v = np.empty((16, n * th * tw, self.channels), dtype=np.float32)
        convloops.winograd_in(x, pads[0], pads[2], th, tw, v)
        m = np.matmul(v, self._weights)
        pooled = self.pool == (2, 2)
        if pooled:
            ho, _, _ = _pads(ho, 2, 2, "valid")
            wo, _, _ = _pads(wo, 2, 2, "valid")
        out = np.empty((n, ho, wo, self.filters), dtype=np.float32)
        convloops.winograd_out(m, self._bias, self.relu, pooled, th, tw, out)
        return out


def conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None,
           strides: Pair = (1, 1), padding: str = "same",
           dilation_rate: Pair = (1, 1)) -> np.ndarray:
    """Keras ``Conv2D`` without activation, in one call (prepare a ``Conv2D`` to reuse)."""
    return Conv2D(kernel, bias, strides, padding, dilation_rate)(x)


def _pool2d(x: np.ndarray, pool_size: Pair, strides: Pair | None, padding: str,
            average: bool) -> np.ndarray:
    x = _as_input(x)
    _check_padding(padding)
    size = _pair(pool_size, "pool_size")
    steps = size if strides is None else _pair(strides, "strides")
    ho, wo, (top, _, left, _) = _geometry(x.shape, size, steps, padding)
    out = np.empty((len(x), ho, wo, x.shape[3]), dtype=np.float32)
    convloops.pool(x, size[0], size[1], steps[0], steps[1], top, left, average, out)
    return out


def max_pool2d(x: np.ndarray, pool_size: Pair = (2, 2), strides: Pair | None = None,
               padding: str = "valid") -> np.ndarray:
    """Keras ``MaxPooling2D`` (strides default to pool_size)."""
    return _pool2d(x, pool_size, strides, padding, average=False)


def average_pool2d(x: np.ndarray, pool_size: Pair = (2, 2), strides: Pair | None = None,
                   padding: str = "valid") -> np.ndarray:
    """Keras ``AveragePooling2D``: with "same" padding, the mean of the real cells only."""
    return _pool2d(x, pool_size, strides, padding, average=True)


def global_average_pool2d(x: np.ndarray, keepdims: bool = False) -> np.ndarray:
    """Keras ``GlobalAveragePooling2D``: (N, H, W, C) -> (N, C)."""
    return _as_input(x).mean(axis=(1, 2), keepdims=keepdims, dtype=np.float32)


def global_max_pool2d(x: np.ndarray, keepdims: bool = False) -> np.ndarray:
    """Keras ``GlobalMaxPooling2D``: (N, H, W, C) -> (N, C)."""
    return _as_input(x).max(axis=(1, 2), keepdims=keepdims)
