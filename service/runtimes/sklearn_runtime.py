"""scikit-learn runtime: a fitted estimator or Pipeline saved with joblib.

joblib files are pickles, so they are only ever opened after the loader has
checked their SHA-256 against the manifest of a configured repository.

The estimator is called with what it was fitted on: an array in the fitted dtype
(float64 columns stay float64: histogram boosting splits between neighbouring float64
values), or, for a model fitted on a DataFrame (``layout: frame``), a DataFrame with
the same column names and pandas dtypes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from service.batch import Batch
from service.errors import ModelLoadError
from service.manifest import InputSpec, Manifest, RawOutput
from service.runtimes.base import Runtime


class SklearnRuntime(Runtime):
    def __init__(self, estimator: Any, spec: InputSpec, raw_output: RawOutput) -> None:
        self.estimator = estimator
        self.input = spec
        if raw_output is RawOutput.VALUE:
            self._call = estimator.predict
        elif raw_output is RawOutput.PROBABILITIES:
            self._call = estimator.predict_proba
        elif raw_output is RawOutput.CLASS_INDEX:
            classes, predict = estimator.classes_, estimator.predict

            def class_index(x: Any) -> np.ndarray:
                # classes_ is sorted: the label's position is the class index.
                return np.searchsorted(classes, predict(x)).astype(np.int64)

            self._call = class_index
        else:
            raise ModelLoadError("<estimator>", f"scikit-learn models do not emit {raw_output}")
        self._frame = (_FrameBuilder(self.input) if self.input.layout == "frame" else None)

    @classmethod
    def load(cls, path: Path, manifest: Manifest) -> SklearnRuntime:
        import joblib

        try:
            estimator = joblib.load(path)
        except Exception as exc:
            raise ModelLoadError(path, f"joblib could not load the model: {exc}") from exc
        needed = {RawOutput.VALUE: "predict", RawOutput.CLASS_INDEX: "predict"}.get(
            manifest.raw_output, "predict_proba")
        if not callable(getattr(estimator, needed, None)):
            raise ModelLoadError(path, f"the estimator has no {needed}()")
        return cls(estimator, manifest.inputs[0], manifest.raw_output)

    def model_input(self, batch: Batch) -> Any:
        x = batch[self.input.name]
        return self._frame(x) if self._frame is not None else x

    def raw(self, batch: Batch) -> np.ndarray:
        return np.asarray(self._call(self.model_input(batch)))


class _FrameBuilder:
    """Batch array -> DataFrame with the training frame's columns and dtypes."""

    def __init__(self, spec: InputSpec) -> None:
        import pandas as pd

        self._pd = pd
        self._columns = spec.feature_names
        self._dtypes: list[Any] = []
        for f in spec.features or []:
            if f.frame_dtype == "category":
                self._dtypes.append(pd.CategoricalDtype(f.categories))
            else:
                self._dtypes.append(f.frame_dtype)
        self._uniform = len(set(map(str, self._dtypes))) == 1 and self._dtypes[0] != "category"

    def __call__(self, x: np.ndarray) -> Any:
        pd = self._pd
        if x.dtype != object and self._uniform:
            return pd.DataFrame(x, columns=self._columns).astype(self._dtypes[0])
        return pd.DataFrame({name: pd.Series(x[:, j]).astype(dtype)
                             for j, (name, dtype) in enumerate(zip(self._columns, self._dtypes,
                                                                   strict=True))})
