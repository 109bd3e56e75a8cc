"""The metrics that score a version: one definition for the model card (publishing) and
for the live scores from ground-truth feedback (service/evidence/), so the two can be
compared number for number.

scikit-learn's metrics are imported at the first score, not with the module: a server
that serves lean runtimes imports scikit-learn only once ground truth arrives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.manifest import Task


def _skm() -> Any:
    from sklearn import metrics

    return metrics

# The metric a version is judged by (and whether higher is better): publishing compares it
# with the baselines, the comparison of two live versions with each other.
PRIMARY = {Task.CLASSIFICATION: ("balanced_accuracy", True), Task.REGRESSION: ("mse", False)}


def classification_metrics(y_true: np.ndarray, proba: np.ndarray | None,
                           pred: np.ndarray | None = None,
                           n_classes: int | None = None) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro F1 of the predicted class; log loss and ROC
    AUC when there are probabilities. ``y_true`` and ``pred`` are class indices."""
    skm = _skm()
    if pred is None:
        assert proba is not None
        pred = proba.argmax(axis=1)
    out = {
        "accuracy": skm.accuracy_score(y_true, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, pred),
        "macro_f1": skm.f1_score(y_true, pred, average="macro"),
    }
    if proba is not None:
        k = proba.shape[1]
        out["log_loss"] = skm.log_loss(y_true, _renormalised(proba), labels=range(k))
        if k == 2:
            if len(np.unique(y_true)) == 2:
                out["roc_auc"] = skm.roc_auc_score(y_true, proba[:, 1])
            out["f1"] = skm.f1_score(y_true, pred)
        elif len(np.unique(y_true)) == k:
            out["roc_auc_ovr_macro"] = skm.roc_auc_score(y_true, proba, multi_class="ovr")
    elif n_classes == 2:
        out["f1"] = skm.f1_score(y_true, pred)
    return {k: float(v) for k, v in out.items()}


def _renormalised(proba: np.ndarray) -> np.ndarray:
    # float32 rows sum to 1 only within ~1e-7, which log_loss warns about.
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    return p / p.sum(axis=1, keepdims=True)


def regression_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    skm = _skm()
    mse = skm.mean_squared_error(y_true, pred)
    return {"mse": float(mse), "rmse": float(np.sqrt(mse)),
            "mae": float(skm.mean_absolute_error(y_true, pred)),
            "r2": float(skm.r2_score(y_true, pred))}


def task_metrics(task: Task, y_true: np.ndarray, outputs: dict[str, np.ndarray],
                 n_classes: int) -> dict[str, float]:
    """The metrics of a version's named outputs (``LoadedModel.predict``)."""
    if task is Task.REGRESSION:
        return regression_metrics(y_true, np.asarray(outputs["value"], dtype=np.float64))
    return classification_metrics(y_true, outputs.get("probabilities"), outputs["class_id"],
                                  n_classes)
