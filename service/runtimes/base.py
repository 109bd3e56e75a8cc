"""The one seam every framework implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from service.batch import Batch


class Runtime(ABC):
    """Wraps a deserialized artifact. ``raw`` takes a validated batch (one array per
    manifest input, in the dtypes the model was fitted with) and returns what the
    artifact computes: probabilities, one sigmoid column, class indices or values."""

    @abstractmethod
    def raw(self, batch: Batch) -> np.ndarray: ...
