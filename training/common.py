"""What every trainer hands to the publisher, and the helpers they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics as skm

from service.manifest import (
    Evaluation,
    Feature,
    Framework,
    ImageSpec,
    InputSpec,
    RawOutput,
    Target,
    Task,
)

SEED = 42


@dataclass
class TrainedModel:
    """A fitted model plus everything its manifest and model card need."""

    name: str
    recipe: str
    description: str
    framework: Framework
    estimator: Any
    task: Task
    raw_output: RawOutput
    inputs: InputSpec
    evaluation: Evaluation
    hyperparameters: dict[str, Any]
    sample_inputs: np.ndarray
    # For the model card's plots: the held-out truth and the model's answers
    # (class ids or values), and learning curves as named series.
    y_test: np.ndarray
    y_test_pred: np.ndarray
    curves: dict[str, list[float]] = field(default_factory=dict)
    curves_xlabel: str = "epoch"
    labels: list[str] | None = None
    target: Target | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FeatureInfo:
    unit: str
    description: str


def tabular_input(x_train: np.ndarray, names: list[str], info: dict[str, FeatureInfo],
                  input_name: str = "features") -> InputSpec:
    """Feature metadata with the range actually seen in the training rows."""
    lo = np.nanmin(x_train, axis=0)
    hi = np.nanmax(x_train, axis=0)
    feats = [
        Feature(name=n, unit=info[n].unit, description=info[n].description,
                min=float(lo[i]), max=float(hi[i]))
        for i, n in enumerate(names)
    ]
    return InputSpec(name=input_name, shape=[-1, len(names)], kind="tabular", features=feats)


def mnist_input() -> InputSpec:
    return InputSpec(
        name="image",
        shape=[-1, 28, 28],
        kind="image",
        image=ImageSpec(
            height=28, width=28, value_min=0.0, value_max=255.0, foreground="light-on-dark",
            description="MNIST-style grayscale digit: raw pixel values 0-255, white ink on black, "
                        "size-normalised into 20x20 and centred by centre of mass in 28x28.",
        ),
    )


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    pred = proba.argmax(axis=1)
    out = {
        "accuracy": skm.accuracy_score(y_true, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, pred),
        "macro_f1": skm.f1_score(y_true, pred, average="macro"),
        "log_loss": skm.log_loss(y_true, _renormalised(proba), labels=range(proba.shape[1])),
    }
    if proba.shape[1] == 2:
        out["roc_auc"] = skm.roc_auc_score(y_true, proba[:, 1])
        out["f1"] = skm.f1_score(y_true, pred)
    elif len(np.unique(y_true)) == proba.shape[1]:
        out["roc_auc_ovr_macro"] = skm.roc_auc_score(y_true, proba, multi_class="ovr")
    return {k: round(float(v), 6) for k, v in out.items()}


def _renormalised(proba: np.ndarray) -> np.ndarray:
    # float32 rows sum to 1 only within ~1e-7, which log_loss warns about.
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    return p / p.sum(axis=1, keepdims=True)


def regression_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    mse = skm.mean_squared_error(y_true, pred)
    out = {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": skm.mean_absolute_error(y_true, pred),
        "r2": skm.r2_score(y_true, pred),
    }
    return {k: round(float(v), 6) for k, v in out.items()}


def mean_metrics(per_fold: list[dict[str, float]]) -> dict[str, float]:
    """Mean and standard deviation over CV folds, as ``<metric>`` and ``<metric>_std``."""
    out: dict[str, float] = {}
    for key in per_fold[0]:
        values = np.array([m[key] for m in per_fold])
        out[key] = round(float(values.mean()), 6)
        out[f"{key}_std"] = round(float(values.std()), 6)
    return out


def pick_samples(y: np.ndarray, n: int = 4, seed: int = SEED) -> np.ndarray:
    """Indices of a few test rows; for classifiers one per class where possible."""
    rng = np.random.default_rng(seed)
    if y.dtype.kind in "iu":
        picks = [int(rng.choice(np.flatnonzero(y == c))) for c in np.unique(y)[:n]]
        if len(picks) >= n:
            return np.array(picks)
        rest = np.setdiff1d(np.arange(len(y)), picks)
        return np.array(picks + list(rng.choice(rest, n - len(picks), replace=False)))
    return rng.choice(len(y), size=min(n, len(y)), replace=False)


def cross_validate(make: Any, x: np.ndarray, y: np.ndarray, splitter: Any, *,
                   groups: np.ndarray | None = None, task: Task = Task.CLASSIFICATION,
                   label: str = "") -> dict[str, float]:
    """Fit a fresh ``make()`` per fold; mean ± std of the fold metrics."""
    per_fold = []
    for k, (tr, te) in enumerate(splitter.split(x, y, groups), start=1):
        model = make().fit(x[tr], y[tr])
        if task is Task.CLASSIFICATION:
            m = classification_metrics(y[te], model.predict_proba(x[te]))
        else:
            m = regression_metrics(y[te], model.predict(x[te]))
        per_fold.append(m)
        shown = {key: m[key] for key in list(m)[:3]}
        print(f"  {label} CV fold {k}: {shown}", flush=True)
    return mean_metrics(per_fold)
