"""Churn labels against a plain-Python reference, with events exactly on the horizon edges."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from pyspark.testing import assertDataFrameEqual

from mlops_spark.errors import UsageError
from mlops_spark.training.labels import churn_labels, monthly_cutoffs

D = dt.datetime


def _reference(events, cutoffs, horizon, active_days=None):
    newest = max(ts for _, ts in events if ts is not None)
    rows = []
    for cut in cutoffs:
        if cut + dt.timedelta(days=horizon) > newest:
            continue
        for entity in sorted({e for e, _ in events if e is not None}):
            times = [ts for e, ts in events if e == entity and ts is not None]
            lo = cut - dt.timedelta(days=active_days) if active_days else None
            if not any(ts <= cut and (lo is None or ts > lo) for ts in times):
                continue
            bought = any(cut < ts <= cut + dt.timedelta(days=horizon) for ts in times)
            rows.append((entity, cut, 0 if bought else 1))
    return rows


def test_monthly_cutoffs_are_first_days_inside_the_range():
    assert monthly_cutoffs(dt.date(2024, 1, 15), dt.date(2024, 4, 1)) == [D(2024, 2, 1), D(2024, 3, 1), D(2024, 4, 1)]


def test_edges_event_at_cutoff_is_before_and_event_at_horizon_end_is_inside(spark):
    events = [(1, D(2024, 2, 1)), (1, D(2024, 3, 2)), (2, D(2024, 1, 5)), (3, D(2024, 2, 1, 0, 0, 1)), (None, D(2024, 1, 1)),
              (4, None), (9, D(2024, 6, 1))]  # fmt: skip
    df = spark.createDataFrame(events, "customer_id INT, ts TIMESTAMP")
    got = churn_labels(df, ["customer_id"], "ts", [D(2024, 2, 1)], horizon_days=30)
    # 1: bought exactly 30 days after (inside); 2: nothing after; 3: first event after the cut-off: not active.
    expected = spark.createDataFrame([(1, D(2024, 2, 1), 0), (2, D(2024, 2, 1), 1)], "customer_id INT, label_ts TIMESTAMP, churned INT")
    assertDataFrameEqual(got, expected)


@pytest.mark.parametrize("active_days", [None, 45])
def test_random_events_match_the_python_reference(spark, active_days):
    rng = random.Random(5)
    events = [(rng.randint(1, 30), D(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 300), hours=rng.choice([0, 12]))) for _ in range(400)]
    cutoffs = monthly_cutoffs(dt.date(2024, 1, 1), dt.date(2024, 12, 1))
    df = spark.createDataFrame(events, "customer_id INT, ts TIMESTAMP")
    got = churn_labels(df, ["customer_id"], "ts", cutoffs, horizon_days=90, active_days=active_days)
    expected = spark.createDataFrame(_reference(events, cutoffs, 90, active_days), "customer_id INT, label_ts TIMESTAMP, churned INT")
    assertDataFrameEqual(got, expected)


def test_no_observed_horizon_is_an_error(spark):
    df = spark.createDataFrame([(1, D(2024, 1, 1))], "customer_id INT, ts TIMESTAMP")
    with pytest.raises(UsageError, match="no cut-off has a full 90-day horizon"):
        churn_labels(df, ["customer_id"], "ts", [D(2024, 1, 1)])
