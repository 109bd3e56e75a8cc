"""Tree ensembles of scikit-learn, packed into flat arrays and walked by one compiled
loop.

scikit-learn's ``predict_proba`` walks each tree in its own call (with joblib's
dispatch around it), which costs ~90 µs per tree whatever the batch: 18 ms for 200
trees and one row. The walk itself is pointer chasing through memory; the compiled
loop (``treewalk.py``) advances eight trees in lockstep so that their loads overlap.
Comparisons are those of scikit-learn (``x <= threshold`` goes left; the program narrows
the input to float32 first for decision trees and forests, histogram boosting compares
float64). ``from_sklearn.py`` packs the estimators.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.runtimes.lean.program import LeanFormError, Unsupported
from service.runtimes.lean.treewalk import Walker


@dataclass
class PackedTrees:
    """Every tree's nodes in one set of arrays; ``link[i]`` is (feature, left, right),
    with feature -1 at a leaf."""

    link: np.ndarray       # (nodes, 3) int32
    threshold: np.ndarray  # (nodes,) float64
    value: np.ndarray      # (nodes, outputs) float64: what a leaf contributes
    roots: np.ndarray      # (trees,) int64
    _walker: Walker | None = field(default=None, repr=False, compare=False)

    @classmethod
    def pack(cls, trees: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                    np.ndarray, np.ndarray]]) -> PackedTrees:
        """``trees``: per tree (feature, threshold, left, right, is_leaf, value)."""
        links, thresholds, values, roots = [], [], [], []
        offset = 0
        for feature, threshold, left, right, is_leaf, value in trees:
            n = len(feature)
            links.append(np.stack([np.where(is_leaf, -1, feature),
                                   np.where(is_leaf, -1, np.asarray(left) + offset),
                                   np.where(is_leaf, -1, np.asarray(right) + offset)], axis=1))
            thresholds.append(np.asarray(threshold, dtype=np.float64))
            values.append(np.asarray(value, dtype=np.float64).reshape(n, -1))
            roots.append(offset)
            offset += n
        if offset >= 2**31:
            raise Unsupported("more than 2**31 tree nodes")
        return cls(np.ascontiguousarray(np.concatenate(links), dtype=np.int32),
                   np.concatenate(thresholds), np.ascontiguousarray(np.concatenate(values)),
                   np.asarray(roots, dtype=np.int64))

    def validate(self) -> None:
        """Every link stays inside the arrays and every walk ends at a leaf: a file that
        says otherwise would send the compiled loop out of bounds."""
        n = len(self.link)
        if (self.link.shape[1] != 3 or len(self.threshold) != n or len(self.value) != n
                or len(self.roots) == 0 or self.roots.min() < 0 or self.roots.max() >= n):
            raise LeanFormError("trees: the node arrays disagree")
        inner = self.link[:, 0] >= 0
        # Children come after their parent, so a walk always moves forward and ends. (Both
        # children at once, on whole arrays: no masked copies, a third of the time.)
        first = np.minimum(self.link[:, 1], self.link[:, 2])
        last = np.maximum(self.link[:, 1], self.link[:, 2])
        if np.any(inner & ((first <= np.arange(n)) | (last >= n))):
            raise LeanFormError("trees: a link points backwards or outside the nodes")

    def leaf_sum(self, x: np.ndarray) -> np.ndarray:
        """(rows, outputs): each row's leaf values summed over the trees. Call
        ``validate`` first: the compiled walk trusts the arrays."""
        if self._walker is None:
            self._walker = Walker(self.link, self.threshold, self.value, self.roots)
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.zeros((len(x), self.value.shape[1]))
        self._walker.sum_leaves(x, out)
        return out
