"""What every built-in trainer hands to the publisher, and the helpers they share.

The trainers only fit models and gather the facts a model card needs; publishing
(schema, samples, held-out scoring, baselines, card, the version folder) is
``training.publishing.publish``, the same call a user makes for their own model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.manifest import DatasetFile, Target, Task
from training.publishing import FeatureNote, ImageNote, publish
from training.publishing.evaluate import classification_metrics, mean_metrics, regression_metrics

SEED = 42

__all__ = ["SEED", "FeatureInfo", "TrainedModel", "cross_validate"]

FeatureInfo = FeatureNote  # unit and description of a feature


@dataclass
class TrainedModel:
    """A fitted model plus everything its manifest and model card need, as the
    arguments of ``publish``."""

    name: str
    recipe: str
    model: Any
    description: str
    inputs: Any            # the training rows: the input schema is derived from them
    X_test: Any
    y_test: Any
    y_train: Any = None
    features: dict[str, FeatureNote] | None = None
    labels: list[str] | None = None
    target: Target | None = None
    image: ImageNote | None = None
    method: str = ""
    cv_metrics: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    variants: dict[str, dict[str, float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    datasets: list[DatasetFile] = field(default_factory=list)
    hyperparameters: dict[str, Any] | None = None
    curves: dict[str, list[float]] = field(default_factory=dict)
    curves_xlabel: str = "epoch"
    notes: list[str] = field(default_factory=list)

    def publish(self, repository: Path, *, version: int | None = None, command: str = "",
                training_seconds: float | None = None,
                allow_below_baseline: bool = False) -> Path:
        return publish(
            self.model, name=self.name, repository=repository, version=version,
            description=self.description, inputs=self.inputs, features=self.features,
            image=self.image, X_test=self.X_test, y_test=self.y_test, y_train=self.y_train,
            labels=self.labels, target=self.target, method=self.method,
            cv_metrics=self.cv_metrics, baselines=self.baselines, variants=self.variants,
            extra=self.extra, datasets=self.datasets, hyperparameters=self.hyperparameters,
            curves=self.curves, curves_xlabel=self.curves_xlabel, notes=self.notes, seed=SEED,
            trainer=f"training.{self.name.replace('-', '_')} recipe={self.recipe}",
            command=command or None, training_seconds=training_seconds,
            allow_below_baseline=allow_below_baseline)


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
        shown = {key: round(m[key], 4) for key in list(m)[:3]}
        print(f"  {label} CV fold {k}: {shown}", flush=True)
    return mean_metrics(per_fold)
