"""The synthetic data generator: deterministic, exact sizes and defect counts, drift, churn signal."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark.datagen import (
    CATEGORIES,
    CUSTOMER_SCHEMA,
    TRANSACTION_SCHEMA,
    DefectSpec,
    DriftSpec,
    generate_customers,
    generate_transactions,
)
from mlops_spark.datagen_model import ChunkParams
from mlops_spark.errors import UsageError

DEFECTS = DefectSpec(
    null_customer_rate=0.013, negative_amount_rate=0.007, duplicate_rate=0.021, late_rate=0.03, late_days=4, malformed_rate=0.009
)


@pytest.fixture(scope="module")
def churn_data(spark):
    """Two years of 400 customers, cached: transactions joined to their customers."""
    customers = generate_customers(spark, 400, seed=11).cache()
    tx = generate_transactions(spark, 40_000, 400, seed=11, chunk_rows=5_000).cache()
    yield customers, tx
    tx.unpersist()
    customers.unpersist()


def test_same_seed_gives_identical_rows_whatever_the_partitioning(spark):
    one = generate_transactions(spark, 2_500, 80, seed=3, defects=DEFECTS, chunk_rows=400, partitions=1)
    many = generate_transactions(spark, 2_500, 80, seed=3, defects=DEFECTS, chunk_rows=400, partitions=5)
    assertDataFrameEqual(one, many)


def test_different_seeds_give_different_rows(spark):
    a = generate_transactions(spark, 1_000, 50, seed=1, chunk_rows=500).select("customer_id", "event_ts", "amount")
    b = generate_transactions(spark, 1_000, 50, seed=2, chunk_rows=500).select("customer_id", "event_ts", "amount")
    # A handful of coincidences would be possible in principle; none of 1000 rows in common is the norm.
    assert a.intersect(b).count() <= 5


def test_transactions_have_the_documented_schema(spark):
    assert generate_transactions(spark, 10, 5).schema == TRANSACTION_SCHEMA


@pytest.mark.parametrize("rows", [0, 1, 99, 101, 1_234])
def test_row_count_is_exact(spark, rows):
    assert generate_transactions(spark, rows, 20, seed=5, defects=DEFECTS, chunk_rows=100).count() == rows


def test_chunks_cover_every_row_once_with_sizes_differing_by_at_most_one():
    p = ChunkParams(seed=1, rows=1_001, customers=3, start_day=0, days=10, chunk_rows=100)
    bounds = [p.bounds(c) for c in range(p.chunks)]
    assert [b for _, b in bounds[:-1]] == [a for a, _ in bounds[1:]]
    assert (bounds[0][0], bounds[-1][1], p.chunks) == (0, 1_001, 11)
    assert {b - a for a, b in bounds} == {91}


def test_transaction_ids_are_unique_without_duplicate_defects(spark):
    df = generate_transactions(spark, 3_000, 40, seed=9, chunk_rows=700)
    assert df.select("transaction_id").distinct().count() == 3_000


def test_planted_defect_counts_are_exact(spark):
    rows = 5_003
    df = generate_transactions(spark, rows, 60, seed=4, defects=DEFECTS, chunk_rows=600)
    found = df.select(
        F.count_if(F.col("customer_id").isNull()).alias("null_customer"),
        F.count_if(F.col("amount") < 0).alias("negative_amount"),
        F.count_if(F.col("landing_date") > F.to_date("event_ts")).alias("late"),
        F.count_if(~F.col("category").isin(*CATEGORIES)).alias("malformed"),
        (F.count("*") - F.count_distinct("transaction_id")).alias("duplicate"),
    ).first()
    # Independent arithmetic: floor(rate * rows) for each defect.
    expected = {
        "null_customer": math.floor(0.013 * rows),
        "negative_amount": math.floor(0.007 * rows),
        "late": math.floor(0.03 * rows),
        "malformed": math.floor(0.009 * rows),
        "duplicate": math.floor(0.021 * rows),
    }
    assert found.asDict() == expected == DEFECTS.counts(rows)


def test_duplicates_are_exact_copies_of_clean_rows(spark):
    df = generate_transactions(spark, 4_000, 60, seed=4, defects=DEFECTS, chunk_rows=600)
    copies = df.groupBy(*df.columns).count().filter("count > 1")
    repeated_ids = df.groupBy("transaction_id").count().filter("count > 1")
    # Every repeated id is one distinct row repeated (all columns equal), and that row is clean.
    assert copies.count() == repeated_ids.count() > 0
    dirty = copies.filter(
        F.col("customer_id").isNull()
        | (F.col("amount") < 0)
        | (F.col("landing_date") > F.to_date("event_ts"))
        | ~F.col("category").isin(*CATEGORIES)
    )
    assert dirty.count() == 0


def test_late_rows_land_at_most_late_days_after_their_event(spark):
    df = generate_transactions(spark, 3_000, 30, seed=8, defects=DEFECTS, chunk_rows=500)
    lag = df.select(F.datediff("landing_date", F.to_date("event_ts")).alias("lag")).groupBy().agg(F.min("lag"), F.max("lag")).first()
    assert (lag[0], lag[1]) == (0, DEFECTS.late_days)


def test_without_defects_no_defect_marker_occurs(spark):
    df = generate_transactions(spark, 3_000, 30, seed=8, chunk_rows=500)
    dirty = df.filter(
        F.col("customer_id").isNull()
        | (F.col("amount") <= 0)
        | (F.col("landing_date") != F.to_date("event_ts"))
        | ~F.col("category").isin(*CATEGORIES)
    )
    assert dirty.count() == 0


def test_events_fall_inside_the_range(spark):
    df = generate_transactions(spark, 2_000, 30, seed=8, start="2024-03-01", days=10, chunk_rows=500)
    bounds = df.select(F.min(F.to_date("event_ts")), F.max(F.to_date("event_ts"))).first()
    assert (bounds[0], bounds[1]) == (dt.date(2024, 3, 1), dt.date(2024, 3, 10))


def test_drift_leaves_earlier_rows_alone_and_scales_later_amounts(spark):
    drift = DriftSpec(start=dt.date(2024, 7, 1), amount_scale=1.5, category_shift=0.0)
    base = generate_transactions(spark, 4_000, 80, seed=6, days=365, chunk_rows=1_000)
    drifted = generate_transactions(spark, 4_000, 80, seed=6, days=365, chunk_rows=1_000, drift=drift)
    before = F.col("event_ts") < F.lit("2024-07-01").cast("timestamp")
    assertDataFrameEqual(drifted.filter(before), base.filter(before))
    pairs = base.filter(~before).alias("b").join(drifted.alias("d"), on="transaction_id", how="inner")
    worst = pairs.select(F.max(F.abs(F.col("d.amount") - F.col("b.amount") * 1.5))).first()[0]
    # Each amount is rounded to cents before and after scaling.
    assert pairs.count() == base.filter(~before).count() > 1_000
    assert worst <= 0.016


def test_drift_shifts_the_category_mix_after_its_start(spark):
    drift = DriftSpec(start="2024-07-01", amount_scale=1.0, category_shift=0.8)
    df = generate_transactions(spark, 6_000, 80, seed=6, days=365, chunk_rows=1_000, drift=drift)
    share = (
        df.groupBy(F.col("event_ts") >= F.lit("2024-07-01").cast("timestamp"))
        .agg(F.avg((F.col("category") == "books").cast("double")))
        .collect()
    )
    by_period = {row[0]: row[1] for row in share}
    # books is the rarest category (6% of the global mix) and the most common (30%) in the reversed mix.
    assert by_period[True] > by_period[False] + 0.1


def test_customers_are_deterministic_with_ids_one_to_n_and_the_documented_schema(spark):
    a = generate_customers(spark, 250, seed=3, partitions=1)
    b = generate_customers(spark, 250, seed=3, partitions=3)
    assert a.schema == CUSTOMER_SCHEMA
    assertDataFrameEqual(a, b)
    assert sorted(r[0] for r in a.select("customer_id").collect()) == list(range(1, 251))


def test_transactions_carry_their_customers_country(spark, churn_data):
    customers, tx = churn_data
    joined = tx.join(customers, on="customer_id", how="left")
    assert joined.filter(customers["country"].isNull() | (tx["country"] != customers["country"])).count() == 0


def test_no_purchase_before_signup_or_on_and_after_churn_date(spark, churn_data):
    customers, tx = churn_data
    day = F.to_date("event_ts")
    joined = tx.join(customers.drop("country"), on="customer_id", how="inner")
    assert joined.filter(F.col("churn_date").isNotNull()).count() > 1_000  # churners do buy before churning
    assert joined.filter((day < F.col("signup_date")) | (day >= F.col("churn_date"))).count() == 0


def test_lower_frequency_segments_churn_more(spark):
    rates = {
        r["segment"]: r["rate"]
        for r in generate_customers(spark, 4_000, seed=2)
        .groupBy("segment")
        .agg(F.avg(F.col("churn_date").isNotNull().cast("double")).alias("rate"))
        .collect()
    }
    assert rates["occasional"] > rates["regular"] > rates["vip"]


def test_recent_activity_predicts_churn(spark, churn_data):
    """Cut-off day T: customers who churn within 30 days of T bought less in the 30 days
    before T, relative to their own earlier rate, than customers who stay."""
    customers, tx = churn_data
    cutoff = dt.date(2025, 1, 1)
    day = F.to_date("event_ts")
    recent = (day >= F.lit(cutoff - dt.timedelta(days=30))) & (day < F.lit(cutoff))
    earlier = (day >= F.lit(cutoff - dt.timedelta(days=150))) & (day < F.lit(cutoff - dt.timedelta(days=30)))
    activity = tx.groupBy("customer_id").agg(F.count_if(recent).alias("recent"), (F.count_if(earlier) / 4.0).alias("earlier_per_30d"))
    label = (
        customers.filter(F.col("signup_date") < F.lit(cutoff - dt.timedelta(days=150)))
        .filter(F.col("churn_date").isNull() | (F.col("churn_date") > F.lit(cutoff)))
        .select("customer_id", (F.col("churn_date") <= F.lit(cutoff + dt.timedelta(days=30))).alias("churns"))
        .fillna({"churns": False})
    )
    stats = {
        r["churns"]: (r["n"], r["ratio"])
        for r in label.join(activity.filter("earlier_per_30d > 0"), on="customer_id", how="inner")
        .groupBy("churns")
        .agg(F.count("*").alias("n"), F.avg(F.col("recent") / F.col("earlier_per_30d")).alias("ratio"))
        .collect()
    }
    assert stats[True][0] >= 5
    assert stats[True][1] < 0.6 * stats[False][1]


def test_weekly_and_yearly_seasonality_are_visible(spark, churn_data):
    _, tx = churn_data
    counts = {r[0]: r[1] for r in tx.groupBy(F.dayofweek("event_ts")).count().collect()}  # 1 = Sunday, 7 = Saturday
    months = {r[0]: r[1] for r in tx.groupBy(F.month("event_ts")).count().collect()}
    assert counts[7] > counts[1] * 1.3
    assert months[12] > months[6] * 1.4


@pytest.mark.parametrize(
    "make",
    [
        lambda: DefectSpec(null_customer_rate=0.3, duplicate_rate=0.3),
        lambda: DefectSpec(late_rate=-0.1),
        lambda: DefectSpec(late_rate=0.1, late_days=0),
        lambda: DriftSpec(start="2024-13-01"),
        lambda: DriftSpec(start="2024-01-01", amount_scale=0),
    ],
    ids=["rates_over_half", "negative_rate", "no_late_days", "bad_drift_date", "zero_scale"],
)
def test_bad_specs_raise_usage_errors(make):
    with pytest.raises(UsageError):
        make()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rows": -1, "customers": 5},
        {"rows": 10, "customers": 0},
        {"rows": 10, "customers": 5, "days": 0},
        {"rows": 10, "customers": 5, "chunk_rows": 10},
    ],
    ids=["negative_rows", "no_customers", "no_days", "tiny_chunks"],
)
def test_bad_sizes_raise_usage_errors(spark, kwargs):
    with pytest.raises(UsageError):
        generate_transactions(spark, **kwargs)
