"""Tree ensembles of scikit-learn, packed into flat arrays and walked by one compiled
(numba) loop.

scikit-learn's ``predict_proba`` walks each tree in its own call (with joblib's
dispatch around it), which costs ~90 µs per tree whatever the batch: 18 ms for 200
trees and one row. The walk itself is pointer chasing through memory; the compiled
loop below advances eight trees in lockstep so that their memory loads overlap.
Comparisons are those of scikit-learn (``x <= threshold`` goes left; decision trees and
forests narrow the input to float32 first, histogram boosting compares float64), and
``service.runtimes.lean`` checks the result against the estimator before it serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.runtimes.lean.dense import Unsupported
from service.runtimes.lean.treewalk import sum_leaves


@dataclass
class PackedTrees:
    """Every tree's nodes in one set of arrays; ``link[i]`` is (feature, left, right),
    with feature -1 at a leaf."""

    link: np.ndarray       # (nodes, 3) int32
    threshold: np.ndarray  # (nodes,) float64
    value: np.ndarray      # (nodes, outputs) float64: what a leaf contributes
    roots: np.ndarray      # (trees,) int64

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

    def leaf_sum(self, x: np.ndarray) -> np.ndarray:
        """(rows, outputs): each row's leaf values summed over the trees."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.zeros((len(x), self.value.shape[1]))
        sum_leaves(x, self.link, self.threshold, self.value, self.roots, out)
        return out


# --- scikit-learn estimators -> (packed trees, how to combine leaf values) -------------


def _sk_tree(tree: Any, normalise: bool) -> tuple:
    t = tree.tree_
    is_leaf = t.children_left == -1
    value = t.value[:, 0, :] if t.value.shape[1] == 1 else t.value.reshape(t.node_count, -1)
    if normalise:
        # DecisionTreeClassifier.predict_proba divides each leaf by its total.
        total = value.sum(axis=1, keepdims=True)
        value = value / np.where(total == 0.0, 1.0, total)
    return t.feature, t.threshold, t.children_left, t.children_right, is_leaf, value


def _hgb_tree(predictor: Any) -> tuple:
    nodes = predictor.nodes
    if np.any(nodes["is_categorical"]):
        raise Unsupported("categorical splits")
    return (nodes["feature_idx"], nodes["num_threshold"], nodes["left"], nodes["right"],
            nodes["is_leaf"].astype(bool), nodes["value"])


class Forest:
    """``raw(batch)`` for a (pipeline ending in a) forest, tree or histogram GBM."""

    def __init__(self, packed: PackedTrees, combine: str, prefix: list[Any],
                 extra: Any, description: str, narrow: bool) -> None:
        self.packed = packed
        self._narrow = narrow
        self._combine = combine
        self._prefix = prefix
        self._extra = extra
        self.description = description

    @classmethod
    def from_sklearn(cls, estimator: Any, raw_output: str, nullable: bool = False) -> Forest:
        prefix, final = _split_pipeline(estimator)
        kind = type(final).__name__
        names = [type(step).__name__ for _, step in getattr(estimator, "steps", [])[:-1]]
        names.append(kind)
        if nullable and not (prefix and isinstance(prefix[0], _Impute)):
            # The walk has no missing-value branches (histogram boosting's own NaN
            # handling): missing values must be imputed before the trees.
            raise Unsupported("missing values reach the trees")
        if kind in ("RandomForestClassifier", "ExtraTreesClassifier",
                    "DecisionTreeClassifier"):
            if raw_output != "probabilities" or getattr(final, "n_outputs_", 1) != 1:
                raise Unsupported("multi-output or non-probability forest")
            trees = getattr(final, "estimators_", [final])
            packed = PackedTrees.pack([_sk_tree(t, normalise=True) for t in trees])
            return cls(packed, "mean", prefix, None, " > ".join(names), narrow=True)
        if kind in ("RandomForestRegressor", "ExtraTreesRegressor", "DecisionTreeRegressor"):
            if getattr(final, "n_outputs_", 1) != 1:
                raise Unsupported("multi-output regressor")
            trees = getattr(final, "estimators_", [final])
            packed = PackedTrees.pack([_sk_tree(t, normalise=False) for t in trees])
            return cls(packed, "mean", prefix, None, " > ".join(names), narrow=True)
        if kind in ("HistGradientBoostingRegressor", "HistGradientBoostingClassifier"):
            if getattr(final, "n_trees_per_iteration_", 1) != 1:
                raise Unsupported("multi-class gradient boosting")
            packed = PackedTrees.pack([_hgb_tree(p[0]) for p in final._predictors])
            combine = "hgb_proba" if kind.endswith("Classifier") else "hgb_value"
            return cls(packed, combine, prefix, final, " > ".join(names), narrow=False)
        raise Unsupported(f"estimator {kind}")

    def raw(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch)
        for step in self._prefix:
            x = step(x)
        if self._narrow:  # scikit-learn's trees take float32 (DTYPE) whatever they are given
            x = x.astype(np.float32)
        total = self.packed.leaf_sum(x)
        if self._combine == "mean":
            out = total / len(self.packed.roots)
            return out[:, 0] if out.shape[1] == 1 else out
        # Histogram GBM: baseline + sum of leaves on the raw scale, then the loss's link.
        final = self._extra
        raw = final._baseline_prediction.reshape(1, -1) + total
        if self._combine == "hgb_value":
            return np.asarray(final._loss.link.inverse(raw[:, 0]))
        return np.asarray(final._loss.predict_proba(raw[:, 0]))


def _split_pipeline(estimator: Any) -> tuple[list[Any], Any]:
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return [], estimator
    prefix = [_compile_transform(step) for _, step in steps[:-1]]
    return prefix, steps[-1][1]


def _compile_transform(step: Any) -> Any:
    kind = type(step).__name__
    if kind == "SimpleImputer":
        stats = np.asarray(step.statistics_, dtype=np.float64)
        if np.isnan(stats).any() and not getattr(step, "keep_empty_features", False):
            raise Unsupported("an imputer that drops empty columns")
        if getattr(step, "add_indicator", False):
            raise Unsupported("an imputer with missing indicators")
        missing = step.missing_values
        if not (isinstance(missing, float) and np.isnan(missing)):
            raise Unsupported("an imputer of values other than NaN")
        return _Impute(stats)
    if kind == "StandardScaler":
        mean = np.asarray(step.mean_ if step.with_mean else 0.0, dtype=np.float64)
        scale = np.asarray(step.scale_ if step.with_std else 1.0, dtype=np.float64)

        def scale_in_place(x: np.ndarray) -> np.ndarray:
            # In the input's float dtype, as scikit-learn does.
            out = np.array(x, dtype=x.dtype if x.dtype.kind == "f" else np.float64)
            out -= mean
            out /= scale
            return out

        return scale_in_place
    raise Unsupported(f"pipeline step {kind}")


class _Impute:
    """SimpleImputer: a missing value (NaN) takes its column's fitted statistic."""

    def __init__(self, stats: np.ndarray) -> None:
        self.stats = stats

    def __call__(self, x: np.ndarray) -> np.ndarray:
        missing = np.isnan(x)
        if not np.count_nonzero(missing):
            return x
        return np.where(missing, self.stats.astype(x.dtype), x)
