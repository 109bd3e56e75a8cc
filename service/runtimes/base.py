"""The one seam every framework implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Runtime(ABC):
    """Wraps a deserialized artifact. ``raw`` takes a float32 batch (batch dimension
    first, already validated against the manifest) and returns what the artifact
    computes: probabilities, one sigmoid column, or values, as float32."""

    @abstractmethod
    def raw(self, batch: np.ndarray) -> np.ndarray: ...
