"""The one-pass window engine against DuckDB RANGE window SQL and plain Python loops."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark.features import kernel
from mlops_spark.features.spec import FUNCTIONS, parse_feature_set, window_micros
from mlops_spark.features.windows import auto_partitions, compute_windows
from tests.feature_reference import duckdb_per_event, loop_at_queries, random_events

EVENT_SCHEMA = T.StructType(
    [
        T.StructField("event_id", T.StringType()),
        T.StructField("customer_id", T.LongType()),
        T.StructField("event_ts", T.TimestampType()),
        T.StructField("amount", T.DoubleType()),
        T.StructField("category", T.StringType()),
    ]
)

ALL_NUMERIC = list(FUNCTIONS)


def _spec(windows: list[str], category_functions: tuple[str, ...] = ("distinct_count", "last", "count", "count_events")):
    return parse_feature_set(
        {
            "name": "spend",
            "source": "silver.transactions",
            "entity": ["customer_id"],
            "timestamp": "event_ts",
            "aggregations": [
                {"column": "amount", "functions": ALL_NUMERIC, "windows": windows},
                {"column": "category", "functions": list(category_functions), "windows": windows},
            ],
            "ratios": [{"name": "sum_ratio", "numerator": f"amount_sum_{windows[0]}", "denominator": f"amount_sum_{windows[-1]}"}],
        }
    )


def _events(spark, pdf: pd.DataFrame):
    rows = [
        (r.event_id, int(r.customer_id), r.event_ts.to_pydatetime(), None if pd.isna(r.amount) else float(r.amount), r.category)
        for r in pdf.itertuples()
    ]
    return spark.createDataFrame(rows, EVENT_SCHEMA)


def _assert_same(
    actual: pd.DataFrame, expected: pd.DataFrame, key: list[str], rtol: float = 1e-9, atol: float = 1e-9, stddev_rtol: float | None = None
) -> None:
    """Whole-frame equality after sorting by ``key``; floats to ``rtol`` relative / ``atol`` absolute
    (``stddev_rtol`` for stddev columns: see the precision note in :mod:`mlops_spark.features.kernel`)."""
    actual = actual.sort_values(key).reset_index(drop=True)
    expected = expected[list(actual.columns)].sort_values(key).reset_index(drop=True)
    for c in actual.columns:
        if actual[c].dtype.kind in "fi" or expected[c].dtype.kind in "fi":
            actual[c] = actual[c].astype("float64")
            expected[c] = pd.to_numeric(expected[c], errors="coerce").astype("float64")
        else:
            actual[c] = actual[c].astype(object).where(actual[c].notna(), None)
            expected[c] = expected[c].astype(object).where(expected[c].notna(), None)
    loose = [c for c in actual.columns if "_stddev_" in c] if stddev_rtol else []
    for c in loose:
        pd.testing.assert_series_equal(actual.pop(c), expected.pop(c), check_exact=False, rtol=stddev_rtol, atol=atol)
    pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=rtol, atol=atol)


def test_every_function_and_window_matches_duckdb_range_sql_on_random_data(spark) -> None:
    pdf = random_events(seed=7)
    spec = _spec(["6h", "1d", "7d", "lifetime"])
    got = compute_windows(_events(spark, pdf), spec, event_columns=["event_id"]).drop("customer_id", "event_ts").toPandas()
    _assert_same(got, duckdb_per_event(pdf, spec, "event_id"), ["event_id"])


def test_results_do_not_depend_on_chunking_or_partitioning(spark) -> None:
    pdf = random_events(seed=11, entities=15, events=600)
    spec = _spec(["1d", "lifetime"])
    events = _events(spark, pdf)
    whole = compute_windows(events, spec, event_columns=["event_id"], partitions=1)
    chunked = compute_windows(events, spec, event_columns=["event_id"], partitions=3, chunk_rows=7)
    assertDataFrameEqual(chunked, whole, rtol=1e-12)


def test_wall_clock_timestamps_give_the_same_features_as_utc_timestamps(spark) -> None:
    # TIMESTAMP_NTZ (pandas-written Parquet) takes the engine's other time path: Spark
    # computes the microseconds instead of the worker reading the timestamp column.
    pdf = random_events(seed=5, entities=10, events=300)
    spec = _spec(["1d", "lifetime"])
    utc = _events(spark, pdf)
    ntz = utc.withColumn("event_ts", utc["event_ts"].cast(T.TimestampNTZType()))
    want = compute_windows(utc, spec, event_columns=["event_id"]).drop("event_ts")
    got = compute_windows(ntz, spec, event_columns=["event_id"]).drop("event_ts")
    assertDataFrameEqual(got, want, rtol=1e-12)


def test_partitions_grow_with_the_input_size_estimate(spark, tmp_path) -> None:
    pdf = random_events(seed=3, entities=50, events=5000)
    _events(spark, pdf).write.parquet(str(tmp_path / "events"))
    events = spark.read.parquet(str(tmp_path / "events"))
    default = int(spark.conf.get("spark.sql.shuffle.partitions"))
    size = int(str(events._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()))
    assert auto_partitions(events, partition_bytes=10 * size) == default
    assert auto_partitions(events, partition_bytes=max(1, size // (default + 5))) >= default + 5
    spec = _spec(["1d"])
    many = compute_windows(events, spec, event_columns=["event_id"], partition_bytes=max(1, size // 40))
    assert many.rdd.getNumPartitions() >= 40
    assertDataFrameEqual(many, compute_windows(events, spec, event_columns=["event_id"], partitions=1), rtol=1e-12)


def test_tied_events_get_identical_features(spark) -> None:
    t = dt.datetime(2024, 3, 1, 12)
    rows = [("a", 1, t, 5.0, "x"), ("b", 1, t, None, "y"), ("c", 1, t, 9.0, "x"), ("d", 1, t - dt.timedelta(hours=1), 1.0, "z")]
    spec = _spec(["1d"])
    got = compute_windows(spark.createDataFrame(rows, EVENT_SCHEMA), spec, event_columns=["event_id"])
    got = got.where("event_ts = '2024-03-01 12:00:00'")
    features = got.drop("event_id").distinct()
    assert features.count() == 1
    row = features.first()
    assert (row.amount_sum_1d, row.amount_count_1d, row.amount_count_events_1d, row.amount_last_1d, row.category_last_1d) == (
        15.0,
        3,
        4,
        9.0,
        "y",
    )


def test_event_exactly_one_window_earlier_is_outside_and_one_microsecond_later_is_inside(spark) -> None:
    t = dt.datetime(2024, 3, 8, 0, 0)
    rows = [
        ("edge", 1, t - dt.timedelta(days=7), 100.0, "x"),
        ("inside", 1, t - dt.timedelta(days=7) + dt.timedelta(microseconds=1), 10.0, "y"),
        ("now", 1, t, 1.0, "z"),
    ]
    spec = _spec(["7d"])
    got = compute_windows(spark.createDataFrame(rows, EVENT_SCHEMA), spec, event_columns=["event_id"])
    assertDataFrameEqual(
        got.where("event_id = 'now'").select("amount_sum_7d", "amount_count_7d", "category_distinct_count_7d"),
        spark.createDataFrame([(11.0, 2, 2)], "amount_sum_7d double, amount_count_7d long, category_distinct_count_7d long"),
    )


def test_query_points_match_a_python_loop(spark) -> None:
    pdf = random_events(seed=3, entities=8, events=300)
    spec = _spec(["1d", "7d", "lifetime"])
    rng = np.random.default_rng(5)
    picks = pdf.sample(40, random_state=1)
    queries = pd.DataFrame(
        {
            "customer_id": np.concatenate([picks["customer_id"].to_numpy(), [999, 999]]),
            # on event times (ties with events), exactly one window after an event, and at random offsets
            "label_ts": np.concatenate(
                [
                    (picks["event_ts"] + pd.to_timedelta(rng.choice([0, 86_400_000_000, 3_600_000_000], 40), unit="us")).to_numpy(),
                    pd.to_datetime(["2024-01-05", "2024-02-01"]).to_numpy(),
                ]
            ).astype("datetime64[us]"),
            "label": np.arange(42, dtype="int64"),
        }
    )
    qdf = spark.createDataFrame(
        [(int(r.customer_id), r.label_ts.to_pydatetime(), int(r.label)) for r in queries.itertuples()],
        "customer_id long, label_ts timestamp, label long",
    )
    got = compute_windows(_events(spark, pdf), spec, qdf, query_timestamp="label_ts").toPandas()
    expected = loop_at_queries(pdf, queries, spec, "label_ts")
    num, den = expected["amount_sum_1d"], expected["amount_sum_lifetime"]
    expected["sum_ratio"] = [
        a / b if a is not None and b not in (None, 0) and not pd.isna(a) else None for a, b in zip(num, den, strict=True)
    ]
    _assert_same(got.drop(columns=["label_ts", "customer_id"]), expected.drop(columns=["label_ts", "customer_id"]), ["label"])


def test_stddev_of_large_values_with_small_spread_matches_an_exact_two_pass_loop(spark) -> None:
    # Values near 1e9 with a spread of 0.01: a naive sum-of-squares would lose every digit.
    # DuckDB's streaming stddev_samp itself drifts ~1e-6 relative here, so the reference is an
    # exact two-pass computation (math.fsum) per window.
    rng = np.random.default_rng(1)
    pdf = random_events(seed=2, entities=5, events=300)
    pdf["amount"] = 1e9 + rng.normal(0, 0.01, len(pdf))
    spec = parse_feature_set(
        {
            "name": "precise",
            "source": "silver.x",
            "entity": ["customer_id"],
            "timestamp": "event_ts",
            "aggregations": [{"column": "amount", "functions": ["stddev", "avg"], "windows": ["1d", "lifetime"]}],
        }
    )
    got = compute_windows(_events(spark, pdf), spec, event_columns=["event_id"]).toPandas()
    queries = pdf[["customer_id", "event_ts", "event_id"]]
    expected = loop_at_queries(pdf, queries, spec, "event_ts")
    _assert_same(got, expected, ["event_id"])


def test_entity_holding_30_percent_of_events_is_correct_and_bounded(spark) -> None:
    pdf = random_events(seed=9, entities=60, events=6000)
    heavy = pdf.sample(frac=0.3, random_state=0).index
    pdf.loc[heavy, "customer_id"] = 424242
    spec = _spec(["1d", "7d", "lifetime"])
    started = time.perf_counter()
    got = compute_windows(_events(spark, pdf), spec, event_columns=["event_id"], chunk_rows=500)
    got = got.drop("customer_id", "event_ts").toPandas()
    elapsed = time.perf_counter() - started
    _assert_same(got, duckdb_per_event(pdf, spec, "event_id"), ["event_id"])
    assert elapsed < 60, f"skewed run took {elapsed:.1f}s"


def test_bounds_fall_back_to_ranks_when_time_span_times_entities_overflows() -> None:
    rng = np.random.default_rng(0)
    seg = np.sort(rng.integers(0, 50, 400))
    ts = np.concatenate([np.sort(rng.integers(-(2**60), 2**60, (seg == s).sum())) for s in range(seg.max() + 1)])
    w = 2**58
    hi, (lo,) = kernel.bounds(seg, ts, [w])
    expect_lo = [int(np.flatnonzero((seg == seg[i]) & (ts > ts[i] - w))[0]) for i in range(len(ts))]
    expect_hi = [int(np.flatnonzero((seg == seg[i]) & (ts == ts[i]))[-1]) for i in range(len(ts))]
    assert lo.tolist() == expect_lo
    assert hi.tolist() == expect_hi


@pytest.mark.parametrize(
    "keys",
    [
        {"a": "int"},  # packed into one int64
        {"a": "int", "b": "int"},  # two keys packed
        {"a": "str"},  # Arrow's sort
        {"a": "int", "b": "huge"},  # spans overflow int64: Arrow's sort
    ],
)
def test_worker_sort_orders_by_keys_then_time_and_keeps_ties_in_input_order(keys: dict[str, str]) -> None:
    import pyarrow as pa

    from mlops_spark.features.windows import _Plan, _sort_order

    rng = np.random.default_rng(3)
    n = 2_000
    cols: dict[str, object] = {}
    for name, kind in keys.items():
        raw = rng.integers(-5, 5, n)
        cols[name] = {"int": raw, "str": pa.array([f"k{v}" for v in raw]), "huge": raw * 2**61}[kind]
    cols["t"] = pa.array(rng.integers(0, 20, n) * 1_000_000, pa.timestamp("us", tz="UTC"))  # many ties
    cols["row"] = np.arange(n)
    table = pa.table(cols)
    plan = _Plan(tuple(keys), (), (), (), False, "t", (), 1)
    got = table.take(_sort_order(table, plan)).to_pylist()
    expect = sorted(table.to_pylist(), key=lambda r: (*[r[k] for k in keys], r["t"], r["row"]))
    assert got == expect


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("functions", ["median"], "aggregations.0.functions.0"),
        ("windows", ["7x"], "bad window '7x'"),
    ],
)
def test_bad_definition_names_the_feature_set_and_field(field: str, value: list[str], message: str) -> None:
    from mlops_spark.errors import ConfigError

    agg = {"column": "amount", "functions": ["sum"], "windows": ["7d"], field: value}
    with pytest.raises(ConfigError, match="feature set 'spend'") as err:
        parse_feature_set({"name": "spend", "source": "s.t", "entity": ["c"], "timestamp": "ts", "aggregations": [agg]})
    assert message in str(err.value)


def test_unknown_column_names_the_feature_set_and_field(spark) -> None:
    from mlops_spark.errors import ConfigError

    spec = parse_feature_set(
        {
            "name": "spend",
            "source": "s.t",
            "entity": ["customer_id"],
            "timestamp": "event_ts",
            "aggregations": [{"column": "amt", "functions": ["sum"], "windows": ["7d"]}],
        }
    )
    with pytest.raises(ConfigError, match=r"feature set 'spend': aggregations\[0\]\.column: unknown column 'amt'"):
        spec.check_columns(EVENT_SCHEMA)


def test_ratio_of_unknown_feature_is_rejected() -> None:
    from mlops_spark.errors import ConfigError

    with pytest.raises(ConfigError, match=r"ratios\[0\]\.numerator: unknown feature 'amount_sum_1d'"):
        parse_feature_set(
            {
                "name": "spend",
                "source": "s.t",
                "entity": ["c"],
                "timestamp": "ts",
                "aggregations": [{"column": "amount", "functions": ["sum"], "windows": ["7d"]}],
                "ratios": [{"name": "r", "numerator": "amount_sum_1d", "denominator": "amount_sum_7d"}],
            }
        )


def test_kernel_alone_matches_duckdb_on_a_large_random_chunk() -> None:
    # The numpy kernel without Spark, on one chunk of many entities (prefix sums run across
    # entity boundaries, so precision over a long chunk is what is checked here).
    pdf = random_events(seed=17, entities=400, events=20_000)
    spec = _spec(["6h", "7d", "lifetime"], category_functions=("distinct_count",))
    pdf = pdf.sort_values(["customer_id", "event_ts"], kind="stable").reset_index(drop=True)
    cust = pdf["customer_id"].to_numpy()
    new = np.ones(len(pdf), dtype=bool)
    new[1:] = cust[1:] != cust[:-1]
    amount = pdf["amount"].to_numpy()
    codes, _ = pd.factorize(pdf["category"], sort=True)
    columns = {
        "amount": kernel.Column(np.nan_to_num(amount), ~np.isnan(amount), True),
        "category": kernel.Column(codes.astype(np.int64), codes >= 0, False),
    }
    features = [(n, c, f, window_micros(w)) for n, c, f, w in spec.aggregate_features() if f != "last"]
    ts = pdf["event_ts"].astype("datetime64[us]").astype("int64").to_numpy()
    res = kernel.compute(kernel.segments(new), ts, np.ones(len(pdf), dtype=bool), columns, features)
    got = pd.DataFrame({n: np.where(res[n].null, np.nan, res[n].values) for n, *_ in features}).assign(event_id=pdf["event_id"])
    expected = duckdb_per_event(pdf, spec, "event_id")[["event_id", *[f[0] for f in features]]]
    _assert_same(got, expected, ["event_id"], stddev_rtol=1e-6)
