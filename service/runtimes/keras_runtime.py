"""Keras 3 (TensorFlow backend) runtime with a compiled call.

``model.predict`` builds a data pipeline per call and costs ~50 ms whatever the
model; a ``tf.function`` with a fixed input signature (batch dimension ``None``)
is traced once at load time and then costs well under a millisecond. A model with
several inputs is called with them in the manifest's order (the model's own).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from service.batch import Batch
from service.errors import ModelLoadError
from service.manifest import InputSpec, Manifest
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


def tensor_dtype(spec: InputSpec) -> str:
    """The dtype an input reaches the network in (publishing derives the features'
    dtype from the network's input, so a tabular input's features share one)."""
    if spec.dtype is not None:
        return str(spec.dtype)
    return (spec.features or [])[0].dtype


class KerasRuntime(Runtime):
    def __init__(self, model: Any, inputs: list[InputSpec]) -> None:
        tf, _ = _import()

        self.model = model
        self.inputs = inputs
        self._names = [i.name for i in inputs]
        self._dtypes = [tensor_dtype(i) for i in inputs]
        self._np_dtypes = [object if d == "string" else d for d in self._dtypes]
        specs = [tf.TensorSpec(shape=[None, *i.shape[1:]], dtype=d)
                 for i, d in zip(inputs, self._dtypes, strict=True)]
        if len(specs) == 1:
            fn = lambda x: model(x, training=False)  # noqa: E731
        else:
            fn = lambda *xs: model(list(xs), training=False)  # noqa: E731
        # reduce_retracing is belt and braces: the signature already fixes the trace.
        self._call = tf.function(fn, input_signature=specs, reduce_retracing=True)
        # Trace now, at load time, not on the first request.
        self._call(*(np.zeros([1, *i.shape[1:]], dtype=d).astype(str) if d is object
                     else np.zeros([1, *i.shape[1:]], dtype=d)
                     for i, d in zip(inputs, self._np_dtypes, strict=True)))

    @classmethod
    def load(cls, path: Path, manifest: Manifest) -> KerasRuntime:
        _, keras = _import()
        try:
            # safe_mode refuses Lambda layers and other arbitrary-code deserialization.
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many types for a bad file
            raise ModelLoadError(path, f"Keras could not load the model: {exc}") from exc
        return cls(model, manifest.inputs)

    def model_input(self, batch: Batch) -> list[np.ndarray]:
        return [np.asarray(batch[n], dtype=d) for n, d in zip(self._names, self._np_dtypes,
                                                              strict=True)]

    def raw(self, batch: Batch) -> np.ndarray:
        return np.asarray(self._call(*self.model_input(batch)))
