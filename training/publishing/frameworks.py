"""What kind of model was handed to ``publish``: its framework, task and raw output,
its inputs as the framework sees them, and how its artifact is written."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from service.manifest import Framework, RawOutput, Task
from training.publishing.schema import PublishError

ARTIFACT_NAMES = {Framework.KERAS: "model.keras", Framework.SKLEARN: "model.joblib"}


@dataclass
class ModelFacts:
    framework: Framework
    task: Task
    raw_output: RawOutput
    labels: list[str] | None
    # Keras: (name, shape without the batch, dtype) per input, in the model's order.
    keras_inputs: list[tuple[str, tuple[int, ...], str]] | None = None
    # scikit-learn: the column names it was fitted on (a DataFrame), else None.
    fitted_columns: list[str] | None = None


def is_keras(model: Any) -> bool:
    # Without keras imported there is no Keras model (and no need to pay its import).
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def describe(model: Any, *, task: str | None, labels: list[str] | None,
             has_target: bool) -> ModelFacts:
    if is_keras(model):
        return _keras(model, task, labels, has_target)
    if callable(getattr(model, "predict", None)):
        return _sklearn(model, task, labels)
    raise PublishError(f"cannot publish a {type(model).__name__}: modelserve serves "
                       "scikit-learn estimators (anything with predict) and Keras models")


def _sklearn(model: Any, task: str | None, labels: list[str] | None) -> ModelFacts:
    from sklearn.base import is_classifier, is_regressor
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except Exception as exc:
        raise PublishError(f"the {type(model).__name__} is not fitted: {exc}") from None
    columns = getattr(model, "feature_names_in_", None)
    fitted = [str(c) for c in columns] if columns is not None else None
    wants = Task(task) if task else None
    if wants is Task.CLASSIFICATION or (wants is None and is_classifier(model)):
        classes = getattr(model, "classes_", None)
        if classes is None:
            raise PublishError("a classifier has classes_ once fitted; this one has none")
        if labels is not None and len(labels) != len(classes):
            raise PublishError(f"labels has {len(labels)} names, the model has "
                               f"{len(classes)} classes {list(classes)[:20]}")
        raw = (RawOutput.PROBABILITIES if callable(getattr(model, "predict_proba", None))
               else RawOutput.CLASS_INDEX)
        return ModelFacts(Framework.SKLEARN, Task.CLASSIFICATION, raw,
                          list(labels) if labels else [str(c) for c in classes],
                          fitted_columns=fitted)
    if wants is Task.REGRESSION or is_regressor(model):
        return ModelFacts(Framework.SKLEARN, Task.REGRESSION, RawOutput.VALUE, None,
                          fitted_columns=fitted)
    raise PublishError(f"{type(model).__name__} is neither a classifier nor a regressor; "
                       "pass task='classification' or task='regression'")


def _keras(model: Any, task: str | None, labels: list[str] | None,
           has_target: bool) -> ModelFacts:
    if len(model.outputs) != 1:
        raise PublishError(f"the Keras model has {len(model.outputs)} outputs; modelserve "
                           "serves models with one output")
    inputs = []
    for i, t in enumerate(model.inputs):
        shape = tuple(t.shape[1:])
        if t.shape[0] is not None or any(d is None for d in shape):
            raise PublishError(f"Keras input {t.name!r} has shape {t.shape}: every dimension "
                               "but the batch must be fixed")
        name = t.name
        if name.startswith("keras_tensor"):
            # An unnamed keras.Input: its generated name changes from session to session.
            name = (("features" if len(shape) == 1 else "image") if len(model.inputs) == 1
                    else f"input_{i + 1}")
        inputs.append((name, tuple(int(d) for d in shape), str(t.dtype)))
    out = tuple(model.outputs[0].shape[1:])
    width = int(out[0]) if out else 1
    if len(out) > 1:
        raise PublishError(f"the Keras output has shape {model.outputs[0].shape}; modelserve "
                           "serves one value or one row of class scores per example")
    activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
    if task:
        kind = Task(task)
    elif labels is not None or width > 1:
        kind = Task.CLASSIFICATION
    elif has_target:
        kind = Task.REGRESSION
    else:
        kind = Task.CLASSIFICATION if activation == "sigmoid" else Task.REGRESSION
    if kind is Task.REGRESSION:
        if width != 1:
            raise PublishError(f"a regressor outputs one value, this model outputs {width}")
        return ModelFacts(Framework.KERAS, kind, RawOutput.VALUE, None, inputs)
    if width == 1:
        names = list(labels) if labels else ["0", "1"]
        if len(names) != 2:
            raise PublishError("a single sigmoid output needs exactly two labels")
        return ModelFacts(Framework.KERAS, kind, RawOutput.POSITIVE_PROBABILITY, names, inputs)
    names = list(labels) if labels else [str(i) for i in range(width)]
    if len(names) != width:
        raise PublishError(f"labels has {len(names)} names, the model outputs {width} scores")
    return ModelFacts(Framework.KERAS, kind, RawOutput.PROBABILITIES, names, inputs)


def framework_version(framework: Framework) -> str:
    return metadata.version("keras" if framework is Framework.KERAS else "scikit-learn")


def save_artifact(model: Any, framework: Framework, path: Path) -> None:
    if framework is Framework.KERAS:
        import keras

        # An uncompiled copy: the optimizer's slots would double the file and are
        # useless to a server.
        served = keras.models.clone_model(model)
        served.set_weights(model.get_weights())
        served.save(path)
    else:
        import joblib

        joblib.dump(model, path, compress=3)


def default_hyperparameters(model: Any, framework: Framework) -> dict[str, Any]:
    if framework is Framework.KERAS:
        return {"layers": [type(layer).__name__ for layer in model.layers],
                "parameters": int(model.count_params())}
    params = {"estimator": type(model).__name__, **model.get_params(deep=False)}
    return json_safe(params)


def json_safe(value: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(value, default=str))
