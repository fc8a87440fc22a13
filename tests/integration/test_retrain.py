"""``retrain`` runs the configured loop through the steps' own commands; a better
model becomes champion, a worse one does not; not due means nothing runs; a failing
step stops the loop with its error."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from mlops_spark import retrain
from mlops_spark.config.settings import MlflowSettings
from mlops_spark.errors import ConfigError
from mlops_spark.monitoring.settings import RetrainStep
from mlops_spark.training import train
from mlops_spark.training.model_spec import load_model_spec
from tests.ml_data import model_yaml, training_pandas, write_training_set

D1, D2, D3 = dt.date(2024, 6, 1), dt.date(2024, 6, 2), dt.date(2024, 6, 3)


@pytest.fixture(scope="module")
def sqlite_settings(settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-retrain")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return settings.model_copy(update={"mlflow": MlflowSettings(tracking_uri=uri, registry_uri=uri, artifact_root=str(root / "art"))})


def _with_steps(settings, *steps):
    mon = settings.monitoring.model_copy(update={"retrain_steps": [RetrainStep(step=s, args=a) for s, a in steps]})
    return settings.model_copy(update={"monitoring": mon})


def test_retrain_promotes_a_better_model_and_keeps_the_champion_otherwise(spark, sqlite_settings, tmp_path, unique_name):
    table = f"ml.ts_{unique_name}"
    write_training_set(spark, table, training_pandas(600))
    weak = tmp_path / "weak.yaml"
    # Same features as the strong model: a champion with other features is "not comparable" for train's rule.
    weak.write_text(model_yaml(unique_name, table, "features.unused", params="{max_iter: 1, max_depth: 1}"))
    strong = tmp_path / "strong.yaml"
    strong.write_text(model_yaml(unique_name, table, "features.unused"))
    train.run(spark, sqlite_settings, load_model_spec(weak), D1)

    better = retrain.run(spark, _with_steps(sqlite_settings, ("train", ["--model", str(strong)])), D2, model=unique_name)
    worse = retrain.run(spark, _with_steps(sqlite_settings, ("train", ["--model", str(weak)])), D3, model=unique_name)

    assert (better.steps_run, better.champion_before, better.champion_after, better.promoted) == (["train"], 1, 2, True)
    assert (worse.steps_run, worse.champion_before, worse.champion_after, worse.promoted) == (["train"], 2, 2, False)


def test_when_due_without_breached_runs_runs_nothing(spark, settings):
    steps = _with_steps(settings, ("ingest", ["--source", "does_not_exist"]))
    result = retrain.run(spark, steps, D1, model="never_monitored_model", when_due=True)
    assert (result.due, result.steps_run) == (False, [])


def test_failing_step_stops_the_loop_with_its_own_error(spark, settings):
    steps = _with_steps(settings, ("ingest", ["--source", "does_not_exist"]), ("train", ["--model", "does_not_exist"]))
    with pytest.raises(ConfigError, match="does_not_exist"):
        retrain.run(spark, steps, D1)


def test_steps_out_of_flow_order_are_a_config_error():
    with pytest.raises(ConfigError, match="'validate' comes after 'train'"):
        retrain.check_order([RetrainStep(step="train"), RetrainStep(step="validate")])


def test_retrain_command_reports_not_due(spark, settings, capsys):
    args = argparse.Namespace(model="never_monitored_model", when_due=True, run_date=D1)
    assert retrain.run_command(args, _with_steps(settings, ("train", []))) == 0
    assert "not due" in capsys.readouterr().out
