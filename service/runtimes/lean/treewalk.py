"""The compiled tree walk (numba), kept apart so the rest of the package reads as plain
Python.

Compiled once per process on first import (about a second) and cached on disk when
the package folder or ``NUMBA_CACHE_DIR`` is writable. ``nogil`` lets it run on the
inference thread while the event loop keeps serving.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LANES = 8  # trees walked in lockstep: their memory loads overlap


def _walk(x: np.ndarray, link: np.ndarray, threshold: np.ndarray, value: np.ndarray,
          roots: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover (compiled)
    n_trees = roots.shape[0]
    node = np.empty(LANES, dtype=np.int64)
    for r in range(x.shape[0]):
        for first in range(0, n_trees, LANES):
            lanes = min(LANES, n_trees - first)
            for j in range(lanes):
                node[j] = roots[first + j]
            moving = True
            while moving:
                moving = False
                for j in range(lanes):
                    at = node[j]
                    feature = link[at, 0]
                    if feature >= 0:
                        moving = True
                        if x[r, feature] <= threshold[at]:
                            node[j] = link[at, 1]
                        else:
                            node[j] = link[at, 2]
            for j in range(lanes):
                for k in range(value.shape[1]):
                    out[r, k] += value[node[j], k]


try:
    sum_leaves = njit(nogil=True, cache=True)(_walk)
except RuntimeError:  # no writable cache location: compile on every start instead
    sum_leaves = njit(nogil=True)(_walk)
