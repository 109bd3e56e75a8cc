"""Keras 3 (TensorFlow backend) runtime with a compiled call.

``model.predict`` builds a data pipeline per call and costs ~50 ms whatever the
model; a ``tf.function`` with a fixed input signature (batch dimension ``None``)
is traced once at load time and then costs well under a millisecond.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import ModelLoadError
from service.manifest import Manifest
from service.observability.logs import native_stderr
from service.runtimes.base import Runtime

_import_lock = threading.Lock()
_modules: tuple[Any, Any] | None = None


def _import() -> tuple[Any, Any]:
    """tensorflow and keras, imported once with TensorFlow's native start-up lines
    turned into log records (they would break one-JSON-object-per-line logs)."""
    global _modules
    with _import_lock:
        if _modules is None:
            with native_stderr("tensorflow"):
                import keras
                import tensorflow as tf
            _modules = (tf, keras)
    return _modules


class KerasRuntime(Runtime):
    def __init__(self, model: Any, input_shape: list[int]) -> None:
        tf, _ = _import()

        self.model = model
        signature = tf.TensorSpec(shape=[None, *input_shape[1:]], dtype=tf.float32)
        # reduce_retracing is belt and braces: the signature already fixes the trace.
        self._call = tf.function(
            lambda x: model(x, training=False), input_signature=[signature], reduce_retracing=True
        )
        # Trace now, at load time, not on the first request.
        self.raw(np.zeros([1, *input_shape[1:]], dtype=np.float32))

    @classmethod
    def load(cls, path: Path, manifest: Manifest) -> KerasRuntime:
        _, keras = _import()
        try:
            # safe_mode refuses Lambda layers and other arbitrary-code deserialization.
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many types for a bad file
            raise ModelLoadError(path, f"Keras could not load the model: {exc}") from exc
        return cls(model, manifest.inputs.shape)

    def raw(self, batch: np.ndarray) -> np.ndarray:
        out = self._call(np.asarray(batch, dtype=np.float32))
        return np.asarray(out, dtype=np.float32)
