"""The tree walk: ``_treewalk.c``, compiled when the package is installed and called
through ctypes (which releases the GIL, so the event loop keeps serving meanwhile), or
a numpy walk, level by level over all trees, where no C compiler was available at
install time (about ten times slower for one row; logged once).
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging

import numpy as np

log = logging.getLogger("modelserve.runtimes.lean")

_i64, _ptr = ctypes.c_int64, ctypes.c_void_p


def _load() -> ctypes.CDLL | None:
    spec = importlib.util.find_spec("service.runtimes.lean._treewalk")
    if spec is None or spec.origin is None:
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError as exc:  # pragma: no cover (a broken build)
        log.warning("compiled tree walk not loadable (%s); walking trees in numpy", exc)
        return None
    lib.sum_leaves.restype = None
    lib.sum_leaves.argtypes = [_ptr, _i64, _i64, _ptr, _ptr, _ptr, _i64, _ptr, _i64, _ptr]
    return lib


_LIB = _load()
COMPILED = _LIB is not None


class Walker:
    """``sum_leaves(x, out)`` for one packed ensemble: out[r] += the value of the leaf
    each tree sends row r to. The node arrays are held (and their addresses taken) once."""

    def __init__(self, link: np.ndarray, threshold: np.ndarray, value: np.ndarray,
                 roots: np.ndarray) -> None:
        self.link, self.threshold, self.value, self.roots = link, threshold, value, roots
        self._static = (link.ctypes.data, threshold.ctypes.data, value.ctypes.data,
                        value.shape[1], roots.ctypes.data, len(roots))
        if not COMPILED:
            log.warning("the compiled tree walk was not built at install time (no C "
                        "compiler?); walking trees in numpy, slower")
            # Leaves loop to themselves with an infinite threshold: every walk can take
            # the same number of steps.
            leaf = link[:, 0] < 0
            index = np.arange(len(link))
            self._feature = np.where(leaf, 0, link[:, 0])
            self._children = np.stack([np.where(leaf, index, link[:, 1]),
                                       np.where(leaf, index, link[:, 2])], axis=1)
            self._threshold = np.where(leaf, np.inf, threshold)

    def sum_leaves(self, x: np.ndarray, out: np.ndarray) -> None:
        if COMPILED:
            link, threshold, value, outputs, roots, trees = self._static
            _LIB.sum_leaves(x.ctypes.data, x.shape[0], x.shape[1], link, threshold, value,
                            outputs, roots, trees, out.ctypes.data)
            return
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        rows = np.arange(len(x))[:, None]
        while True:
            right = x[rows, self._feature[node]] > self._threshold[node]
            moved = self._children[node, right.astype(np.intp)]
            if np.array_equal(moved, node):
                break
            node = moved
        out += self.value[node].sum(axis=1)
