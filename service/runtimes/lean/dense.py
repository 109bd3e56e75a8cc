"""A numpy forward pass for Keras models that are a plain stack of Dense layers.

For a model this small the work is a few matrix products of microseconds each, while
even a compiled ``tf.function`` call costs ~0.5 ms of TensorFlow dispatch. The weights
are read from the loaded Keras model (the committed artifact stays the source of truth)
and ``service.runtimes.lean`` checks this pass against Keras before it serves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Step = Callable[[np.ndarray], np.ndarray]


class Unsupported(Exception):
    """The model has a layer this pass does not implement; Keras keeps serving it."""


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form never overflows and is three numpy calls instead of five.
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACTIVATIONS: dict[str, Step | None] = {
    "linear": None, "relu": _relu, "sigmoid": _sigmoid, "softmax": _softmax,
    "tanh": np.tanh,
}

# Layers that are the identity at inference time.
PASS_THROUGH = {"InputLayer", "Dropout", "GaussianNoise", "GaussianDropout", "RandomRotation",
                "RandomTranslation", "RandomZoom", "RandomFlip", "RandomContrast"}


class DenseStack:
    """``raw(batch)`` for a Sequential of Normalization/Rescaling/Flatten/Dense layers."""

    def __init__(self, steps: list[Step], description: str) -> None:
        self._steps = steps
        self.description = description

    @classmethod
    def from_keras(cls, model: Any) -> DenseStack:
        steps: list[Step] = []
        kinds: list[str] = []
        affine: tuple[np.ndarray, np.ndarray] | None = None  # pending x * a + b
        for layer in getattr(model, "layers", None) or []:
            kind = type(layer).__name__
            if kind in PASS_THROUGH:
                continue
            kinds.append(kind)
            if kind in ("Normalization", "Rescaling") and affine is None and "Dense" not in kinds:
                # Folded into the first Dense layer's weights below (one matmul instead
                # of three numpy calls); applied as is if something else comes first.
                affine = _as_affine(layer, kind)
                continue
            if kind == "Flatten" and affine is not None and affine[0].size == 1:
                steps.extend(_compile_layer(layer, kind))  # a scalar affine commutes
                continue
            if kind == "Dense" and affine is not None:
                steps.extend(_compile_layer(layer, kind, affine))
                affine = None
                continue
            if affine is not None:
                a, b = (v.astype(np.float32) for v in affine)
                steps.append(lambda x, a=a, b=b: x * a + b)
                affine = None
            steps.extend(_compile_layer(layer, kind))
        if "Dense" not in kinds:
            raise Unsupported("no Dense layer")
        return cls(steps, " > ".join(kinds))

    def raw(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32)
        for step in self._steps:
            x = step(x)
        return x


def _as_affine(layer: Any, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalization or Rescaling as ``x * a + b``."""
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


def _compile_layer(layer: Any, kind: str,
                   affine: tuple[np.ndarray, np.ndarray] | None = None) -> list[Step]:
    if kind in ("Normalization", "Rescaling"):
        a, b = (x.astype(np.float32) for x in _as_affine(layer, kind))
        return [lambda x: x * a + b]
    if kind == "Flatten":
        return [lambda x: x.reshape(len(x), -1)]
    if kind == "Activation":
        return _activation(layer)
    if kind == "Dense":
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            raise Unsupported("LoRA or quantized Dense")
        w = [np.asarray(v, dtype=np.float64) for v in layer.get_weights()]
        kernel = w[0]
        bias = w[1] if len(w) > 1 else np.zeros(kernel.shape[1])
        if affine is not None:
            # (x * a + b) @ W + c  ==  x @ (a[:, None] * W) + (b @ W + c); a and b are
            # per input feature (or scalars, broadcast here).
            a, b = (np.broadcast_to(v, kernel.shape[:1]) for v in affine)
            bias = b @ kernel + bias
            kernel = a[:, None] * kernel
        k32, b32 = kernel.astype(np.float32), bias.astype(np.float32)

        def dense(x: np.ndarray) -> np.ndarray:
            out = x @ k32
            out += b32
            return out

        return [dense, *_activation(layer)]
    raise Unsupported(f"layer type {kind}")


def _activation(layer: Any) -> list[Step]:
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name not in ACTIVATIONS:
        raise Unsupported(f"activation {name}")
    fn = ACTIVATIONS[name]
    return [fn] if fn is not None else []
