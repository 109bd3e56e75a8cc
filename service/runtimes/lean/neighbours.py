"""k-nearest-neighbours class probabilities, as scikit-learn's KNeighborsClassifier
computes them: the k fitted points nearest in Minkowski distance vote for their class,
equally (``uniform``) or by inverse distance (``distance``; a point at distance 0 takes
the whole vote with any others at 0)."""

from __future__ import annotations

import numpy as np

# Rows compared at once: bounds the (rows, candidates, features) difference array.
CHUNK = 64
# Euclidean: candidates kept from the expanded dot product beyond k, then measured exactly.
CANDIDATES = 32


class Neighbours:
    def __init__(self, fit_x: np.ndarray, fit_y: np.ndarray, classes: int, k: int,
                 weights: str, p: float) -> None:
        self.fit_x = np.ascontiguousarray(fit_x, dtype=np.float64)
        self.fit_y = fit_y
        self.classes = classes
        self.k = k
        self.weights = weights
        self.p = p
        self._sq_norms = np.einsum("ij,ij->i", self.fit_x, self.fit_x)
        self._minus_2_fit_t = np.ascontiguousarray(-2.0 * self.fit_x.T)
        self._all = np.arange(len(self.fit_x))[None, :]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((len(x), self.classes))
        for start in range(0, len(x), CHUNK):
            part = x[start:start + CHUNK]
            index, dist = self._nearest(part)
            out[start:start + len(part)] = self._vote(index, dist)
        return out

    def _nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = self.k + CANDIDATES
        if self.p != 2 or m >= len(self.fit_x):
            return self._among(x, self._all)
        # Candidates from the expanded dot product (one BLAS call for the chunk), then the
        # exact distances among them.
        # Squared distances less each row's own |x|^2, which does not change its order.
        approx = x @ self._minus_2_fit_t
        approx += self._sq_norms
        cand = np.argpartition(approx, m - 1, axis=1)[:, :m]
        index, dist = self._among(x, cand)
        # Sure only where the m-th approximate squared distance clears the k-th exact one
        # by more than the expansion's rounding; other rows are measured in full.
        x_sq = np.einsum("ij,ij->i", x, x)
        edge = np.take_along_axis(approx, cand, axis=1).max(axis=1) + x_sq
        unsure = edge - dist[:, -1] ** 2 <= 1e-9 * (self._sq_norms.max() + x_sq)
        for r in np.flatnonzero(unsure):
            index[r], dist[r] = (v[0] for v in self._among(x[r : r + 1], self._all))
        return index, dist

    def _among(self, x: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's k nearest among its candidates (fitted indices, one row per input
        row or one shared row) and their distances: nearest first, ties by fitted order.
        Distances are computed exactly (the difference, not the expanded dot product)
        so that near ties order as scikit-learn's trees order them."""
        cand = np.broadcast_to(cand, (len(x), cand.shape[1]))
        diff = np.abs(x[:, None, :] - self.fit_x[cand])
        if self.p == 2:
            dist = np.sqrt(np.einsum("rnf,rnf->rn", diff, diff))
        elif self.p == 1:
            dist = diff.sum(axis=2)
        else:
            dist = (diff ** self.p).sum(axis=2) ** (1.0 / self.p)
        k = self.k
        pos = np.argpartition(dist, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(dist, pos, axis=1)
        fitted = np.take_along_axis(cand, pos, axis=1)
        pos = np.take_along_axis(pos, np.lexsort((fitted, near)), axis=1)
        # Where more points than k share the k-th distance, argpartition picked some of
        # them at random: take the lowest fitted indices, the order a stable sort gives.
        kth = near.max(axis=1, keepdims=True)
        for r in np.flatnonzero((dist <= kth).sum(axis=1) > k):
            tied = np.flatnonzero(dist[r] <= kth[r])
            pos[r] = tied[np.lexsort((cand[r, tied], dist[r, tied]))[:k]]
        return np.take_along_axis(cand, pos, axis=1), np.take_along_axis(dist, pos, axis=1)

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
