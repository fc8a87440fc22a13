"""Training, registration, promotion and rollback against a real MLflow server (HTTP)
and the embedded SQLite default."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from mlops_spark.config.settings import MlflowSettings, Settings
from mlops_spark.errors import ModelNotFoundError
from mlops_spark.training import registry, train
from mlops_spark.training.model_spec import load_model_spec
from tests.ml_data import model_yaml, training_pandas, write_training_set

D1, D2 = dt.date(2024, 5, 1), dt.date(2024, 5, 2)


def with_mlflow(settings: Settings, tracking_uri: str, artifacts: Path | None = None) -> Settings:
    """The session's settings with another MLflow backend."""
    ml = MlflowSettings(tracking_uri=tracking_uri, registry_uri=tracking_uri, artifact_root=str(artifacts) if artifacts else None)
    return settings.model_copy(update={"mlflow": ml})


@pytest.fixture(scope="module")
def sqlite_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The embedded default backend: a SQLite file plus a local artifact folder (tests use unique model names)."""
    root = tmp_path_factory.mktemp("mlflow-sqlite")
    return with_mlflow(settings, f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")


@pytest.fixture
def server_settings(settings: Settings, mlflow_server) -> Settings:
    """The session's settings pointed at the real MLflow server over HTTP."""
    return with_mlflow(settings, mlflow_server.tracking_uri)


@pytest.fixture(scope="module")
def training_rows():
    return training_pandas(1200)


def spec_for(tmp_path: Path, name: str, training_table: str, **kw):
    path = tmp_path / f"{name}.yaml"
    path.write_text(model_yaml(name, training_table, "features.unused", **kw))
    return load_model_spec(path)


def decisions(spark, settings: Settings, name: str):
    return spark.table(settings.table("ml", "model_decisions")).where(F.col("model_name") == name)


def test_first_model_is_registered_with_lineage_and_becomes_champion_on_server(
    spark, server_settings, tmp_path, unique_name, training_rows
):
    table = f"ml.ts_{unique_name}"
    write_training_set(spark, table, training_rows)
    spec = spec_for(tmp_path, unique_name, table)

    result = train.run(spark, server_settings, spec, D1)

    client = mlflow.MlflowClient()
    assert mlflow.get_tracking_uri().startswith("http://127.0.0.1")
    assert int(client.get_model_version_by_alias(unique_name, "champion").version) == 1
    assert int(client.get_model_version_by_alias(unique_name, "challenger").version) == 1
    run = client.get_run(result.run_id)
    dataset = run.inputs.dataset_inputs[0].dataset
    source = json.loads(dataset.source)
    assert source["delta_table_name"].endswith(table)
    assert (source["delta_table_version"], dataset.source_type, dataset.name) == ("0", "delta_table", table)
    # The exact row count (MLflow's own profile estimates it with a job over every row).
    assert json.loads(dataset.profile) == {"approx_count": 1200}
    assert {c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]} >= {"f_amount", "f_count", "f_recency"}
    assert len(dataset.digest) == 8
    assert run.data.tags["mlops.training_set_version"] == "0"
    assert run.data.tags["git_sha"] != ""
    assert json.loads(run.data.tags["feature_spec"])["lookups"][0]["columns"] == ["f_amount", "f_count", "f_recency"]
    assert {"validation_roc_auc", "test_roc_auc", "test_pr_auc", "test_accuracy", "test_f1", "test_log_loss"} <= set(run.data.metrics)
    assert run.data.metrics["rows_total"] == 1200
    row = decisions(spark, server_settings, unique_name).collect()
    assert [(r.version, r.outcome, r.champion_version) for r in row] == [(1, "promoted", None)]


def test_retraining_the_same_date_and_training_set_changes_nothing(spark, sqlite_settings, tmp_path, unique_name, training_rows):
    table = f"ml.ts_{unique_name}"
    write_training_set(spark, table, training_rows)
    spec = spec_for(tmp_path, unique_name, table)
    first = train.run(spark, sqlite_settings, spec, D1)

    again = train.run(spark, sqlite_settings, spec, D1)

    assert (again.version, again.run_id, again.reused, again.decision.outcome) == (first.version, first.run_id, True, "promoted")
    assert len(mlflow.MlflowClient().search_model_versions(f"name = '{unique_name}'")) == 1
    assert decisions(spark, sqlite_settings, unique_name).count() == 1


