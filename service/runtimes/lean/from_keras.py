"""A Keras Sequential model as a lean program: its layers one by one, with the weights
read from the loaded model.

Input scaling in front of the first Dense layer is folded into its weights, and a
BatchNormalization after a Conv2D or Dense layer into theirs (one matrix product instead
of three numpy calls). Layers that are the identity at inference (dropout, noise, random
augmentation) are left out. Anything else raises Unsupported and Keras keeps serving the
model. Runs where Keras is installed: at publishing, and in a server that loads a
version without a lean form.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.runtimes.lean.ops import ACTIVATIONS
from service.runtimes.lean.program import Program, Unsupported

PASS_THROUGH = {"InputLayer", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
                "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
                "RandomRotation", "RandomTranslation", "RandomZoom", "RandomFlip",
                "RandomContrast", "RandomBrightness", "RandomCrop"}
POOLS = {"MaxPooling2D": "max_pool2d", "AveragePooling2D": "average_pool2d"}
GLOBAL_POOLS = {"GlobalMaxPooling2D": "global_max_pool2d",
                "GlobalAveragePooling2D": "global_average_pool2d"}


class _Builder:
    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = [{"op": "float32"}]
        self.arrays: dict[str, np.ndarray] = {}
        self.kinds: list[str] = []
        # x * scale + offset not yet emitted: folded into the next Dense if nothing else
        # comes first.
        self.pending: tuple[np.ndarray, np.ndarray] | None = None

    def array(self, key: str, value: np.ndarray) -> str:
        name = f"{len(self.ops)}.{key}"
        self.arrays[name] = np.ascontiguousarray(value, dtype=np.float32)
        return name

    def flush(self) -> None:
        if self.pending is not None:
            scale, offset = self.pending
            self.pending = None
            self.ops.append({"op": "affine", "scale": self.array("scale", scale),
                             "offset": self.array("offset", offset)})

    def activation(self, layer: Any) -> None:
        fn = getattr(layer, "activation", None)
        name = getattr(fn, "__name__", str(fn))
        if name == "linear":
            return
        if name not in ACTIVATIONS:
            raise Unsupported(f"activation {name}")
        self.ops.append({"op": name})

    def weighted(self, op: dict[str, Any], kernel: np.ndarray, bias: np.ndarray) -> None:
        op["kernel"] = self.array("kernel", kernel)
        op["bias"] = self.array("bias", bias)
        self.ops.append(op)

    def fold_batch_norm(self, layer: Any) -> bool:
        """Fold into the Conv2D or Dense just emitted when it has no activation of its
        own; False when there is none to fold into."""
        last = self.ops[-1]
        if last["op"] not in ("conv2d", "dense") or self.kinds[-2:-1] not in (["Conv2D"],
                                                                               ["Dense"]):
            return False
        scale, offset = _batch_norm(layer)
        kernel = self.arrays[last["kernel"]].astype(np.float64)
        bias = self.arrays[last["bias"]].astype(np.float64)
        self.arrays[last["kernel"]] = (kernel * scale).astype(np.float32)
        self.arrays[last["bias"]] = (bias * scale + offset).astype(np.float32)
        return True


def program(model: Any) -> Program:
    if type(model).__name__ != "Sequential":
        raise Unsupported(f"a {type(model).__name__} model (only Sequential stacks)")
    b = _Builder()
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in PASS_THROUGH:
            continue
        b.kinds.append(kind)
        _layer(b, layer, kind)
    b.flush()
    if not any(op["op"] in ("dense", "conv2d") for op in b.ops):
        raise Unsupported("no Dense or Conv2D layer")
    kind = "layers" if not any(op["op"] == "conv2d" for op in b.ops) else "conv"
    return Program(kind, b.ops, b.arrays, " > ".join(b.kinds))


def _layer(b: _Builder, layer: Any, kind: str) -> None:
    if kind in ("Normalization", "Rescaling"):
        scale, offset = _as_affine(layer, kind)
        if b.pending is None and not any(op["op"] in ("dense", "conv2d") for op in b.ops):
            b.pending = (scale, offset)
        else:
            b.flush()
            b.pending = (scale, offset)
            b.flush()
        return
    if kind == "Dense":
        _check_plain(layer)
        w = [np.asarray(v, dtype=np.float64) for v in layer.get_weights()]
        kernel = w[0]
        bias = w[1] if len(w) > 1 else np.zeros(kernel.shape[1])
        if b.pending is not None:
            # (x * a + b) @ W + c  ==  x @ (a[:, None] * W) + (b @ W + c); a and b are
            # per input feature (or scalars, broadcast here).
            a, o = (np.broadcast_to(v, kernel.shape[:1]) for v in b.pending)
            bias = o @ kernel + bias
            kernel = a[:, None] * kernel
            b.pending = None
        b.weighted({"op": "dense"}, kernel, bias)
        b.activation(layer)
        return
    if kind in ("Flatten", "Reshape") and b.pending is not None and b.pending[0].size == 1 \
            and b.pending[1].size == 1:
        pass  # a scalar affine commutes with a change of shape: still folded into Dense
    else:
        b.flush()
    if kind == "Conv2D":
        _check_plain(layer)
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise Unsupported("channels_first convolution")
        if tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1:
            raise Unsupported("dilated or grouped convolution")
        if layer.padding not in ("same", "valid"):
            raise Unsupported(f"{layer.padding} padding")
        w = [np.asarray(v, dtype=np.float64) for v in layer.get_weights()]
        bias = w[1] if len(w) > 1 else np.zeros(w[0].shape[-1])
        b.weighted({"op": "conv2d", "strides": [int(s) for s in layer.strides],
                    "padding": layer.padding}, w[0], bias)
        b.activation(layer)
        return
    if kind == "BatchNormalization":
        if _axis(layer) != -1:
            raise Unsupported("BatchNormalization on an axis other than the last")
        if not b.fold_batch_norm(layer):
            scale, offset = _batch_norm(layer)
            b.ops.append({"op": "affine", "scale": b.array("scale", scale),
                          "offset": b.array("offset", offset)})
        return
    if kind == "Activation":
        b.activation(layer)
        return
    if kind == "ReLU":
        if (layer.max_value is not None or float(layer.negative_slope) != 0.0
                or float(layer.threshold) != 0.0):
            raise Unsupported("a ReLU with a cap, slope or threshold")
        b.ops.append({"op": "relu"})
        return
    if kind == "Softmax":
        if layer.axis not in (-1, [-1]):
            raise Unsupported("softmax over an axis other than the last")
        b.ops.append({"op": "softmax"})
        return
    if kind == "Flatten":
        b.ops.append({"op": "flatten"})
        return
    if kind == "Reshape":
        b.ops.append({"op": "reshape", "shape": [int(v) for v in layer.target_shape]})
        return
    if kind in POOLS:
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise Unsupported("channels_first pooling")
        b.ops.append({"op": POOLS[kind], "pool_size": [int(v) for v in layer.pool_size],
                      "strides": [int(v) for v in layer.strides], "padding": layer.padding})
        return
    if kind in GLOBAL_POOLS:
        if getattr(layer, "keepdims", False) or layer.data_format != "channels_last":
            raise Unsupported("global pooling that keeps dimensions or is channels_first")
        b.ops.append({"op": GLOBAL_POOLS[kind]})
        return
    raise Unsupported(f"layer type {kind}")


def _check_plain(layer: Any) -> None:
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        raise Unsupported("a LoRA or quantized layer")


def _axis(layer: Any) -> int:
    axis = layer.axis
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if not isinstance(axis, int):
        return 0
    rank = len(layer.input.shape) if getattr(layer, "input", None) is not None else None
    return -1 if axis == -1 or (rank is not None and axis == rank - 1) else axis


def _batch_norm(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNormalization as x * scale + offset, per channel."""
    mean = np.asarray(layer.moving_mean, dtype=np.float64)
    var = np.asarray(layer.moving_variance, dtype=np.float64)
    gamma = np.asarray(layer.gamma, dtype=np.float64) if layer.gamma is not None else 1.0
    beta = np.asarray(layer.beta, dtype=np.float64) if layer.beta is not None else 0.0
    scale = gamma / np.sqrt(var + float(layer.epsilon))
    return np.broadcast_to(scale, mean.shape), beta - mean * scale


def _as_affine(layer: Any, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalization or Rescaling as ``x * scale + offset``."""
    if kind == "Normalization":
        if getattr(layer, "invert", False):
            raise Unsupported("inverted Normalization")
        mean = np.asarray(layer.mean, dtype=np.float64).reshape(-1)
        std = np.maximum(np.sqrt(np.asarray(layer.variance, dtype=np.float64).reshape(-1)),
                         1e-7)  # keras.backend.epsilon()
        return 1.0 / std, -mean / std
    scale = np.asarray(layer.scale, dtype=np.float64).reshape(-1)
    offset = np.asarray(layer.offset, dtype=np.float64).reshape(-1)
    return scale, offset
