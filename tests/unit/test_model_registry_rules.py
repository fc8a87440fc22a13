"""Model definitions, model references and the promotion rule (no MLflow, no Spark)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from mlops_spark.errors import ConfigError, UsageError
from mlops_spark.training.model_spec import load_model_spec
from mlops_spark.training.registry import decide, parse_model_ref, relative_improvement
from mlops_spark.training.train import split_frame
from tests.ml_data import model_yaml
from tests.support import REPO_ROOT

RULE = {"higher_is_better": True, "threshold": 0.02, "training_rows": 500, "min_rows": 100, "nan_predictions": 0, "metric_floor": 0.6}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    return path


def test_shipped_model_definition_is_valid():
    spec = load_model_spec(REPO_ROOT / "conf" / "models" / "customer_churn.yaml")
    assert (spec.kind, len(spec.feature_names), spec.promotion.metric) == ("classifier", 9, "roc_auc")


def test_unknown_estimator_is_a_config_error_naming_the_file(tmp_path):
    path = write(tmp_path, model_yaml("m", "t", "f", estimator="sklearn.svm.SVC"))
    with pytest.raises(ConfigError, match=rf"{path}: estimator.class: 'sklearn.svm.SVC' is not an allowed estimator"):
        load_model_spec(path)


def test_unknown_key_is_a_config_error_naming_the_key(tmp_path):
    path = write(tmp_path, model_yaml("m", "t", "f") + "colour: red\n")
    with pytest.raises(ConfigError, match=rf"{path}: colour: Extra inputs are not permitted"):
        load_model_spec(path)


def test_regressor_metric_on_a_classifier_is_a_config_error(tmp_path):
    path = write(tmp_path, model_yaml("m", "t", "f").replace("metric: roc_auc", "metric: rmse"))
    with pytest.raises(ConfigError, match="'rmse' is not a classifier metric"):
        load_model_spec(path)


def test_bad_estimator_parameter_is_a_config_error(tmp_path):
    spec = load_model_spec(write(tmp_path, model_yaml("m", "t", "f", params="{no_such_param: 1}")))
    with pytest.raises(ConfigError, match="no_such_param"):
        spec.build_estimator()


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("churn@champion", ("churn", "champion", None)),
        ("churn/3", ("churn", None, 3)),
        ("models:/churn@x", ("churn", "x", None)),
        ("churn", ("churn", "champion", None)),
    ],
)
def test_model_references_parse(ref, parsed):
    assert parse_model_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["@champion", "churn/latest", "churn@"])
def test_malformed_model_reference_is_a_usage_error(ref):
    with pytest.raises(UsageError):
        parse_model_ref(ref)


def test_first_model_is_promoted_when_guards_hold():
    assert decide(0.7, None, **RULE) == (True, "no comparable champion: first model becomes champion", None)


def test_improvement_exactly_at_the_threshold_promotes():
    promote, _, gain = decide(0.816, 0.8, **RULE)
    assert promote and gain == pytest.approx(0.02)


def test_improvement_below_the_threshold_rejects():
    promote, reason, gain = decide(0.81, 0.8, **RULE)
    assert (promote, reason) == (False, "metric improved by 1.25% < required 2.00%") and gain == pytest.approx(0.0125)


def test_lower_is_better_metric_improves_when_it_falls():
    assert relative_improvement(0.9, 1.0, higher_is_better=False) == pytest.approx(0.1)
    assert decide(0.9, 1.0, **{**RULE, "higher_is_better": False, "metric_floor": 2.0})[0] is True


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"training_rows": 99}, "guard failed: 99 training rows < minimum 100"),
        ({"nan_predictions": 3}, "guard failed: 3 NaN predictions on the test split"),
        ({"metric_floor": 0.95}, "guard failed: metric 0.9 below the floor 0.95"),
    ],
)
def test_failed_guard_rejects_even_a_better_model(override, reason):
    assert decide(0.9, 0.5, **{**RULE, **override}) == (False, reason, None)


def test_nan_metric_is_rejected():
    assert decide(math.nan, None, **RULE)[:2] == (False, "guard failed: metric is NaN")


def test_time_split_holds_out_the_latest_labels(tmp_path):
    spec = load_model_spec(write(tmp_path, model_yaml("m", "t", "f")))
    pdf = pd.DataFrame({"customer_id": range(20), "label_ts": pd.date_range("2024-01-01", periods=20, freq="D")[::-1], "label": 0})
    parts = split_frame(pdf, spec)
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [14, 3, 3]
    assert parts["train"]["label_ts"].max() < parts["validation"]["label_ts"].min()
    assert parts["validation"]["label_ts"].max() < parts["test"]["label_ts"].min()


def test_split_column_is_used_when_present(tmp_path):
    spec = load_model_spec(write(tmp_path, model_yaml("m", "t", "f")))
    pdf = pd.DataFrame(
        {"customer_id": [1, 2, 3, 4], "label_ts": pd.Timestamp("2024-01-01"), "split": ["test", "train", "validation", "train"]}
    )
    parts = split_frame(pdf, spec)
    assert {s: sorted(parts[s]["customer_id"]) for s in parts} == {"train": [2, 4], "validation": [3], "test": [1]}


def test_unknown_split_value_is_a_usage_error(tmp_path):
    spec = load_model_spec(write(tmp_path, model_yaml("m", "t", "f")))
    pdf = pd.DataFrame({"customer_id": [1, 2, 3], "label_ts": pd.Timestamp("2024-01-01"), "split": ["train", "holdout", "test"]})
    with pytest.raises(UsageError, match="holdout"):
        split_frame(pdf, spec)
