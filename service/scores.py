"""The metrics that score a version: one definition for the model card (publishing) and
for the live scores from ground-truth feedback (service/evidence/), so the two can be
compared number for number.

In numpy, with scikit-learn's definitions (tests/test_scores.py checks them against
scikit-learn's own functions): a server needs no scikit-learn to score ground truth.
"""

from __future__ import annotations

import numpy as np

from service.manifest import Task

# The metric a version is judged by (and whether higher is better): publishing compares it
# with the baselines, the comparison of two live versions with each other.
PRIMARY = {Task.CLASSIFICATION: ("balanced_accuracy", True), Task.REGRESSION: ("mse", False)}


def classification_metrics(y_true: np.ndarray, proba: np.ndarray | None,
                           pred: np.ndarray | None = None,
                           n_classes: int | None = None) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro F1 of the predicted class; log loss and ROC
    AUC when there are probabilities. ``y_true`` and ``pred`` are class indices."""
    y_true = np.asarray(y_true)
    if pred is None:
        assert proba is not None
        pred = proba.argmax(axis=1)
    pred = np.asarray(pred)
    out = {
        "accuracy": float(np.mean(y_true == pred)),
        "balanced_accuracy": _balanced_accuracy(y_true, pred),
        "macro_f1": float(np.mean([_f1(y_true, pred, c)
                                   for c in np.union1d(y_true, pred)])),
    }
    if proba is not None:
        k = proba.shape[1]
        out["log_loss"] = _log_loss(y_true, _renormalised(proba))
        present = np.unique(y_true)
        if k == 2:
            if len(present) == 2:
                out["roc_auc"] = _roc_auc(y_true == 1, proba[:, 1])
            out["f1"] = _f1(y_true, pred, 1)
        elif len(present) == k:
            out["roc_auc_ovr_macro"] = float(np.mean([_roc_auc(y_true == c, proba[:, c])
                                                      for c in range(k)]))
    elif n_classes == 2:
        out["f1"] = _f1(y_true, pred, 1)
    return {k: float(v) for k, v in out.items()}


def _balanced_accuracy(y_true: np.ndarray, pred: np.ndarray) -> float:
    """The mean recall over the classes that occur in ``y_true`` (a class only predicted
    has no recall: scikit-learn leaves it out, with a warning)."""
    return float(np.mean([np.mean(pred[y_true == c] == c) for c in np.unique(y_true)]))


def _f1(y_true: np.ndarray, pred: np.ndarray, label: object) -> float:
    tp = np.sum((pred == label) & (y_true == label))
    fp = np.sum((pred == label) & (y_true != label))
    fn = np.sum((pred != label) & (y_true == label))
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 0.0  # zero_division: 0


def _log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    eps = np.finfo(proba.dtype).eps
    p = np.clip(proba, eps, 1 - eps)
    return float(-np.mean(np.log(p[np.arange(len(y_true)), y_true.astype(np.intp)])))


def _roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve as the Mann-Whitney statistic: the share of
    (positive, negative) pairs the score orders right, ties counting half (the same area
    as the trapezoids under scikit-learn's curve)."""
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    first = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # ranks start at 1
    ranks = np.empty(len(values))
    ranks[order] = average[group]
    return ranks


def _renormalised(proba: np.ndarray) -> np.ndarray:
    # float32 rows sum to 1 only within ~1e-7.
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    return p / p.sum(axis=1, keepdims=True)


def regression_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    error = y_true - pred
    mse = float(np.mean(error ** 2))
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    residual = float(np.sum(error ** 2))
    # scikit-learn's r2_score with force_finite: a constant target scores 1 if predicted
    # exactly, else 0.
    r2 = (1.0 - residual / total) if total else (1.0 if residual == 0 else 0.0)
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(error))),
            "r2": r2}


def task_metrics(task: Task, y_true: np.ndarray, outputs: dict[str, np.ndarray],
                 n_classes: int) -> dict[str, float]:
    """The metrics of a version's named outputs (``LoadedModel.predict``)."""
    if task is Task.REGRESSION:
        return regression_metrics(y_true, np.asarray(outputs["value"], dtype=np.float64))
    return classification_metrics(y_true, outputs.get("probabilities"), outputs["class_id"],
                                  n_classes)
