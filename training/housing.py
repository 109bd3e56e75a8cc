"""housing: California median house value per block group (1990 census), regression.

Recipes: ``ann`` (the reference Keras network Dense 30-10-5-1 trained with SGD on
MSE, standardised inputs) and ``boosting`` (scikit-learn histogram gradient
boosting, early-stopped on a validation slice of the training rows). Scored on the
reference split ``train_test_split(X, y, random_state=42)`` (5,160 test rows).
The target is in units of $100,000 and is capped at 5.00001 in the source data.
"""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

from service.manifest import Target
from training.common import SEED, FeatureInfo, TrainedModel
from training.data import HOUSING_FILE, DataDir, Split, load_housing
from training.keras_tabular import KerasTabular
from training.publishing.evaluate import regression_metrics

RECIPES = ("ann", "boosting")

FEATURES = {
    "MedInc": FeatureInfo("$10,000", "Median household income in the block group."),
    "HouseAge": FeatureInfo("years", "Median age of the houses in the block group."),
    "AveRooms": FeatureInfo("rooms/household", "Average number of rooms per household."),
    "AveBedrms": FeatureInfo("bedrooms/household", "Average number of bedrooms per household."),
    "Population": FeatureInfo("people", "Block group population."),
    "AveOccup": FeatureInfo("people/household", "Average number of household members."),
    "Latitude": FeatureInfo("degrees", "Block group latitude."),
    "Longitude": FeatureInfo("degrees", "Block group longitude."),
}
TARGET = Target(name="MedHouseVal", unit="$100,000",
                description="Median house value in the block group")

BOOSTING = {"max_iter": 3000, "learning_rate": 0.05, "max_leaf_nodes": 63,
            "min_samples_leaf": 20, "l2_regularization": 1.0, "early_stopping": True,
            "validation_fraction": 0.1, "n_iter_no_change": 50}


def _make(recipe: str, quick: bool) -> Any:
    if recipe == "ann":
        return KerasTabular(output="linear", optimizer="sgd", learning_rate=1e-3,
                            max_epochs=2 if quick else 150, patience=10, validation_fraction=0.1)
    from sklearn.ensemble import HistGradientBoostingRegressor

    params = dict(BOOSTING, max_iter=30) if quick else BOOSTING
    return HistGradientBoostingRegressor(random_state=SEED, **params)


def split(recipe: str, data: DataDir, *, quick: bool = False) -> Split:
    """The reference split (the same for both recipes)."""
    x, y, names = load_housing(data)
    if quick:
        x, y = x[:2000], y[:2000]
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, random_state=SEED)
    return Split(x_tr, y_tr, x_te, y_te, names)


def train(recipe: str, data: DataDir, *, quick: bool = False) -> TrainedModel:
    if recipe not in RECIPES:
        raise ValueError(f"housing recipes are {RECIPES}, not {recipe!r}")
    s = split(recipe, data, quick=quick)
    print(f"housing/{recipe}: {len(s.x_train)} train, {len(s.x_test)} test rows", flush=True)

    model = _make(recipe, quick).fit(s.x_train, s.y_train)
    linear = LinearRegression().fit(s.x_train, s.y_train).predict(s.x_test)

    is_ann = recipe == "ann"
    if is_ann:
        hp = model.hyperparameters() | {"epochs_run": len(model.history["loss"])}
        curves = {k: v for k, v in model.history.items() if k in ("loss", "val_loss")}
        xlabel = "epoch"
    else:
        hp = {"estimator": "HistGradientBoostingRegressor", **model.get_params(),
              "n_iter_": int(model.n_iter_)}
        # scikit-learn stores the negated loss (half squared error) per iteration.
        curves = {"train_half_squared_error": [float(-v) for v in model.train_score_],
                  "val_half_squared_error": [float(-v) for v in model.validation_score_]}
        xlabel = "boosting iteration"
    return TrainedModel(
        name="housing",
        recipe=recipe,
        model=model.model if is_ann else model,
        description="California median house value of a census block group (1990) from 8 "
                    "block-group features, in units of $100,000. "
                    + ("Reference dense network (SGD, MSE)." if is_ann
                       else "Histogram gradient boosting."),
        inputs=s.x_train, features=FEATURES, X_test=s.x_test, y_test=s.y_test,
        y_train=s.y_train, target=TARGET,
        method="Reference split train_test_split(X, y, random_state=42): 75% train, 25% "
               "test; model choices use only the training rows (early stopping on a "
               "validation slice of them).",
        baselines={"linear regression": regression_metrics(s.y_test, linear)},
        extra={"reference_notebook_test_mse": 0.3218},
        datasets=data.record(HOUSING_FILE),
        hyperparameters=hp,
        curves=curves,
        curves_xlabel=xlabel,
        notes=[
            "The source caps house values at 5.00001 ($500,001); predictions near the cap "
            "underestimate expensive areas.",
            "1990 census data: values describe 1990 prices, not today's.",
        ],
    )