def test_challenger_below_the_improvement_threshold_stays_challenger(spark, sqlite_settings, tmp_path, unique_name, training_rows):
    table = f"ml.ts_{unique_name}"
    write_training_set(spark, table, training_rows)
    spec = spec_for(tmp_path, unique_name, table)
    train.run(spark, sqlite_settings, spec, D1)

    second = train.run(spark, sqlite_settings, spec, D2)

    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias(unique_name, "champion").version) == 1
    assert int(client.get_model_version_by_alias(unique_name, "challenger").version) == 2
    d = second.decision
    assert (d.outcome, d.champion_version, d.relative_improvement) == ("rejected", 1, 0.0)
    assert d.candidate_metric == pytest.approx(d.champion_metric)
    tags = client.get_model_version(unique_name, "2").tags
    assert tags["decision.outcome"] == "rejected" and "< required 2.00%" in tags["decision.reason"]


def test_challenger_that_beats_the_champion_by_the_threshold_is_promoted(spark, sqlite_settings, tmp_path, unique_name, training_rows):
    table = f"ml.ts_{unique_name}"
    write_training_set(spark, table, training_rows)
    weak = spec_for(tmp_path, unique_name, table, estimator="sklearn.linear_model.LogisticRegression", params="{}", features=("f_recency",))
    train.run(spark, sqlite_settings, weak, D1)

    strong = train.run(spark, sqlite_settings, spec_for(tmp_path, unique_name, table), D2)

    d = strong.decision
    assert (d.outcome, d.version, d.champion_version) == ("promoted", 2, 1)
    assert d.relative_improvement >= 0.02 and d.candidate_metric > d.champion_metric
    assert int(mlflow.MlflowClient().get_model_version_by_alias(unique_name, "champion").version) == 2


def test_metric_floor_guard_keeps_the_first_model_from_becoming_champion(spark, sqlite_settings, tmp_path, unique_name, training_rows):
    table = f"ml.ts_{unique_name}"
    write_training_set(spark, table, training_rows)

    result = train.run(spark, sqlite_settings, spec_for(tmp_path, unique_name, table, floor=0.999), D1)

    assert result.decision.outcome == "rejected" and "below the floor" in result.decision.reason
    with pytest.raises(ModelNotFoundError, match="no alias '@champion'"):
        registry.resolve_version(mlflow.MlflowClient(), unique_name, "champion", None)


def test_rollback_moves_champion_back_and_records_the_decision(spark, sqlite_settings, tmp_path, unique_name, training_rows):
    table = f"ml.ts_{unique_name}"
    write_training_set(spark, table, training_rows)
    train.run(spark, sqlite_settings, spec_for(tmp_path, unique_name, table, threshold=0.0), D1)
    train.run(spark, sqlite_settings, spec_for(tmp_path, unique_name, table, threshold=0.0), D2)
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias(unique_name, "champion").version) == 2

    registry.rollback(spark, sqlite_settings, client, unique_name, 1, D2)
    registry.rollback(spark, sqlite_settings, client, unique_name, 1, D2)

    assert int(client.get_model_version_by_alias(unique_name, "champion").version) == 1
    rows = decisions(spark, sqlite_settings, unique_name).where(F.col("action") == "rollback").collect()
    assert [(r.version, r.outcome, r.champion_version) for r in rows] == [(1, "rolled_back", 2)]


def test_training_uses_the_newest_built_set_of_a_table_holding_several(spark, settings, unique_name):
    """ml.training_set_<name> keeps every set built; train reads only the newest (or the one asked for)."""
    import datetime as dt

    from mlops_spark.errors import UsageError
    from mlops_spark.training.train import select_training_set

    db = f"ml_{unique_name}"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    local = settings.model_copy(update={"databases": settings.databases.model_copy(update={"ml": db})})
    rows = spark.createDataFrame([("old", 1), ("old", 2), ("new", 3), ("mid", 4)], "training_set_id string, x int")
    table = f"{db}.training_set_x"
    rows.write.format("delta").saveAsTable(table)
    created = [
        ("old", dt.datetime(2024, 1, 1)),
        ("new", dt.datetime(2024, 3, 1)),
        ("mid", dt.datetime(2024, 2, 1)),
        ("gone", dt.datetime(2025, 1, 1)),
    ]
    spark.createDataFrame(created, "training_set_id string, created_at timestamp").write.format("delta").saveAsTable(f"{db}.training_sets")

    df, set_id = select_training_set(spark, local, spark.table(table), table, 0, None)
    assert (set_id, sorted(r.x for r in df.collect())) == ("new", [3])
    df, set_id = select_training_set(spark, local, spark.table(table), table, 0, "old")
    assert (set_id, sorted(r.x for r in df.collect())) == ("old", [1, 2])
    with pytest.raises(UsageError, match=r"training set gone is not in .*sets there: mid, new, old"):
        select_training_set(spark, local, spark.table(table), table, 0, "gone")
    spark.sql(f"DROP TABLE {db}.training_sets")
    with pytest.raises(UsageError, match=r"holds 3 training sets .* give --training-set-id"):
        select_training_set(spark, local, spark.table(table), table, 0, None)
