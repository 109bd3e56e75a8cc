"""Four models a team might bring, built from data that ships with scikit-learn or is
generated here (no downloads), each fitted the way its users would fit it:

- ``churn``: a scikit-learn Pipeline with a ColumnTransformer over a generated customer
  table: numbers with missing values, an integer count, a nullable integer (pandas
  ``Int64``), a boolean flag, and two string categories (one encoder refuses unseen
  values, the other ignores them and a missing city is imputed);
- ``diabetes``: histogram gradient boosting on scikit-learn's bundled diabetes data,
  fitted on its DataFrame;
- ``triage``: a Keras functional model with two inputs (vital signs, history);
- ``digits8``: a Keras CNN on scikit-learn's bundled 8x8 digits, [n, 8, 8, 1] images,
  with the preprocessing for uploaded pictures declared;
- ``tags``: a Keras network embedding int32 ids (only the ids it has embeddings for can
  be served);
- ``cultivar``: a linear SVM without probabilities on scikit-learn's bundled wine data,
  integer classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SEED = 0


@dataclass
class Built:
    name: str
    model: Any
    publish_args: dict[str, Any]
    X_test: Any
    y_test: np.ndarray


def churn() -> Built:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(SEED)
    n = 2000
    df = pd.DataFrame({
        "age": rng.normal(45, 12, n).round(1),
        "income": rng.lognormal(10, 0.5, n).round(2),
        "rooms": rng.integers(1, 7, n),
        "member": rng.random(n) < 0.3,
        "colour": rng.choice(["red", "green", "blue"], n),
        "city": rng.choice(["lisbon", "porto", "braga", "faro"], n),
    })
    df["visits"] = pd.array(rng.integers(0, 12, n), dtype="Int64")
    df.loc[rng.random(n) < 0.1, "age"] = np.nan
    df.loc[rng.random(n) < 0.05, "city"] = np.nan
    df.loc[rng.random(n) < 0.1, "visits"] = pd.NA
    logit = (0.05 * (df["age"].fillna(45) - 45) + 1.2 * df["member"]
             + 1.5 * (df["colour"] == "red") + 0.4 * df["rooms"] - 1.6)
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "churned", "stayed")
    X_tr, X_te, y_tr, y_te = train_test_split(df, y, random_state=SEED)
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
         ["age", "income", "rooms", "visits"]),
        ("flag", "passthrough", ["member"]),
        ("colour", OneHotEncoder(handle_unknown="error"), ["colour"]),
        ("city", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                               OneHotEncoder(handle_unknown="ignore")), ["city"]),
    ])
    model = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=1000))])
    model.fit(X_tr, y_tr)
    return Built("churn", model, {
        "inputs": X_tr, "y_train": y_tr,
        "description": "Will a customer churn? Logistic regression over a generated table.",
        "features": {"age": {"unit": "years", "description": "Customer age"},
                     "income": {"unit": "EUR/year", "description": "Yearly income"},
                     "rooms": {"description": "Rooms in the customer's home"},
                     "visits": {"description": "Shop visits last year (may be unknown)"},
                     "member": {"description": "Loyalty-programme member"},
                     "colour": {"description": "Favourite colour (closed set)"},
                     "city": {"description": "City (unseen cities are ignored)"}},
    }, X_te, y_te)


def diabetes() -> Built:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import train_test_split

    data = load_diabetes(as_frame=True)
    X_tr, X_te, y_tr, y_te = train_test_split(data.data, data.target.to_numpy(),
                                              random_state=SEED)
    model = HistGradientBoostingRegressor(max_iter=150, learning_rate=0.05,
                                          random_state=SEED).fit(X_tr, y_tr)
    return Built("diabetes", model, {
        "inputs": X_tr, "y_train": y_tr,
        "target": {"name": "progression", "unit": "score",
                   "description": "Disease progression one year after baseline"},
        "description": "Diabetes progression (scikit-learn's bundled data), gradient boosting.",
    }, X_te, y_te)


def triage() -> Built:
    import keras

    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    n = 1500
    vitals = rng.normal(0, 1, (n, 4)).astype(np.float32)
    history = rng.normal(0, 1, (n, 3)).astype(np.float32)
    logit = vitals @ np.array([1.2, -0.8, 0.5, 0.0]) + history @ np.array([0.9, 0.0, -1.1])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    a = keras.Input((4,), name="vitals")
    b = keras.Input((3,), name="history")
    x = keras.layers.Concatenate()([a, b])
    x = keras.layers.Dense(16, activation="relu")(x)
    model = keras.Model([a, b], keras.layers.Dense(1, activation="sigmoid")(x), name="triage")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    cut = 1100
    model.fit([vitals[:cut], history[:cut]], y[:cut], epochs=15, batch_size=64, verbose=0)
    names = {"vitals": ["heart_rate", "systolic", "temperature", "spo2"],
             "history": ["admissions", "smoker_years", "bmi"]}
    frames = {k: pd.DataFrame(v, columns=names[k]) for k, v in
              (("vitals", vitals), ("history", history))}
    train = {k: f.iloc[:cut] for k, f in frames.items()}
    test = {k: f.iloc[cut:].reset_index(drop=True) for k, f in frames.items()}
    return Built("triage", model, {
        "inputs": train, "y_train": y[:cut], "labels": ["home", "admit"],
        "description": "Admit or send home, from standardised vital signs and history "
                       "(a Keras model with two inputs, generated data).",
    }, test, y[cut:])


def digits8() -> Built:
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(SEED)
    d = load_digits()
    images = d.images.astype(np.float32)[..., None]  # [n, 8, 8, 1], values 0-16
    X_tr, X_te, y_tr, y_te = train_test_split(images, d.target, random_state=SEED)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        layers.Rescaling(1 / 16),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], name="digits8")
    model.compile(optimizer=keras.optimizers.Adam(0.003),
                  loss="sparse_categorical_crossentropy")
    model.fit(X_tr, y_tr, epochs=25, batch_size=32, verbose=0)
    return Built("digits8", model, {
        "inputs": X_tr, "y_train": y_tr, "labels": [str(i) for i in range(10)],
        "description": "Handwritten digits, 8x8 (scikit-learn's bundled set), a small CNN.",
        # The bundled digits fill their 8x8 frame, light ink (16) on dark (0).
        "image": {"preprocessing": {"mode": "ink", "box": 8, "centre": "box"},
                  "description": "8x8 digit, ink 16 on background 0, the digit filling "
                                 "the frame."},
    }, X_te, y_te)


def tags() -> Built:
    import keras

    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    ids = rng.integers(0, 10, (800, 2)).astype(np.int32)
    y = ((ids[:, 0] + ids[:, 1]) % 3 == 0).astype(np.int64)
    model = keras.Sequential([
        keras.Input((2,), dtype="int32", name="ids"),
        keras.layers.Embedding(10, 4),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ], name="tags")
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy")
    model.fit(ids[:600], y[:600], epochs=30, batch_size=32, verbose=0)
    return Built("tags", model, {
        "inputs": pd.DataFrame(ids[:600], columns=["first", "second"]), "y_train": y[:600],
        "labels": ["other", "multiple of 3"],
        "description": "Is the sum of two tag ids a multiple of 3? Embeddings of int32 ids.",
    }, pd.DataFrame(ids[600:], columns=["first", "second"]), y[600:])


def cultivar() -> Built:
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    data = load_wine(as_frame=True)
    X_tr, X_te, y_tr, y_te = train_test_split(data.data, data.target.to_numpy(),
                                              random_state=SEED)
    model = make_pipeline(StandardScaler(), LinearSVC(random_state=SEED)).fit(X_tr, y_tr)
    return Built("cultivar", model, {
        "inputs": X_tr, "y_train": y_tr,
        "description": "Wine cultivar (scikit-learn's bundled wine data), a linear SVM.",
    }, X_te, y_te)


BUILDERS = [churn, diabetes, triage, digits8, tags, cultivar]
