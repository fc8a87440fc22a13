"""Time-based train / validation / test split."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark.training.split import fraction_cut_points, time_split

D = dt.datetime
SCHEMA = "customer_id long, label_ts timestamp"
ROWS = [
    (1, D(2024, 1, 1)),
    (1, D(2024, 2, 1)),  # exactly at train_until: validation
    (1, D(2024, 3, 5)),
    (2, D(2024, 2, 15)),
    (2, D(2024, 3, 1)),  # exactly at validation_until: test
    (None, D(2024, 1, 5)),
    (3, None),
]


def test_time_split_assigns_rows_by_label_time_with_left_closed_bounds(spark):
    df = spark.createDataFrame(ROWS, SCHEMA)
    actual = time_split(df, "label_ts", D(2024, 2, 1), D(2024, 3, 1))
    expected = ["train", "validation", "test", "validation", "test", "train", None]
    assertDataFrameEqual(actual, spark.createDataFrame([(*r, s) for r, s in zip(ROWS, expected, strict=True)], f"{SCHEMA}, split string"))


def test_time_split_keeps_each_entity_in_the_split_of_its_first_label(spark):
    df = spark.createDataFrame(ROWS, SCHEMA)
    actual = time_split(df, "label_ts", D(2024, 2, 1), D(2024, 3, 1), entity_keys=["customer_id"])
    expected = ["train", "train", "train", "validation", "validation", "train", None]
    assertDataFrameEqual(actual, spark.createDataFrame([(*r, s) for r, s in zip(ROWS, expected, strict=True)], f"{SCHEMA}, split string"))


def test_fraction_cut_points_put_seventy_percent_of_label_times_in_train(spark):
    days = [(i, D(2024, 1, 1) + dt.timedelta(days=i)) for i in range(100)]
    df = spark.createDataFrame(days, SCHEMA)
    train_until, validation_until = fraction_cut_points(df, "label_ts", (0.7, 0.2, 0.1))
    counts = {r["split"]: r["count"] for r in time_split(df, "label_ts", train_until, validation_until).groupBy("split").count().collect()}
    # percentile 0.7 of 0..99 days is day 69.3: days 0..69 train; 0.9 -> day 89.1: days 70..89 validation.
    assert counts == {"train": 70, "validation": 20, "test": 10}


@pytest.mark.parametrize("cutoffs", [3, 4, 8])
def test_fraction_cut_points_leave_no_split_empty_with_few_distinct_label_times(spark, cutoffs):
    # Monthly cut-offs: many labels share each time; the 0.7 and 0.85 percentiles land on the last times.
    rows = [(c, D(2024, 1 + m, 1)) for m in range(cutoffs) for c in range(50 + 10 * m)]
    df = spark.createDataFrame(rows, SCHEMA)
    train_until, validation_until = fraction_cut_points(df, "label_ts", (0.7, 0.15, 0.15))
    split = time_split(df, "label_ts", train_until, validation_until)
    months = {
        r["split"]: sorted({x.label_ts.month for x in r["rows"]})
        for r in split.groupBy("split").agg(F.collect_list(F.struct("label_ts")).alias("rows")).collect()
    }
    assert set(months) == {"train", "validation", "test"}
    assert months["test"][-1] == cutoffs and months["train"][0] == 1
    # Time order holds: every train month before every validation month before every test month.
    assert months["train"][-1] < months["validation"][0] and months["validation"][-1] < months["test"][0]
