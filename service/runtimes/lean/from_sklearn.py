"""A fitted scikit-learn estimator (or Pipeline) as a lean program: imputation and
scaling steps, then a tree ensemble or a k-nearest-neighbours classifier.

Reads the live estimator, so it runs where scikit-learn is installed: at publishing, and
in a server that loads a version without a lean form.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.runtimes.lean.forest import PackedTrees
from service.runtimes.lean.program import Program, Unsupported

FORESTS = ("RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier")
FOREST_REGRESSORS = ("RandomForestRegressor", "ExtraTreesRegressor", "DecisionTreeRegressor")
BOOSTING = ("HistGradientBoostingRegressor", "HistGradientBoostingClassifier")
# The inverse links histogram boosting's losses apply to the raw score.
LINKS = {"HalfSquaredError": "identity", "AbsoluteError": "identity",
         "PinballLoss": "identity", "HuberLoss": "identity", "HalfPoissonLoss": "log",
         "HalfGammaLoss": "log", "HalfTweedieLoss": "log", "HalfBinomialLoss": "logit"}


def program(estimator: Any, raw_output: str, nullable: bool = False) -> Program:
    steps = getattr(estimator, "steps", None)
    prefix, final = (steps[:-1], steps[-1][1]) if steps is not None else ([], estimator)
    ops: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    imputes = False
    for i, (_, step) in enumerate(prefix):
        op = _transform(step, f"step{i}", arrays)
        imputes = imputes or (i == 0 and op["op"] == "impute")
        ops.append(op)
    kind = type(final).__name__
    names = [type(step).__name__ for _, step in prefix] + [kind]
    if kind in BOOSTING:
        if nullable and not imputes:
            # The walk has no missing-value branches (histogram boosting's own NaN
            # handling): missing values must be imputed before the trees.
            raise Unsupported("missing values reach the trees")
        return _boosting(final, kind, ops, arrays, names)
    if nullable and not imputes:
        raise Unsupported("missing values reach the estimator")
    if kind in FORESTS or kind in FOREST_REGRESSORS:
        if getattr(final, "n_outputs_", 1) != 1:
            raise Unsupported("a multi-output estimator")
        classifier = kind in FORESTS
        if classifier and raw_output != "probabilities":
            raise Unsupported("a forest classifier read for anything but probabilities")
        trees = getattr(final, "estimators_", [final])
        arrays.update(_arrays("trees", PackedTrees.pack(
            [_sk_tree(t, normalise=classifier) for t in trees])))
        # scikit-learn's trees compare in float32 (its DTYPE) whatever they are given.
        ops += [{"op": "float32"}, _trees_op("trees", "mean")]
        if not classifier:
            ops.append({"op": "column"})
        return Program("trees", ops, arrays, " > ".join(names))
    if kind == "KNeighborsClassifier":
        return _neighbours(final, raw_output, ops, arrays, names)
    raise Unsupported(f"estimator {kind}")


def _transform(step: Any, key: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
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
        arrays[f"{key}.statistics"] = stats
        return {"op": "impute", "statistics": f"{key}.statistics"}
    if kind == "StandardScaler":
        n = int(step.n_features_in_)
        arrays[f"{key}.mean"] = np.broadcast_to(
            np.asarray(step.mean_ if step.with_mean else 0.0, dtype=np.float64), (n,)).copy()
        arrays[f"{key}.scale"] = np.broadcast_to(
            np.asarray(step.scale_ if step.with_std else 1.0, dtype=np.float64), (n,)).copy()
        return {"op": "standardise", "mean": f"{key}.mean", "scale": f"{key}.scale"}
    raise Unsupported(f"pipeline step {kind}")


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


def _boosting(final: Any, kind: str, ops: list[dict[str, Any]],
              arrays: dict[str, np.ndarray], names: list[str]) -> Program:
    if getattr(final, "n_trees_per_iteration_", 1) != 1:
        raise Unsupported("multi-class gradient boosting")
    link = LINKS.get(type(final._loss).__name__)
    if link is None:
        raise Unsupported(f"the loss {type(final._loss).__name__}")
    arrays.update(_arrays("trees", PackedTrees.pack(
        [_hgb_tree(p[0]) for p in final._predictors])))
    arrays["trees.baseline"] = np.asarray(final._baseline_prediction,
                                          dtype=np.float64).reshape(-1)
    op = _trees_op("trees", "sum")
    op["baseline"] = "trees.baseline"
    # Boosting compares the float64 input itself.
    ops += [{"op": "float64"}, op, {"op": "link", "link": link}]
    return Program("trees", ops, arrays, " > ".join(names))


def _neighbours(final: Any, raw_output: str, ops: list[dict[str, Any]],
                arrays: dict[str, np.ndarray], names: list[str]) -> Program:
    if raw_output != "probabilities" or getattr(final, "outputs_2d_", False):
        raise Unsupported("a multi-output or non-probability k-NN")
    metric = final.effective_metric_
    params = dict(final.effective_metric_params_ or {})
    if metric == "euclidean" and not params:
        p = 2.0
    elif metric == "manhattan" and not params:
        p = 1.0
    elif metric == "minkowski" and set(params) <= {"p"}:
        p = float(params.get("p", final.p))
    else:
        raise Unsupported(f"k-NN metric {metric}")
    if final.weights not in ("uniform", "distance"):
        raise Unsupported("k-NN with a weight function")
    arrays["knn.fit_x"] = np.asarray(final._fit_X, dtype=np.float64)
    arrays["knn.fit_y"] = np.asarray(final._y, dtype=np.int64)
    ops += [{"op": "float64"},
            {"op": "knn", "fit_x": "knn.fit_x", "fit_y": "knn.fit_y", "k": int(final.n_neighbors),
             "classes": len(final.classes_), "weights": final.weights, "p": p}]
    return Program("neighbours", ops, arrays, " > ".join(names))


def _arrays(key: str, packed: PackedTrees) -> dict[str, np.ndarray]:
    return {f"{key}.link": packed.link, f"{key}.threshold": packed.threshold,
            f"{key}.value": packed.value, f"{key}.roots": packed.roots}


def _trees_op(key: str, combine: str) -> dict[str, Any]:
    return {"op": "trees", "link": f"{key}.link", "threshold": f"{key}.threshold",
            "value": f"{key}.value", "roots": f"{key}.roots", "combine": combine}
