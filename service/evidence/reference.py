"""The training reference for drift, and the binning and scores serving compares with it.

A version's reference (``manifest.reference``, or ``reference.json`` beside a version
published before references existed) holds, over (a sample of) its training data:

- for each monitored feature, its distribution over bins: a numeric feature cut at the
  deciles of its training values, a categorical one by category (plus one bin for any
  other value); an image input is monitored through two statistics per image,
  ``ink_mean`` (mean pixel as a share of the input's maximum) and ``ink_share`` (share of
  pixels above half the maximum);
- the distribution of the version's own predictions on that data: the predicted class,
  or the predicted value cut at its deciles.

Drift is then the population stability index (PSI) of a window of served values against
those bins: sum over bins of (p_served - p_train) * ln(p_served / p_train), with both
shares floored at ``EPS``. PSI is symmetric, needs no assumption about the distribution's
shape, works the same for numbers and categories, and has conventional readings (< 0.1
stable, 0.1-0.25 moderate, > 0.25 major shift) that make one threshold meaningful across
features.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.batch import Batch
from service.manifest import Distribution, Reference, Task
from service.signature import Signature

BINS = 10
EPS = 1e-4
IMAGE_STATISTICS = ("ink_mean", "ink_share")


def monitored(sig: Signature, batch: Batch) -> dict[str, np.ndarray]:
    """Each monitored feature's values, one per row (numbers as float64, categories as
    objects), in a fixed order."""
    out: dict[str, np.ndarray] = {}
    for inp in sig.inputs:
        arr = batch[inp.name]
        if inp.tabular:
            for f in inp.features:
                col = arr[:, f.column]
                out[f.name] = (col if f.categories is not None or not f.numeric
                               else col.astype(np.float64))
        else:
            image = inp.spec.image if inp.spec is not None else None
            low, full = (image.value_min, image.value_max) if image is not None else (0.0, 1.0)
            # 0 = background, 1 = full ink, whatever the polarity.
            ink = (arr.reshape(len(arr), -1).astype(np.float64) - low) / ((full - low) or 1.0)
            prefix = f"{inp.name}." if len(sig.inputs) > 1 else ""
            out[prefix + "ink_mean"] = ink.mean(axis=1)
            out[prefix + "ink_share"] = (ink > 0.5).mean(axis=1)
    return out


def predicted(task: Task, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The values whose distribution stands for the version's predictions."""
    if task is Task.REGRESSION:
        return np.asarray(outputs["value"], dtype=np.float64).reshape(-1)
    return np.asarray(outputs["class_id"]).reshape(-1).astype(np.int64)


def build(sig: Signature, task: Task, n_classes: int, batch: Batch,
          outputs: dict[str, np.ndarray]) -> Reference:
    features = [_distribution(name, values) for name, values in monitored(sig, batch).items()]
    values = predicted(task, outputs)
    if task is Task.REGRESSION:
        preds = _distribution("prediction", values)
    else:
        counts = np.bincount(values, minlength=n_classes)[:n_classes]
        preds = Distribution(name="prediction", categories=list(range(n_classes)),
                             proportions=_shares(np.append(counts, 0)))
    return Reference(rows=len(batch), features=features, predictions=preds)


def _distribution(name: str, values: np.ndarray) -> Distribution:
    if values.dtype == object:
        kept = [v for v in values.tolist() if not _missing(v)]
        cats = sorted(set(kept), key=lambda v: (str(type(v)), v))[:200]
        # Placeholder shares (the bins must exist to bin the values); replaced below.
        d = Distribution(name=name, categories=cats, proportions=[0.0] * len(cats) + [1.0])
    else:
        finite = values[np.isfinite(values)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1])) if len(
            finite) else np.array([])
        d = Distribution(name=name, edges=[float(e) for e in edges],
                         proportions=[0.0] * len(edges) + [1.0])
    idx = bin_indices(d, values)
    counts = np.bincount(idx, minlength=len(d.proportions) + 1)[:len(d.proportions)]
    return d.model_copy(update={"proportions": _shares(counts)})


def bin_indices(d: Distribution, values: np.ndarray) -> np.ndarray:
    """Each value's bin; a missing value (NaN, None) gets ``len(d.proportions)``, a bin of
    its own that no score counts (the reference leaves missing values out too)."""
    missing = len(d.proportions)
    if d.edges is not None:
        v = np.asarray(values, dtype=np.float64)
        idx = np.searchsorted(np.asarray(d.edges, dtype=np.float64), v, side="right")
        idx[np.isnan(v)] = missing
        return idx.astype(np.int16)
    index = {c: i for i, c in enumerate(d.categories or [])}
    other = len(index)
    return np.fromiter((missing if _missing(v) else index.get(v, other)
                        for v in np.asarray(values, dtype=object).tolist()),
                       dtype=np.int16, count=len(values))


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def psi(reference: list[float], counts: np.ndarray) -> float:
    total = counts.sum()
    if not total:
        return 0.0
    p = np.maximum(counts / total, EPS)
    q = np.maximum(np.asarray(reference, dtype=np.float64), EPS)
    return float(np.sum((p - q) * np.log(p / q)))


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [round(float(c) / total, 6) if total else 0.0 for c in counts]
