"""The scores in numpy (service/scores.py) are scikit-learn's: the model cards were
written with scikit-learn's functions, and the live scores are compared with them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from service.scores import classification_metrics, regression_metrics


def _sklearn_classification(y, proba, pred, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class only predicted, an undefined F1
        out = {"accuracy": skm.accuracy_score(y, pred),
               "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
               "macro_f1": skm.f1_score(y, pred, average="macro")}
        p = np.clip(proba.astype(np.float64), 1e-12, 1.0)
        p /= p.sum(axis=1, keepdims=True)
        out["log_loss"] = skm.log_loss(y, p, labels=range(k))
        if k == 2:
            if len(np.unique(y)) == 2:
                out["roc_auc"] = skm.roc_auc_score(y, proba[:, 1])
            out["f1"] = skm.f1_score(y, pred)
        elif len(np.unique(y)) == k:
            out["roc_auc_ovr_macro"] = skm.roc_auc_score(y, proba, multi_class="ovr")
    return out


CASES = [(2, 300, 0), (2, 40, 1), (4, 500, 2), (4, 30, 3), (10, 1000, 4), (3, 12, 5)]


@pytest.mark.parametrize("k, n, seed", CASES)
def test_classification_scores_equal_scikit_learns(k, n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y] * rng.uniform(0, 1, (n, 1))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    proba = np.round(proba.astype(np.float32), 2)  # float32 and ties, as models give
    proba /= proba.sum(axis=1, keepdims=True)
    if seed == 5:
        y[y == 2] = 0  # a class that never occurs but may be predicted
    pred = proba.argmax(axis=1)
    want = _sklearn_classification(y, proba, pred, k)
    got = classification_metrics(y, proba, pred, k)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_class_only_scores_equal_scikit_learns():
    y = np.array([0, 1, 1, 0, 1, 1, 1, 0])
    pred = np.array([0, 1, 0, 0, 1, 1, 1, 1])
    got = classification_metrics(y, None, pred, 2)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert "log_loss" not in got


@pytest.mark.parametrize("seed", range(3))
def test_regression_scores_equal_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(2.0, 1.0, 400)
    pred = y + rng.normal(0, 0.5, 400)
    got = regression_metrics(y, pred)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, pred), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-12)
    constant = np.full(5, 3.0)
    assert regression_metrics(constant, constant)["r2"] == skm.r2_score(constant, constant)
    assert regression_metrics(constant, constant + 1)["r2"] == skm.r2_score(constant,
                                                                          constant + 1)
