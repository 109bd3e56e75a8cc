"""k-nearest-neighbours class probabilities, as scikit-learn's KNeighborsClassifier
computes them: the k fitted points nearest in Minkowski distance vote for their class,
equally (``uniform``) or by inverse distance (``distance``; a point at distance 0 takes
the whole vote with any others at 0)."""

from __future__ import annotations

import numpy as np

# Rows compared at once: bounds the (rows, fitted points, features) difference array.
CHUNK = 64


class Neighbours:
    def __init__(self, fit_x: np.ndarray, fit_y: np.ndarray, classes: int, k: int,
                 weights: str, p: float) -> None:
        self.fit_x = np.ascontiguousarray(fit_x, dtype=np.float64)
        self.fit_y = fit_y
        self.classes = classes
        self.k = k
        self.weights = weights
        self.p = p

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((len(x), self.classes))
        for start in range(0, len(x), CHUNK):
            part = x[start:start + CHUNK]
            index, dist = self._nearest(part)
            out[start:start + len(part)] = self._vote(index, dist)
        return out

    def _nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's k nearest fitted points and their distances, nearest first, ties by
        fitted order. Distances are computed exactly (the difference, not the expanded
        dot product) so that near ties order as scikit-learn's trees order them."""
        diff = np.abs(x[:, None, :] - self.fit_x[None, :, :])
        if self.p == 2:
            dist = np.sqrt(np.einsum("rnf,rnf->rn", diff, diff))
        elif self.p == 1:
            dist = diff.sum(axis=2)
        else:
            dist = (diff ** self.p).sum(axis=2) ** (1.0 / self.p)
        k = self.k
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(dist, part, axis=1)
        order = np.lexsort((part, near))  # by distance, then fitted order; row by row
        index = np.take_along_axis(part, order, axis=1)
        # Where more points than k share the k-th distance, argpartition picked some of
        # them at random: take the lowest fitted indices, the order a stable sort gives.
        kth = near.max(axis=1, keepdims=True)
        for r in np.flatnonzero((dist <= kth).sum(axis=1) > k):
            tied = np.flatnonzero(dist[r] <= kth[r])
            index[r] = tied[np.lexsort((tied, dist[r, tied]))[:k]]
        return index, np.take_along_axis(dist, index, axis=1)

    def _vote(self, index: np.ndarray, dist: np.ndarray) -> np.ndarray:
        labels = self.fit_y[index]
        if self.weights == "uniform":
            w = np.ones_like(dist)
        else:
            with np.errstate(divide="ignore"):
                w = 1.0 / dist
            exact = dist == 0
            hit = exact.any(axis=1)
            w[hit] = exact[hit].astype(np.float64)
        votes = np.zeros((len(index), self.classes))
        np.add.at(votes, (np.arange(len(index))[:, None], labels), w)
        return votes / votes.sum(axis=1, keepdims=True)
