"""The pyfunc wrapper that ``spark_udf`` loads: safe loading and what it returns (no Spark)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from mlops_spark.errors import ModelNotFoundError
from mlops_spark.scoring.model_udf import ScorerSpec, save_scoring_model
from mlops_spark.training.model_io import TRUSTED_TYPES

FEATURES = ("a", "b")


def _data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(size=(200, 2)), columns=list(FEATURES))
    return x, (x["a"] - x["b"] > 0).astype(int).to_numpy()


def _saved(tmp_path, estimator, trusted: list[str]):
    path = tmp_path / "registered"
    mlflow.sklearn.save_model(estimator, str(path), serialization_format="skops", skops_trusted_types=trusted, pip_requirements=[])
    return path


def _load_wrapper(tmp_path, model_dir, kind: str, key: str):
    wrapper = save_scoring_model(model_dir, ScorerSpec(key, FEATURES, kind, 1), tmp_path / "scratch")
    return mlflow.pyfunc.load_model(str(wrapper))


def test_classifier_wrapper_returns_class_and_positive_probability_with_pickle_loading_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")  # MLflow's own sklearn loader would refuse
    x, y = _data()
    est = HistGradientBoostingClassifier(max_iter=5).fit(x, y)
    model = _load_wrapper(tmp_path, _saved(tmp_path, est, list(TRUSTED_TYPES)), "classifier", "clf/1/run")

    batch = pd.DataFrame({"b": [0.5, np.nan, -1.0], "a": [-0.5, 2.0, np.nan]})  # columns out of order, NaN kept
    got = model.predict(batch)

    proba = est.predict_proba(batch[list(FEATURES)])
    expected = pd.DataFrame({"prediction": est.classes_[proba.argmax(axis=1)].astype("float64"), "probability": proba[:, 1]})
    pd.testing.assert_frame_equal(got, expected)


def test_positional_input_takes_the_columns_in_the_models_order_whatever_their_names(tmp_path):
    x, y = _data()
    est = HistGradientBoostingClassifier(max_iter=5).fit(x, y)
    model_dir = _saved(tmp_path, est, list(TRUSTED_TYPES))
    wrapper = save_scoring_model(model_dir, ScorerSpec("clf/2/run", FEATURES, "classifier", 1, positional_input=True), tmp_path / "scratch")
    model = mlflow.pyfunc.load_model(str(wrapper))

    # As spark_udf names its arguments: "0", "1", ... in the order the pipeline passes them (the model's).
    got = model.predict(pd.DataFrame({"0": x["a"].head(5), "1": x["b"].head(5)}))

    proba = est.predict_proba(x.head(5))
    expected = pd.DataFrame({"prediction": est.classes_[proba.argmax(axis=1)].astype("float64"), "probability": proba[:, 1]})
    pd.testing.assert_frame_equal(got, expected)


def test_regressor_wrapper_returns_only_the_prediction(tmp_path):
    x, y = _data()
    est = HistGradientBoostingRegressor(max_iter=5).fit(x, y.astype(float))
    model = _load_wrapper(tmp_path, _saved(tmp_path, est, list(TRUSTED_TYPES)), "regressor", "reg/1/run")

    got = model.predict(x.head(4))

    pd.testing.assert_frame_equal(got, pd.DataFrame({"prediction": est.predict(x.head(4)).astype("float64")}))


def test_wrapper_refuses_a_model_that_trusts_types_off_the_allow_list(tmp_path):
    x, y = _data()
    model_dir = _saved(tmp_path, HistGradientBoostingClassifier(max_iter=2).fit(x, y), [*TRUSTED_TYPES, "builtins.exec"])

    with pytest.raises(ModelNotFoundError, match=r"trusts types outside the allow-list: builtins\.exec"):
        _load_wrapper(tmp_path, model_dir, "classifier", "bad/1/run")
