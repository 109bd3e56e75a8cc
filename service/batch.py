"""A validated batch for one model version: one array per manifest input, batch first.

Tabular inputs are ``[rows, features]``: in the features' common dtype when they share
one (float64 for a model fitted on float64 columns, float32 for a Keras network), else
an object array whose columns hold each feature's values (str, int, float, bool; a
missing value is NaN). Image inputs are the pixel tensor in the input's dtype. Protocols
produce batches (``service/tensors.py``); the batcher merges and splits them; runtimes
turn them into what their framework is called with (``service/runtimes/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Batch:
    arrays: dict[str, np.ndarray]
    rows: int

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @classmethod
    def of(cls, arrays: dict[str, np.ndarray]) -> Batch:
        return cls(arrays, len(next(iter(arrays.values()))))

    @classmethod
    def concat(cls, parts: Sequence[Batch]) -> Batch:
        if len(parts) == 1:
            return parts[0]
        first = parts[0].arrays
        return cls({k: np.concatenate([p.arrays[k] for p in parts]) for k in first},
                   sum(p.rows for p in parts))

    def slice(self, start: int, stop: int) -> Batch:
        return Batch({k: v[start:stop] for k, v in self.arrays.items()}, stop - start)
