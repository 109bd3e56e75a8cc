"""The operations a lean program may use, and how each becomes a numpy step.

This table is the whole vocabulary of ``lean.npz``: an operation not named here, or one
whose parameters do not check out, makes the file unusable (the framework then serves
the version). Kernels live beside it: dense maths here, convolutions in ``conv.py``,
tree walks in ``forest.py``, neighbour votes in ``neighbours.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from service.runtimes.lean.program import LeanFormError

Step = Callable[[np.ndarray], np.ndarray]
Arrays = dict[str, np.ndarray]


def _array(op: dict[str, Any], key: str, arrays: Arrays, ndim: int | None = None) -> np.ndarray:
    name = op.get(key)
    if not isinstance(name, str) or name not in arrays:
        raise LeanFormError(f"{op['op']}: {key} names no array in the file")
    value = arrays[name]
    if value.dtype.kind not in "fiub" or (ndim is not None and value.ndim != ndim):
        raise LeanFormError(f"{op['op']}: {key} is a {value.dtype} array of {value.ndim} "
                            "dimensions")
    return value


def _ints(op: dict[str, Any], key: str, n: int) -> tuple[int, ...]:
    value = op.get(key)
    if (not isinstance(value, list) or len(value) != n
            or not all(isinstance(v, int) and 0 < v <= 1 << 16 for v in value)):
        raise LeanFormError(f"{op['op']}: {key} must be {n} positive integers")
    return tuple(value)


def _choice(op: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = op.get(key)
    if value not in allowed:
        raise LeanFormError(f"{op['op']}: {key} must be one of {', '.join(allowed)}")
    return str(value)


# --- element-wise ---------------------------------------------------------------------


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form never overflows and is three numpy calls instead of five.
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACTIVATIONS: dict[str, Step] = {"relu": relu, "sigmoid": sigmoid, "softmax": softmax,
                                "tanh": np.tanh}


def _activation(op: dict[str, Any], arrays: Arrays) -> Step:
    return ACTIVATIONS[op["op"]]


def _float(dtype: type) -> Callable[[dict[str, Any], Arrays], Step]:
    # Always a copy: the activations work in place, and the caller's batch goes on to the
    # payload log, drift and shadow after the call.
    def build(op: dict[str, Any], arrays: Arrays) -> Step:
        return lambda x: np.array(x, dtype=dtype)
    return build


# --- layers -----------------------------------------------------------------------------


def _affine(op: dict[str, Any], arrays: Arrays) -> Step:
    a, b = _array(op, "scale", arrays), _array(op, "offset", arrays)
    return lambda x: x * a + b


def _dense(op: dict[str, Any], arrays: Arrays) -> Step:
    kernel = _array(op, "kernel", arrays, 2)
    bias = _array(op, "bias", arrays, 1)
    if bias.shape[0] != kernel.shape[1]:
        raise LeanFormError("dense: bias and kernel disagree")

    def dense(x: np.ndarray) -> np.ndarray:
        out = x @ kernel
        out += bias
        return out

    return dense


def _flatten(op: dict[str, Any], arrays: Arrays) -> Step:
    return lambda x: x.reshape(len(x), -1)


def _reshape(op: dict[str, Any], arrays: Arrays) -> Step:
    shape = op.get("shape")
    if not isinstance(shape, list) or not all(isinstance(v, int) and v > 0 for v in shape):
        raise LeanFormError("reshape: shape must be positive integers")
    return lambda x: x.reshape(len(x), *shape)


def _conv2d(op: dict[str, Any], arrays: Arrays, fused: tuple[bool, Any] = (False, None)
            ) -> Step:
    from service.runtimes.lean import conv

    kernel = _array(op, "kernel", arrays, 4)
    bias = _array(op, "bias", arrays, 1) if op.get("bias") is not None else None
    strides = _ints(op, "strides", 2)
    padding = _choice(op, "padding", ("same", "valid"))
    relu, pool = fused
    try:
        return conv.Conv2D(kernel, bias, strides, padding,
                           activation="relu" if relu else None, pool=pool)
    except ValueError as exc:
        raise LeanFormError(f"conv2d: {exc}") from exc


def _fusable_pool(op: dict[str, Any] | None) -> tuple[int, int] | None:
    """A max pool the convolution before it can take on (valid, strides = pool size)."""
    if op is None or op.get("op") != "max_pool2d" or op.get("padding") != "valid":
        return None
    size = op.get("pool_size")
    return tuple(size) if size == op.get("strides") else None  # type: ignore[return-value]


def _pool(kind: str) -> Callable[[dict[str, Any], Arrays], Step]:
    def build(op: dict[str, Any], arrays: Arrays) -> Step:
        from service.runtimes.lean import conv

        fn = conv.max_pool2d if kind == "max" else conv.average_pool2d
        size, strides = _ints(op, "pool_size", 2), _ints(op, "strides", 2)
        padding = _choice(op, "padding", ("same", "valid"))
        return lambda x: fn(x, size, strides, padding)
    return build


def _global_pool(kind: str) -> Callable[[dict[str, Any], Arrays], Step]:
    def build(op: dict[str, Any], arrays: Arrays) -> Step:
        from service.runtimes.lean import conv

        return conv.global_max_pool2d if kind == "max" else conv.global_average_pool2d
    return build


# --- scikit-learn steps -------------------------------------------------------------


def _impute(op: dict[str, Any], arrays: Arrays) -> Step:
    stats = _array(op, "statistics", arrays, 1).astype(np.float64)

    def impute(x: np.ndarray) -> np.ndarray:
        missing = np.isnan(x)
        if not np.count_nonzero(missing):
            return x
        return np.where(missing, stats.astype(x.dtype), x)

    return impute


def _standardise(op: dict[str, Any], arrays: Arrays) -> Step:
    mean, scale = _array(op, "mean", arrays), _array(op, "scale", arrays)

    def standardise(x: np.ndarray) -> np.ndarray:
        # In the input's float dtype, as scikit-learn does.
        out = np.array(x, dtype=x.dtype if x.dtype.kind == "f" else np.float64)
        out -= mean
        out /= scale
        return out

    return standardise


def _trees(op: dict[str, Any], arrays: Arrays) -> Step:
    from service.runtimes.lean.forest import PackedTrees

    packed = PackedTrees(link=np.ascontiguousarray(_array(op, "link", arrays, 2), np.int32),
                         threshold=_array(op, "threshold", arrays, 1).astype(np.float64),
                         value=np.ascontiguousarray(_array(op, "value", arrays, 2), np.float64),
                         roots=_array(op, "roots", arrays, 1).astype(np.int64))
    packed.validate()
    width = int(packed.link[:, 0].max()) + 1  # the compiled walk does not bounds-check
    combine = _choice(op, "combine", ("mean", "sum"))
    n = len(packed.roots)
    baseline = (_array(op, "baseline", arrays, 1).astype(np.float64)
                if op.get("baseline") is not None else np.zeros(1))

    def trees(x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] < width:
            raise ValueError(f"the trees read {width} features; the input has shape {x.shape}")
        total = packed.leaf_sum(x)
        return total / n if combine == "mean" else total + baseline

    return trees


def _link(op: dict[str, Any], arrays: Arrays) -> Step:
    # The inverse links of histogram boosting's losses, on a (rows, 1) raw score.
    link = _choice(op, "link", ("identity", "log", "logit"))
    if link == "identity":
        return lambda raw: raw[:, 0]
    if link == "log":
        return lambda raw: np.exp(raw[:, 0])

    def binary(raw: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
        return np.stack([1.0 - p, p], axis=1)

    return binary


def _column(op: dict[str, Any], arrays: Arrays) -> Step:
    return lambda x: x[:, 0]


def _neighbours(op: dict[str, Any], arrays: Arrays) -> Step:
    from service.runtimes.lean.neighbours import Neighbours

    k = op.get("k")
    power = op.get("p")
    classes = op.get("classes")
    if not isinstance(k, int) or k < 1 or not isinstance(classes, int) or classes < 1:
        raise LeanFormError("knn: k and classes must be positive integers")
    if not isinstance(power, (int, float)) or power < 1:
        raise LeanFormError("knn: p must be a number >= 1")
    fit_x = _array(op, "fit_x", arrays, 2).astype(np.float64)
    fit_y = _array(op, "fit_y", arrays, 1).astype(np.int64)
    if len(fit_x) != len(fit_y) or len(fit_x) < k or fit_y.min() < 0 or fit_y.max() >= classes:
        raise LeanFormError("knn: the fitted points, their classes and k disagree")
    return Neighbours(fit_x, fit_y, classes, k,
                      _choice(op, "weights", ("uniform", "distance")), float(power))


OPS: dict[str, Callable[[dict[str, Any], Arrays], Step]] = {
    "float32": _float(np.float32), "float64": _float(np.float64),
    "affine": _affine, "dense": _dense, "flatten": _flatten, "reshape": _reshape,
    **{name: _activation for name in ACTIVATIONS},
    "conv2d": _conv2d, "max_pool2d": _pool("max"), "average_pool2d": _pool("average"),
    "global_max_pool2d": _global_pool("max"), "global_average_pool2d": _global_pool("average"),
    "impute": _impute, "standardise": _standardise,
    "trees": _trees, "link": _link, "column": _column, "knn": _neighbours,
}


def compile_ops(ops: list[dict[str, Any]], arrays: Arrays) -> list[Step]:
    steps = []
    i = 0
    while i < len(ops):
        op = ops[i]
        build = OPS.get(op.get("op"))  # type: ignore[arg-type]
        if build is None:
            raise LeanFormError(f"unknown operation {op.get('op')!r}")
        if build is _conv2d:
            # conv2d > relu > max_pool2d run as one call: the pooled cells are all that
            # is written (the same numbers: ReLU and a max commute).
            nxt = ops[i + 1] if i + 1 < len(ops) else None
            relu = nxt is not None and nxt.get("op") == "relu"
            after = ops[i + 1 + relu] if i + 1 + relu < len(ops) else None
            pool = _fusable_pool(after)
            steps.append(_conv2d(op, arrays, (relu, pool)))
            i += 1 + relu + (pool is not None)
            continue
        steps.append(build(op, arrays))
        i += 1
    return steps
