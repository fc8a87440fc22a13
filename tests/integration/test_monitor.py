"""The monitor step end to end on real Delta tables and a real MLflow tracking store:
a champion whose training set is found through lineage, a clean day, a planted drift,
alerts (file, log, webhooks on real local HTTP servers), the report, idempotence and
the k-of-n retraining trigger."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark.cli import build_parser
from mlops_spark.errors import ModelNotFoundError, MonitoringAlert
from mlops_spark.monitoring import alerts, command, pipeline
from mlops_spark.spark import delta

D1, D2, D3 = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)
SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.LongType()),
        T.StructField("feature_ts", T.TimestampType()),
        T.StructField("x1", T.DoubleType()),
        T.StructField("x2", T.DoubleType()),
        T.StructField("c", T.StringType()),
    ]
)


def _rows(rng, n, day, shift=0.0):
    ts = dt.datetime.combine(day, dt.time(12))
    cats = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    return [(int(i), ts, float(rng.normal(shift, 1)), float(rng.exponential(2)), str(k)) for i, k in zip(range(n), cats, strict=True)]


def register_champion(spark, settings, name, training_table, features_table, features, validation_accuracy=0.9):
    """A real MLflow run with the training set as dataset input, registered and aliased champion."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from mlops_spark.training import registry

    experiment_id = registry.configure_mlflow(settings)
    version = delta.current_version(spark, training_table)
    spec = {
        "model_name": name,
        "kind": "classifier",
        "entity_keys": ["customer_id"],
        "feature_names": features,
        "lookups": [{"table": features_table, "join_keys": ["customer_id"], "timestamp_key": "feature_ts", "columns": features}],
    }
    with mlflow.start_run(experiment_id=experiment_id) as run:
        df = spark.table(training_table)
        mlflow.log_input(mlflow.data.from_spark(df, table_name=training_table, version=str(version)), context="training")
        mlflow.set_tags({"feature_spec": json.dumps(spec), "mlops.model": name})
        mlflow.log_metric("validation_accuracy", validation_accuracy)
    client = MlflowClient()
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", mv.version)
    return run.info.run_id


@pytest.fixture(scope="module")
def world(spark, settings, tmp_path_factory):
    """Training set (v0 = reference), a feature table with a clean day and two drifted days, a champion."""
    import uuid

    name = "mon_" + uuid.uuid4().hex[:8]
    rng = np.random.default_rng(11)
    training = settings.table("ml", f"{name}_training")
    feats = settings.table("features", f"{name}_feats")
    ref = spark.createDataFrame(_rows(rng, 800, dt.date(2024, 1, 1)), SCHEMA).withColumn("label", F.lit(1.0))
    ref.write.format("delta").saveAsTable(training)
    days = _rows(rng, 400, D1) + _rows(rng, 400, D2, shift=2.0) + _rows(rng, 400, D3, shift=2.0)
    spark.createDataFrame(days, SCHEMA).write.format("delta").saveAsTable(feats)
    register_champion(spark, settings, name, training, feats, ["x1", "x2", "c"])
    reports = tmp_path_factory.mktemp("reports")
    mon = settings.monitoring.model_copy(update={"webhook_retries": 2, "webhook_backoff_seconds": 0.0, "webhook_timeout_seconds": 2.0})
    return name, training, feats, settings.model_copy(update={"reports_root": str(reports), "monitoring": mon})


def _with(settings, **monitoring):
    return settings.model_copy(update={"monitoring": settings.monitoring.model_copy(update=monitoring)})


def _run_rows(spark, settings, name, day):
    return spark.table(alerts.metrics_table(settings)).where((F.col("model") == name) & (F.col("run_date") == F.lit(day)))


def test_clean_day_raises_nothing(spark, world):
    name, _, _, settings = world
    result = pipeline.run(spark, settings, name, D1, log_to_mlflow=False)
    assert (result.breaches, result.alert_path, result.retrain) == ([], None, False)
    metrics = {(r["feature"], r["metric"]) for r in _run_rows(spark, settings, name, D1).collect()}
    assert {("x1", "psi"), ("x1", "ks_statistic"), ("x2", "wasserstein"), ("c", "chi2_statistic"), ("c", "psi")} <= metrics


def test_planted_drift_alerts_with_file_report_webhook_and_mlflow_run(spark, world, webhook_ok):
    name, _, _, settings = world
    result = pipeline.run(spark, _with(settings, webhook_url=webhook_ok.url), name, D2)
    assert [(b["feature"], b["metric"]) for b in result.breaches] == [("x1", "psi")]
    alert = json.loads(result.alert_path.read_text())
    assert (alert["model"], alert["run_date"], alert["breaches"][0]["feature"]) == (name, D2.isoformat(), "x1")
    assert [p["breaches"] for p in webhook_ok.received] == [alert["breaches"]]
    html = result.report_path.read_text()
    assert html.count("<svg") >= 4 and "<script" not in html and "src=" not in html
    from mlflow.tracking import MlflowClient

    runs = MlflowClient().search_runs(
        [pipeline.registry_experiment(settings)], filter_string=f"tags.`mlops.model` = '{name}' AND tags.`mlops.monitoring` = 'true'"
    )
    assert [a.path for a in MlflowClient().list_artifacts(runs[0].info.run_id, "monitoring")] == ["monitoring/2024-03-02.html"]


def test_failing_webhook_loses_no_metrics_and_rerun_changes_nothing(spark, world, webhook_failing):
    name, _, _, settings = world
    pipeline.run(spark, settings, name, D2, log_to_mlflow=False)
    before = _run_rows(spark, settings, name, D2).drop("computed_at")
    before_rows = before.collect()
    result = pipeline.run(spark, _with(settings, webhook_url=webhook_failing.url), name, D2, log_to_mlflow=False)
    assert (result.webhook_delivered, len(webhook_failing.received)) == (False, 3)  # 1 try + 2 retries
    assert result.alert_path.exists()
    assertDataFrameEqual(_run_rows(spark, settings, name, D2).drop("computed_at"), before_rows)


def test_second_breached_day_in_three_triggers_retrain(spark, world):
    name, _, _, settings = world
    pipeline.run(spark, settings, name, D2, log_to_mlflow=False)
    result = pipeline.run(spark, _with(settings, retrain_k=2, retrain_n=3), name, D3, log_to_mlflow=False)
    assert (bool(result.breaches), result.retrain) == (True, True)
    assert json.loads(result.alert_path.read_text())["retrain"] is True


def test_monitor_command_exits_3_on_breach_and_0_on_a_clean_day(spark, world):
    name, _, _, settings = world
    args = build_parser().parse_args(["monitor", "--model", name, "--no-mlflow", "--run-date", D2.isoformat()])
    with pytest.raises(MonitoringAlert) as info:
        command.run_command(args, settings)
    assert info.value.exit_code == 3
    args.run_date = D1
    assert command.run_command(args, settings) == 0


def test_reference_is_the_training_set_version_recorded_in_lineage(spark, world):
    name, training, _, settings = world
    champion = pipeline.find_champion(settings, name)
    spark.createDataFrame(_rows(np.random.default_rng(1), 5, D1), SCHEMA).withColumn("label", F.lit(0.0)).write.format("delta").mode(
        "append"
    ).saveAsTable(training)
    assert (champion.training_table, champion.training_version) == (training, 0)
    assert pipeline.reference_from_champion(spark, champion).count() == 800


def test_model_without_champion_is_model_not_found(settings):
    with pytest.raises(ModelNotFoundError, match="registered model 'no_such_model' does not exist"):
        pipeline.find_champion(settings, "no_such_model")
