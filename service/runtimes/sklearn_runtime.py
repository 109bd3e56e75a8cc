"""scikit-learn runtime: a fitted estimator or Pipeline saved with joblib.

joblib files are pickles, so they are only ever opened after the loader has
checked their SHA-256 against the manifest of a configured repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from service.errors import ModelLoadError
from service.manifest import Manifest, RawOutput
from service.runtimes.base import Runtime


class SklearnRuntime(Runtime):
    def __init__(self, estimator: Any, raw_output: RawOutput) -> None:
        self.estimator = estimator
        if raw_output is RawOutput.VALUE:
            self._call = estimator.predict
        elif raw_output is RawOutput.PROBABILITIES:
            self._call = estimator.predict_proba
        else:
            raise ModelLoadError("<estimator>", f"scikit-learn models do not emit {raw_output}")

    @classmethod
    def load(cls, path: Path, manifest: Manifest) -> SklearnRuntime:
        import joblib

        try:
            estimator = joblib.load(path)
        except Exception as exc:
            raise ModelLoadError(path, f"joblib could not load the model: {exc}") from exc
        needed = "predict" if manifest.raw_output is RawOutput.VALUE else "predict_proba"
        if not callable(getattr(estimator, needed, None)):
            raise ModelLoadError(path, f"the estimator has no {needed}()")
        return cls(estimator, manifest.raw_output)

    def raw(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._call(batch), dtype=np.float32)
