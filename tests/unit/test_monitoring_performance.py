"""Delayed labels: matching to the right prediction, daily metrics against a plain Python loop."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from mlops_spark.errors import SchemaMismatchError
from mlops_spark.monitoring import performance

T0 = dt.datetime(2024, 4, 1, 6)
PRED = "customer_id long, prediction double, scored_at timestamp, run_date date"
LAB = "customer_id long, label_ts timestamp, label int"


def test_label_matches_the_latest_prediction_before_it_within_the_delay(spark):
    preds = spark.createDataFrame(
        [
            (1, 0.0, T0, T0.date()),
            (1, 1.0, T0 + dt.timedelta(days=1), (T0 + dt.timedelta(days=1)).date()),  # latest before the label
            (1, 0.0, T0 + dt.timedelta(days=5), (T0 + dt.timedelta(days=5)).date()),  # after the label: not used
            (2, 1.0, T0 - dt.timedelta(days=40), (T0 - dt.timedelta(days=40)).date()),  # too old
        ],
        PRED,
    )
    labels = spark.createDataFrame([(1, T0 + dt.timedelta(days=3), 1), (2, T0 + dt.timedelta(days=3), 0)], LAB)
    out = performance.match_labels(preds, labels, ["customer_id"], "label_ts", "label", 30)
    expected = [Row(customer_id=1, label_ts=T0 + dt.timedelta(days=3), label=1.0, prediction=1.0, prediction_day=dt.date(2024, 4, 2))]
    assertDataFrameEqual(out, expected)


def test_daily_accuracy_matches_a_python_loop(spark):
    rng = random.Random(5)
    rows = [(i, float(rng.randint(0, 1)), float(rng.randint(0, 1)), dt.date(2024, 4, 1 + rng.randint(0, 3))) for i in range(300)]
    matched = spark.createDataFrame(rows, "customer_id long, label double, prediction double, prediction_day date")
    expected = []
    for day in [*sorted({r[3] for r in rows}), None]:
        sel = [r for r in rows if day is None or r[3] == day]
        expected += [
            Row(prediction_day=day, metric="accuracy", value=sum(r[1] == r[2] for r in sel) / len(sel)),
            Row(prediction_day=day, metric="labeled_rows", value=float(len(sel))),
        ]
    assertDataFrameEqual(performance.daily_metrics(matched, "classifier"), expected, rtol=1e-12)


def test_regressor_metrics_are_rmse_and_mae(spark):
    matched = spark.createDataFrame(
        [(1.0, 2.0, dt.date(2024, 4, 1)), (3.0, 1.0, dt.date(2024, 4, 1))], "label double, prediction double, prediction_day date"
    )
    out = performance.daily_metrics(matched, "regressor").where("prediction_day IS NULL")
    expected = [Row(prediction_day=None, metric=m, value=v) for m, v in [("rmse", (2.5) ** 0.5), ("mae", 1.5), ("labeled_rows", 2.0)]]
    assertDataFrameEqual(out, expected, rtol=1e-12)


def test_labels_without_entity_key_are_a_schema_error(spark):
    preds = spark.createDataFrame([], PRED)
    labels = spark.createDataFrame([], "label_ts timestamp, label int")
    with pytest.raises(SchemaMismatchError, match=r"labels: missing column.*customer_id"):
        performance.match_labels(preds, labels, ["customer_id"], "label_ts", "label", 30)
