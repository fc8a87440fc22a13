"""Batch scoring by alias: as-of feature lookup, predictions in Delta, idempotency, bad input."""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark.errors import ModelNotFoundError, SchemaMismatchError
from mlops_spark.scoring import pipeline
from mlops_spark.spark import delta
from mlops_spark.training import train
from mlops_spark.training.model_io import load_local_model
from mlops_spark.training.model_spec import load_model_spec
from tests.integration.test_train import with_mlflow
from tests.ml_data import feature_rows, model_yaml, training_pandas, write_training_set

T1, T2, T3 = dt.datetime(2024, 6, 1), dt.datetime(2024, 6, 2), dt.datetime(2024, 6, 3)
RUN_DATE = dt.date(2024, 6, 2)


@pytest.fixture(scope="module")
def ml_settings(settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-score")
    return with_mlflow(settings, f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")


@pytest.fixture(scope="module")
def feature_table(spark):
    """id 1: a row before and one after the as-of time; id 2: one row with a null; id 3: no row."""
    name = "features.score_customers"
    rows = [(1, T1, 1.0, -0.5, 0.2), (1, T3, 9.0, 9.0, 9.0), (2, T1, -1.0, None, 0.7), (4, T2, 0.3, 0.3, 0.3)]
    feature_rows(spark, rows).write.format("delta").mode("overwrite").saveAsTable(name)
    return name


def _train(spark, settings, name, feature_table, tmp, **kw):
    write_training_set(spark, f"ml.ts_{name}", training_pandas(600))
    path = Path(tmp) / f"{name}.yaml"
    path.write_text(model_yaml(name, f"ml.ts_{name}", feature_table, **kw))
    return train.run(spark, settings, load_model_spec(path), dt.date(2024, 6, 1))


@pytest.fixture(scope="module")
def hgb_model(spark, ml_settings, feature_table, tmp_path_factory):
    return _train(spark, ml_settings, "score_hgb", feature_table, tmp_path_factory.mktemp("m"))


@pytest.fixture(scope="module")
def lr_model(spark, ml_settings, feature_table, tmp_path_factory):
    return _train(
        spark,
        ml_settings,
        "score_lr",
        feature_table,
        tmp_path_factory.mktemp("m"),
        estimator="sklearn.linear_model.LogisticRegression",
        params="{}",
    )


def entities(spark, ids):
    return spark.createDataFrame([(i,) for i in ids], "customer_id long")


def expected_predictions(spark, result, rows: dict[int, tuple]):
    """Independent reference: the estimator called directly on hand-picked feature rows."""
    with tempfile.TemporaryDirectory() as tmp:
        est = load_local_model(mlflow.artifacts.download_artifacts(f"models:/{result.model_name}/{result.version}", dst_path=tmp)).estimator
    ids = sorted(rows)
    x = np.array([[np.nan if v is None else v for v in rows[i]] for i in ids], dtype="float64")
    proba = est.predict_proba(x)
    out = [
        (i, float(est.classes_[p.argmax()]), float(p[1]), result.model_name, result.version, result.run_id, RUN_DATE)
        for i, p in zip(ids, proba, strict=True)
    ]
    schema = "customer_id long, prediction double, probability double, model_name string, model_version int, run_id string, run_date date"
    return spark.createDataFrame(out, schema)


def predictions(spark, settings, model):
    cols = ["customer_id", "prediction", "probability", "model_name", "model_version", "run_id", "run_date"]
    return spark.table(settings.table("ml", f"predictions_{model}")).select(*cols)


def test_features_are_looked_up_as_of_the_scoring_time_and_nan_passed_to_hgb(spark, ml_settings, hgb_model):
    result = pipeline.run(spark, ml_settings, "score_hgb@champion", entities(spark, [1, 2, 3]), RUN_DATE, as_of=T2)

    expected = expected_predictions(spark, hgb_model, {1: (1.0, -0.5, 0.2), 2: (-1.0, None, 0.7), 3: (None, None, None)})
    assertDataFrameEqual(predictions(spark, ml_settings, "score_hgb"), expected, rtol=1e-9)
    assert (result.rows_in, result.rows_scored, result.rows_rejected) == (3, 3, 0)


def test_predictions_files_carry_statistics_for_keys_scores_and_version_but_not_the_constant_strings(spark, ml_settings, hgb_model):
    pipeline.run(spark, ml_settings, "score_hgb@champion", entities(spark, [1, 2, 3]), RUN_DATE, as_of=T2)

    table = ml_settings.table("ml", "predictions_score_hgb")
    location = spark.sql(f"DESCRIBE DETAIL {table}").first()["location"]
    log = Path(location.removeprefix("file:")) / "_delta_log"
    added = [json.loads(line)["add"] for f in sorted(log.glob("*.json")) for line in f.read_text().splitlines() if '"add"' in line]
    stats = [json.loads(a["stats"]) for a in added if a.get("stats")]
    assert stats and all(s["numRecords"] >= 1 for s in stats)
    indexed = {"customer_id", "prediction", "probability", "model_version", "scored_at"}
    assert {frozenset(s["minValues"]) for s in stats} == {frozenset(indexed)}
    assert "delta.dataSkippingStatsColumns" in delta.table_properties(spark, table)


def test_rescoring_a_run_date_replaces_its_rows(spark, ml_settings, hgb_model):
    pipeline.run(spark, ml_settings, "score_hgb@champion", entities(spark, [1, 2, 3]), RUN_DATE, as_of=T2)
    pipeline.run(spark, ml_settings, "score_hgb@champion", entities(spark, [1, 2, 3]), RUN_DATE, as_of=T2)

    table = ml_settings.table("ml", "predictions_score_hgb")
    counts = {r.run_date: r["count"] for r in spark.table(table).groupBy("run_date").count().collect()}
    assert counts == {RUN_DATE: 3}


def test_entities_with_missing_features_are_rejected_for_models_without_nan_support(spark, ml_settings, lr_model):
    result = pipeline.run(spark, ml_settings, "score_lr@champion", entities(spark, [1, 2, 3]), RUN_DATE, as_of=T2)

    assertDataFrameEqual(
        predictions(spark, ml_settings, "score_lr"), expected_predictions(spark, lr_model, {1: (1.0, -0.5, 0.2)}), rtol=1e-9
    )
    rejects = spark.table("ml.scoring_rejects").where(F.col("model_name") == "score_lr").select("entity", "reason", "model_version")
    expected = spark.createDataFrame(
        [('{"customer_id":2}', "missing features: f_count", 1), ('{"customer_id":3}', "missing features: f_amount, f_count, f_recency", 1)],
        "entity string, reason string, model_version int",
    )
    assertDataFrameEqual(rejects, expected)
    assert (result.rows_in, result.rows_scored, result.rows_rejected) == (3, 1, 2)


def test_feature_columns_given_with_the_entities_are_used_as_given(spark, ml_settings, hgb_model):
    given = spark.createDataFrame([(5, 0.1, 0.2, 0.3)], "customer_id long, f_amount double, f_count double, f_recency double")

    pipeline.run(spark, ml_settings, "score_hgb/1", given, dt.date(2024, 6, 2), as_of=T2)

    got = predictions(spark, ml_settings, "score_hgb").where(F.col("customer_id") == 5)
    assertDataFrameEqual(got, expected_predictions(spark, hgb_model, {5: (0.1, 0.2, 0.3)}), rtol=1e-9)


def test_feature_table_not_matching_the_signature_fails_before_writing(spark, ml_settings, hgb_model):
    bad = "features.score_customers_bad"
    schema = T.StructType(
        [
            T.StructField("customer_id", T.LongType()),
            T.StructField("feature_ts", T.TimestampType()),
            T.StructField("f_amount", T.DoubleType()),
            T.StructField("f_count", T.StringType()),
        ]
    )
    spark.createDataFrame([(1, T1, 1.0, "x")], schema).write.format("delta").mode("overwrite").saveAsTable(bad)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_text(model_yaml("score_bad", "ml.ts_score_hgb", bad))
        train.run(spark, ml_settings, load_model_spec(path), dt.date(2024, 6, 1))

    with pytest.raises(SchemaMismatchError, match=r"features.score_customers_bad .*missing column f_recency; column f_count is string"):
        pipeline.run(spark, ml_settings, "score_bad@champion", entities(spark, [1]), RUN_DATE, as_of=T2)
    assert not delta.table_exists(spark, ml_settings.table("ml", "predictions_score_bad"))


@pytest.mark.parametrize(
    ("ref", "message"), [("nope@champion", "registered model 'nope' does not exist"), ("score_hgb@gold", "has no alias '@gold'")]
)
def test_unknown_model_or_alias_raises_model_not_found(spark, ml_settings, hgb_model, ref, message):
    with pytest.raises(ModelNotFoundError, match=message):
        pipeline.run(spark, ml_settings, ref, entities(spark, [1]), RUN_DATE)


def test_probability_is_never_nan_for_scored_rows(spark, ml_settings, hgb_model):
    pipeline.run(spark, ml_settings, "score_hgb@champion", entities(spark, range(1, 50)), dt.date(2024, 6, 5), as_of=T3)

    rows = predictions(spark, ml_settings, "score_hgb").where(F.col("run_date") == dt.date(2024, 6, 5)).collect()
    assert len(rows) == 49 and not any(math.isnan(r.probability) for r in rows)


def test_rescoring_a_date_with_a_model_that_accepts_nan_clears_the_dates_old_rejects(spark, ml_settings, lr_model, hgb_model):
    day = dt.date(2024, 6, 7)
    first = pipeline.run(spark, ml_settings, "score_lr@champion", entities(spark, [1, 2, 3]), day, as_of=T2)
    client = mlflow.MlflowClient()
    hgb = client.get_model_version("score_hgb", str(hgb_model.version))
    # A new version of score_lr that accepts NaN (the HistGradientBoosting model's files), without training one.
    swapped = client.create_model_version("score_lr", hgb.source, run_id=hgb.run_id)

    second = pipeline.run(spark, ml_settings, f"score_lr/{swapped.version}", entities(spark, [1, 2, 3]), day, as_of=T2)

    left = spark.table("ml.scoring_rejects").where((F.col("model_name") == "score_lr") & (F.col("run_date") == day)).count()
    assert (first.rows_scored, first.rows_rejected, second.rows_scored, second.rows_rejected, left) == (1, 2, 3, 0, 0)
    versions = spark.table(ml_settings.table("ml", "predictions_score_lr")).where(F.col("run_date") == day).select("model_version")
    assertDataFrameEqual(versions, spark.createDataFrame([(int(swapped.version),)] * 3, "model_version int"))
