"""The reference dense networks for tabular data (wine v1, housing v1).

Standardisation is a Keras ``Normalization`` layer adapted on the training rows, so
the saved model takes raw feature values. ``KerasTabular`` has a scikit-learn-like
``fit`` / ``predict_proba`` / ``predict`` so the same cross-validation code scores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.common import SEED


@dataclass
class KerasTabular:
    hidden: tuple[int, ...] = (30, 10, 5)
    output: str = "sigmoid"  # "sigmoid" (binary) or "linear" (regression)
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 200
    patience: int = 15
    validation_fraction: float = 0.15
    seed: int = SEED
    verbose: int = 0
    model: Any = field(default=None, init=False)
    history: dict[str, list[float]] = field(default_factory=dict, init=False)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "architecture": "Normalization-" + "-".join(f"Dense{h}relu" for h in self.hidden)
                            + f"-Dense1{self.output}",
            "optimizer": self.optimizer, "learning_rate": self.learning_rate,
            "batch_size": self.batch_size, "max_epochs": self.max_epochs,
            "early_stopping_patience": self.patience,
            "validation_fraction": self.validation_fraction,
        }

    def fit(self, x: np.ndarray, y: np.ndarray) -> KerasTabular:
        import keras

        keras.utils.set_random_seed(self.seed)
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(x))
        n_val = max(1, int(len(x) * self.validation_fraction))
        val, tr = order[:n_val], order[n_val:]

        norm = keras.layers.Normalization(name="standardize")
        norm.adapt(x[tr])
        layers = [keras.Input(shape=(x.shape[1],), name="features"), norm]
        layers += [keras.layers.Dense(h, activation="relu") for h in self.hidden]
        layers.append(keras.layers.Dense(1, activation=self.output))
        self.model = keras.Sequential(layers)
        opt = (keras.optimizers.SGD(self.learning_rate) if self.optimizer == "sgd"
               else keras.optimizers.Adam(self.learning_rate))
        if self.output == "sigmoid":
            self.model.compile(optimizer=opt, loss="binary_crossentropy", metrics=["accuracy"])
        else:
            self.model.compile(optimizer=opt, loss="mse")
        result = self.model.fit(
            x[tr], y[tr], validation_data=(x[val], y[val]), epochs=self.max_epochs,
            batch_size=self.batch_size, verbose=self.verbose,
            callbacks=[keras.callbacks.EarlyStopping(patience=self.patience,
                                                     restore_best_weights=True)],
        )
        self.history = {k: [float(v) for v in vals] for k, vals in result.history.items()}
        return self

    def _raw(self, x: np.ndarray) -> np.ndarray:
        # One compiled call over the whole batch; predict() would loop in small batches.
        return np.asarray(self.model(np.asarray(x, dtype=np.float32), training=False))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = self._raw(x).reshape(-1)
        return np.column_stack([1 - p, p])

    def predict(self, x: np.ndarray) -> np.ndarray:
        raw = self._raw(x).reshape(-1)
        return (raw >= 0.5).astype(np.int64) if self.output == "sigmoid" else raw
