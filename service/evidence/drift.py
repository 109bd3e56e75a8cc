"""Drift: each version's latest served rows against its training reference.

A window per version holds, for its last ``size`` rows, the bin of every monitored
feature and of the prediction (a ring of small integers, so a row costs a few bytes and
the counts per bin are kept up to date as rows come and go). Scores are read from the
counts: PSI per feature and of the predictions (service/evidence/reference.py), and the
share of values outside the training range of numeric features.

Threads: the evidence writer adds rows (a whole burst per version at once); readers (the
model status, the metrics scrape) take scores; each window has its own lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.batch import Batch
from service.evidence import reference
from service.manifest import Reference, Task
from service.model import LoadedModel
from service.signature import Signature


@dataclass(frozen=True)
class DriftScores:
    rows: int                       # in the window
    seen: int                       # ever added to it
    prediction_psi: float
    features: dict[str, tuple[float, float | None]]  # name -> (psi, out-of-range share)

    def as_dict(self) -> dict[str, object]:
        return {"rows": self.rows, "seen": self.seen,
                "prediction_psi": round(self.prediction_psi, 6),
                "features": {n: {"psi": round(p, 6)} | (
                    {"out_of_range": round(o, 6)} if o is not None else {})
                    for n, (p, o) in self.features.items()}}


class DriftWindow:
    def __init__(self, sig: Signature, task: Task, ref: Reference, size: int) -> None:
        self.sig, self.task, self.ref, self.size = sig, task, ref, size
        self.names = [d.name for d in ref.features]
        # Training range of each numeric feature (None: categories, image statistics).
        ranges = {f.name: (f.lo, f.hi) for inp in sig.inputs if inp.tabular
                  for f in inp.features if f.lo is not None and f.categories is None}
        self.ranges = [ranges.get(n) for n in self.names]
        n = len(self.names)
        self._bins = np.zeros((size, n + 1), dtype=np.int16)  # last column: prediction
        self._outside = np.zeros((size, n), dtype=bool)
        # One more count per distribution than it has bins: missing values, not scored.
        self._counts = [np.zeros(len(d.proportions) + 1, dtype=np.int64)
                        for d in [*ref.features, ref.predictions]]
        self._outside_counts = np.zeros(n, dtype=np.int64)
        self._pos = 0
        self._filled = 0
        self._seen = 0
        self._lock = threading.Lock()

    def add(self, batch: Batch, outputs: dict[str, np.ndarray]) -> None:
        values = reference.monitored(self.sig, batch)
        preds = reference.predicted(self.task, outputs)
        dists = [*self.ref.features, self.ref.predictions]
        columns = [values.get(d.name) for d in self.ref.features] + [preds]
        bins = np.column_stack([reference.bin_indices(d, col)
                                for d, col in zip(dists, columns, strict=True)])
        outside = np.column_stack([
            np.zeros(len(batch), dtype=bool) if r is None or col is None else
            _outside(np.asarray(col, dtype=np.float64), r)
            for r, col in zip(self.ranges, columns, strict=False)]) if self.names else (
            np.zeros((len(batch), 0), dtype=bool))
        seen = len(bins)
        if len(bins) > self.size:
            bins, outside = bins[-self.size:], outside[-self.size:]
        with self._lock:
            self._seen += seen
            self._put(bins, outside)

    def _put(self, bins: np.ndarray, outside: np.ndarray) -> None:
        n = len(bins)  # at most size: the slots below are distinct
        slots = (self._pos + np.arange(n)) % self.size
        # The ring fills slot 0, 1, ... first: a slot below _filled holds a row, which
        # leaves the counts as it is overwritten.
        taken = slots[slots < self._filled]
        if len(taken):
            old_bins, old_out = self._bins[taken], self._outside[taken]
            for j, counts in enumerate(self._counts):
                counts -= np.bincount(old_bins[:, j], minlength=len(counts))[:len(counts)]
            self._outside_counts -= old_out.sum(axis=0)
        self._bins[slots] = bins
        self._outside[slots] = outside
        for j, counts in enumerate(self._counts):
            counts += np.bincount(bins[:, j], minlength=len(counts))[:len(counts)]
        self._outside_counts += outside.sum(axis=0)
        self._pos = (self._pos + n) % self.size
        self._filled = min(self.size, self._filled + n)

    def scores(self) -> DriftScores:
        with self._lock:
            counts = [c.copy() for c in self._counts]
            outside = self._outside_counts.copy()
            rows, seen = self._filled, self._seen
        dists = [*self.ref.features, self.ref.predictions]
        psis = [reference.psi(d.proportions, c[:-1])
                for d, c in zip(dists, counts, strict=True)]
        features = {name: (psis[j], (float(outside[j]) / rows if rows else 0.0)
                           if self.ranges[j] is not None else None)
                    for j, name in enumerate(self.names)}
        return DriftScores(rows, seen, psis[-1], features)


def _outside(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    lo, hi = bounds
    return (values < lo) | (values > hi)


class DriftMonitor:
    """Every version's window, made on its first rows (again when its config's window
    size changes)."""

    def __init__(self, window: Callable[[str], int | None]) -> None:
        self._window = window
        self._windows: dict[tuple[str, int], DriftWindow] = {}

    def add(self, model: LoadedModel, parts: list[tuple[Batch, dict[str, np.ndarray]]]
            ) -> None:
        size = self._window(model.name)
        if not parts or size is None or model.reference is None:
            return
        key = (model.name, model.version)
        w = self._windows.get(key)
        if w is None or w.size != size or w.ref is not model.reference:
            w = DriftWindow(model.signature, model.manifest.task, model.reference, size)
            self._windows[key] = w
        batch = Batch.concat([b for b, _ in parts])
        outputs = {k: np.concatenate([o[k] for _, o in parts]) for k in parts[0][1]}
        w.add(batch, outputs)

    def scores(self) -> dict[tuple[str, int], DriftScores]:
        return {key: w.scores() for key, w in list(self._windows.items())}
