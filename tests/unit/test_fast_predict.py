"""The binned tree walk of HistGradientBoosting models gives exactly what the public predict gives."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression

from mlops_spark.scoring.fast_predict import CHECK_ROWS, Predictor, binned_arrays, binned_capable, public_arrays


def _data(rng: np.random.Generator, n: int, missing: float = 0.05) -> np.ndarray:
    x = np.column_stack(
        [rng.normal(size=n), rng.exponential(size=n) * 100, rng.integers(0, 5, size=n).astype(float), rng.uniform(-1, 1, size=n)]
    )
    x[rng.random(x.shape) < missing] = np.nan
    return x


def _thresholds(model) -> list[tuple[int, float]]:
    """(feature, float threshold) of every split of every tree."""
    out = []
    for iteration in model._predictors:
        for predictor in iteration:
            nodes = predictor.nodes[~predictor.nodes["is_leaf"].astype(bool)]
            out += list(zip(nodes["feature_idx"].tolist(), nodes["num_threshold"].tolist(), strict=True))
    return out


def _edge_rows(model, rng: np.random.Generator, n_features: int) -> np.ndarray:
    """Rows whose values sit exactly on split thresholds, next to them, at +-inf and NaN."""
    rows = []
    for feature, threshold in _thresholds(model):
        for value in (threshold, np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf)):
            row = rng.normal(size=n_features)
            row[feature] = value
            rows.append(row)
    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0])
    for feature in range(n_features):
        for value in special:
            row = rng.normal(size=n_features)
            row[feature] = value
            rows.append(row)
    rows.append(np.full(n_features, np.nan))
    return np.array(rows)


def _fit(model, rng: np.random.Generator, classes: int | None):
    x = _data(rng, 4000)
    signal = np.nan_to_num(x[:, 0]) + 0.01 * np.nan_to_num(x[:, 1]) - np.nan_to_num(x[:, 2]) + rng.normal(size=len(x))
    y = signal if classes is None else np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    return model.fit(x, y)


@pytest.mark.parametrize(
    ("model", "kind", "classes"),
    [
        (HistGradientBoostingClassifier(max_iter=40, random_state=0), "classifier", 2),
        (HistGradientBoostingClassifier(max_iter=20, max_bins=16, random_state=0), "classifier", 3),
        (HistGradientBoostingRegressor(max_iter=40, random_state=0), "regressor", None),
        (HistGradientBoostingRegressor(max_iter=20, loss="poisson", random_state=0), "regressor", None),
    ],
    ids=["binary", "multiclass-16-bins", "regressor", "poisson"],
)
def test_the_binned_walk_equals_predict_on_random_rows_and_every_split_edge(model, kind, classes):
    rng = np.random.default_rng(3)
    if kind == "regressor" and model.loss == "poisson":
        fitted = model.fit(np.abs(_data(rng, 3000, 0.0)), rng.poisson(3, size=3000))
    else:
        fitted = _fit(model, rng, classes)
    assert binned_capable(fitted)
    x = np.vstack([_data(rng, 20_000), _edge_rows(fitted, rng, 4)])
    fast = binned_arrays(fitted, kind, x)
    public = public_arrays(fitted, kind, x)
    assert np.array_equal(fast[0], public[0])
    if kind == "classifier":
        assert np.array_equal(fast[1], public[1])
        assert np.array_equal(fast[0], np.asarray(fitted.predict(x), dtype=float))
    else:
        assert fast[1] is None and public[1] is None


def test_models_with_categorical_features_or_other_estimators_keep_the_public_predict():
    rng = np.random.default_rng(4)
    x = _data(rng, 2000, 0.0)
    y = (x[:, 0] > 0).astype(int)
    categorical = HistGradientBoostingClassifier(max_iter=10, categorical_features=[2]).fit(x, y)
    linear = LogisticRegression().fit(x, y)
    for model in (categorical, linear):
        predictor = Predictor(model, "classifier")
        assert not binned_capable(model) and not predictor.binned
        fast, public = predictor(x), public_arrays(model, "classifier", x)
        assert np.array_equal(fast[0], public[0]) and np.array_equal(fast[1], public[1])


class _Drifted(HistGradientBoostingClassifier):
    """A model whose binned walk no longer matches its predict (internals changed)."""

    def _predict_iterations(self, X, predictors, raw_predictions, is_binned, n_threads):
        super()._predict_iterations(X, predictors, raw_predictions, is_binned, n_threads)
        if is_binned:
            raw_predictions += 1e-9


def test_a_binned_walk_that_disagrees_on_the_first_batch_is_dropped_with_a_warning(caplog):
    rng = np.random.default_rng(5)
    model = _fit(_Drifted(max_iter=10, random_state=0), rng, 2)
    predictor = Predictor(model, "classifier")
    assert predictor.binned
    x = _data(rng, CHECK_ROWS * 2)
    with caplog.at_level(logging.WARNING, logger="mlops_spark.scoring.fast_predict"):
        prediction, probability = predictor(x)
    assert not predictor.binned
    assert "differs" in caplog.text
    public = public_arrays(model, "classifier", x)
    assert np.array_equal(prediction, public[0]) and np.array_equal(probability, public[1])


def test_a_model_that_agrees_keeps_the_binned_walk_after_the_first_batch():
    rng = np.random.default_rng(6)
    model = _fit(HistGradientBoostingClassifier(max_iter=10, random_state=0), rng, 2)
    predictor = Predictor(model, "classifier")
    for _ in range(2):
        x = _data(rng, 5000)
        fast = predictor(x)
        assert predictor.binned
        assert np.array_equal(fast[1], model.predict_proba(x)[:, 1])
