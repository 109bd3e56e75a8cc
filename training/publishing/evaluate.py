"""Scoring: the metrics that fit the task, trivial baselines, and the held-out set run
through the loaded version exactly as the service runs a request."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.batch import Batch
from service.manifest import Task
from service.model import LoadedModel

# The card's metrics are the service's: live feedback scores a version with the same code.
from service.scores import PRIMARY as PRIMARY
from service.scores import classification_metrics as classification_metrics
from service.scores import regression_metrics as regression_metrics
from service.scores import task_metrics as task_metrics
from service.signature import Signature
from service.tensors import from_columns

_CHUNK = 1024


def mean_metrics(per_fold: list[dict[str, float]]) -> dict[str, float]:
    """Mean and standard deviation over CV folds, as ``<metric>`` and ``<metric>_std``."""
    out: dict[str, float] = {}
    for key in per_fold[0]:
        values = np.array([m[key] for m in per_fold])
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std())
    return out


def baselines(task: Task, y_test: np.ndarray, y_train: np.ndarray | None,
              n_classes: int) -> dict[str, dict[str, float]]:
    """What a model that ignores its inputs scores on the same held-out set."""
    ref, where = (y_train, "training") if y_train is not None else (y_test, "test")
    if task is Task.REGRESSION:
        mean = float(np.mean(ref))
        return {f"mean of {where} targets": regression_metrics(y_test,
                                                               np.full(len(y_test), mean))}
    counts = np.bincount(np.asarray(ref, dtype=np.int64), minlength=n_classes)
    proba = np.tile(np.eye(n_classes)[counts.argmax()], (len(y_test), 1))
    return {f"majority class of the {where} labels": classification_metrics(
        y_test, proba, n_classes=n_classes)}


def beats(task: Task, metrics: dict[str, float],
          others: dict[str, dict[str, float]]) -> list[str]:
    """The baselines the primary metric does not beat, as sentences ([] when it beats
    them all)."""
    key, higher = PRIMARY[task]
    value = metrics[key]
    out = []
    for name, other in others.items():
        if key not in other:
            continue
        if not (value > other[key] if higher else value < other[key]):
            out.append(f"{key} {value:.4f} does not beat '{name}' ({other[key]:.4f})")
    return out


# --- the held-out set through the serving path ------------------------------------------


def batches(sig: Signature, data: dict[str, Any], rows: int) -> list[Batch]:
    """Held-out inputs (feature columns as arrays, image inputs as arrays) as validated
    batches, through the same validation a request goes through."""
    out = []
    for start in range(0, rows, _CHUNK):
        stop = min(rows, start + _CHUNK)
        parts = {k: _json_column(v[start:stop]) if k in sig.features else v[start:stop]
                 for k, v in data.items()}
        out.append(from_columns(sig, parts, _CHUNK, "X_test"))
    return out


def _json_column(values: np.ndarray) -> list[Any]:
    """A column as the JSON values a client would send (NaN and None -> null)."""
    out = values.tolist()
    if values.dtype.kind in "fO":
        out = [None if v is None or (isinstance(v, float) and v != v) else v for v in out]
    return out


def predict_all(model: LoadedModel, parts: Sequence[Batch]) -> dict[str, np.ndarray]:
    results = [model.predict(b) for b in parts]
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def test_set_digest(parts: Sequence[Batch], y: np.ndarray) -> str:
    """SHA-256 of the validated held-out inputs and targets: a replay that rebuilds the
    same set gets the same digest."""
    h = hashlib.sha256()
    for batch in parts:
        for name in sorted(batch.arrays):
            arr = batch.arrays[name]
            h.update(name.encode())
            if arr.dtype == object:
                h.update(repr([[_canonical(v) for v in row] for row in arr.reshape(len(arr), -1)
                               .tolist()]).encode())
            else:
                h.update(np.ascontiguousarray(arr).tobytes())
    y = np.asarray(y)
    h.update(repr(y.tolist()).encode() if y.dtype == object else
             np.ascontiguousarray(y).tobytes())
    return h.hexdigest()


def _canonical(v: Any) -> Any:
    return None if isinstance(v, float) and v != v else v
