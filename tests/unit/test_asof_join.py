"""The as-of join against a plain Python loop and DuckDB's ASOF LEFT JOIN, plus its edge cases."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark.errors import ConfigError, SchemaMismatchError
from mlops_spark.training.asof import FeatureSource, LeakageError, asof_join, guard_no_leakage, raise_if_leakage
from tests.training_reference import BASE, MINUTE, RefSource, duckdb_asof, python_asof, random_case

LABEL_SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.LongType()),
        T.StructField("ts", T.LongType()),
        T.StructField("label", T.IntegerType()),
        T.StructField("note", T.StringType()),
    ]
)
FEATURE_TYPES = {"fa1": T.DoubleType(), "fa2": T.StringType(), "fb1": T.LongType(), "fc1": T.DoubleType()}


def _labels_df(spark, rows):
    return spark.createDataFrame(rows, LABEL_SCHEMA).select("customer_id", F.timestamp_micros("ts").alias("label_ts"), "label", "note")


def _source(spark, src: RefSource) -> FeatureSource:
    schema = T.StructType(
        [T.StructField("customer_id", T.LongType()), T.StructField("ts", T.LongType())]
        + [T.StructField(f, FEATURE_TYPES[f]) for f in src.features]
    )
    df = spark.createDataFrame(src.rows, schema).select("customer_id", F.timestamp_micros("ts").alias("feature_ts"), *src.features)
    ttl = None if src.ttl is None else dt.timedelta(microseconds=src.ttl)
    return FeatureSource(src.name, df, {"customer_id": "customer_id"}, "feature_ts", {f: f for f in src.features}, ttl)


def _as_micros(df, ts_cols):
    """The joined frame with every timestamp as microseconds, comparable with the references."""
    return df.select(*[F.unix_micros(c).alias(c) if c in ts_cols else F.col(c) for c in df.columns])


def _expected_df(spark, rows, actual):
    return spark.createDataFrame(rows, actual.schema)


def _join(spark, label_rows, sources, **kw):
    feature_sources = [_source(spark, s) for s in sources]
    joined = asof_join(_labels_df(spark, label_rows), ["customer_id"], "label_ts", feature_sources, **kw)
    return _as_micros(joined, {"label_ts", *(s.ts_output for s in feature_sources)})


@pytest.mark.parametrize("seed", [1, 2])
def test_asof_join_matches_python_reference_with_ties_nulls_duplicates_and_ttls(spark, seed):
    label_rows, sources = random_case(seed)
    actual = _join(spark, label_rows, sources)
    assertDataFrameEqual(actual, _expected_df(spark, python_asof(label_rows, sources), actual))


def test_label_sets_above_the_broadcast_limit_take_the_shuffle_join_with_the_same_rows(spark):
    # Spark would broadcast these small frames on its own: off, so the plan shows what asof_join asked for.
    previous = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    try:
        label_rows, sources = random_case(3)
        actual = _join(spark, label_rows, sources, broadcast_rows=0)
        plan = actual._jdf.queryExecution().executedPlan().toString()
        assert "BroadcastHashJoin" not in plan and "SortMergeJoin" in plan
        assertDataFrameEqual(actual, _expected_df(spark, python_asof(label_rows, sources), actual))
        forced = _join(spark, label_rows, sources)  # under the limit: broadcast even with Spark's threshold off
        assert "BroadcastHashJoin" in forced._jdf.queryExecution().executedPlan().toString()
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", previous)


def test_asof_join_matches_duckdb_asof_left_join(spark):
    # DuckDB picks an arbitrary row among equal feature timestamps, so this case has none.
    label_rows, sources = random_case(7, with_feature_ties=False)
    actual = _join(spark, label_rows, sources)
    labels_table = pa.table({n: [r[i] for r in label_rows] for i, n in enumerate(["customer_id", "ts", "label", "note"])})
    duck_sources = []
    for src in sources:
        cols = ["customer_id", "ts", *src.features]
        duck_sources.append((src.name, pa.table({n: [r[i] for r in src.rows] for i, n in enumerate(cols)}), src.features, src.ttl))
    assertDataFrameEqual(actual, _expected_df(spark, duckdb_asof(labels_table, duck_sources), actual))


def test_asof_join_keeps_one_row_per_label_when_an_entity_spans_many_arrow_batches(spark):
    # 25k feature rows for one customer: the entity crosses several Arrow batches, so the
    # latest row must be carried from batch to batch.
    from mlops_spark.spark.session import ARROW_BATCH_ROWS, runtime_conf

    # runtime_conf restores the session's own batch size (unsetting it would leave Spark's 10k).
    with runtime_conf(spark, ARROW_BATCH_ROWS, "1000"):
        features = [(1, BASE + i * MINUTE, float(i), None) for i in range(25_000)]
        label_rows = [(1, BASE + t * MINUTE + 1, 0, "x") for t in (0, 999, 1000, 24_999, 40_000)] + [(2, BASE, 1, "y")]
        source = RefSource("a", features, ["fa1", "fa2"], None)
        actual = _join(spark, label_rows, [source])
        assertDataFrameEqual(actual, _expected_df(spark, python_asof(label_rows, [source]), actual))


def test_feature_stamped_one_microsecond_after_the_label_is_not_used(spark):
    label_rows = [(5, BASE, 1, "x")]
    source = RefSource("a", [(5, BASE - MINUTE, 1.0, "old"), (5, BASE + 1, 2.0, "future")], ["fa1", "fa2"], None)
    actual = _join(spark, label_rows, [source])
    assertDataFrameEqual(actual, _expected_df(spark, [(5, BASE, 1, "x", 1.0, "old", BASE - MINUTE)], actual))


def test_feature_stamped_exactly_at_label_time_is_used(spark):
    label_rows = [(5, BASE, 1, "x")]
    source = RefSource("a", [(5, BASE - MINUTE, 1.0, "old"), (5, BASE, 2.0, "same")], ["fa1", "fa2"], None)
    actual = _join(spark, label_rows, [source])
    assertDataFrameEqual(actual, _expected_df(spark, [(5, BASE, 1, "x", 2.0, "same", BASE)], actual))


def test_feature_older_than_ttl_gives_nulls(spark):
    label_rows = [(5, BASE, 1, "x"), (5, BASE + 10 * MINUTE + 1, 0, "y")]
    source = RefSource("b", [(5, BASE - MINUTE, 3)], ["fb1"], 10 * MINUTE)
    actual = _join(spark, label_rows, [source])
    expected = [(5, BASE, 1, "x", 3, BASE - MINUTE), (5, BASE + 10 * MINUTE + 1, 0, "y", None, None)]
    assertDataFrameEqual(actual, _expected_df(spark, expected, actual))


def test_label_without_feature_history_keeps_its_row_with_nulls(spark):
    label_rows = [(9, BASE, 1, "x"), (None, BASE, 0, "null key"), (5, None, 0, "null ts")]
    source = RefSource("a", [(5, BASE - MINUTE, 1.0, "a")], ["fa1", "fa2"], None)
    actual = _join(spark, label_rows, [source])
    expected = [
        (9, BASE, 1, "x", None, None, None),
        (None, BASE, 0, "null key", None, None, None),
        (5, None, 0, "null ts", None, None, None),
    ]
    assertDataFrameEqual(actual, _expected_df(spark, expected, actual))


def test_asof_join_renames_features_and_maps_join_keys(spark):
    labels = spark.createDataFrame([(1, dt.datetime(2024, 1, 2), 1)], "cid long, label_ts timestamp, y int")
    features = spark.createDataFrame([(1, dt.datetime(2024, 1, 1), 4.5)], "customer_id long, snapshot_ts timestamp, spend double")
    src = FeatureSource("spend", features, {"cid": "customer_id"}, "snapshot_ts", {"spend": "spend_30d"})
    actual = asof_join(labels, ["cid"], "label_ts", [src])
    expected = spark.createDataFrame(
        [(1, dt.datetime(2024, 1, 2), 1, 4.5, dt.datetime(2024, 1, 1))],
        "cid long, label_ts timestamp, y int, spend_30d double, spend_feature_ts timestamp",
    )
    assertDataFrameEqual(actual, expected)


def test_asof_join_rejects_a_key_type_mismatch(spark):
    labels = spark.createDataFrame([(1, dt.datetime(2024, 1, 2))], "cid long, label_ts timestamp")
    features = spark.createDataFrame([("1", dt.datetime(2024, 1, 1), 4.5)], "cid string, feature_ts timestamp, spend double")
    with pytest.raises(SchemaMismatchError, match="key cid is string, label key cid is bigint"):
        asof_join(labels, ["cid"], "label_ts", [FeatureSource("s", features, {"cid": "cid"}, features={"spend": "spend"})])


def test_asof_join_rejects_clashing_output_columns(spark):
    labels = spark.createDataFrame([(1, dt.datetime(2024, 1, 2), 1.0)], "cid long, label_ts timestamp, spend double")
    features = spark.createDataFrame([(1, dt.datetime(2024, 1, 1), 4.5)], "cid long, feature_ts timestamp, spend double")
    with pytest.raises(ConfigError, match="output column spend already exists"):
        asof_join(labels, ["cid"], "label_ts", [FeatureSource("s", features, {"cid": "cid"}, features={"spend": "spend"})])


def test_leakage_guard_fails_the_job_with_a_typed_error(spark):
    leaked = spark.createDataFrame(
        [(1, dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 1)), (2, dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 2, 0, 0, 0, 1))],
        "cid long, label_ts timestamp, s_feature_ts timestamp",
    )
    with pytest.raises(LeakageError, match="leakage guard"):
        try:
            guard_no_leakage(leaked, "label_ts", ["s_feature_ts"]).collect()
        except Exception as exc:
            raise_if_leakage(exc, "training set t")
            raise


def test_leakage_guard_passes_rows_without_leakage_unchanged(spark):
    rows = spark.createDataFrame(
        [(1, dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 2)), (2, dt.datetime(2024, 1, 2), None)],
        "cid long, label_ts timestamp, s_feature_ts timestamp",
    )
    assertDataFrameEqual(guard_no_leakage(rows, "label_ts", ["s_feature_ts"]), rows)


def test_one_entity_with_a_million_feature_rows_is_streamed_not_stalled(spark):
    # Feature row i of customer 7 is stamped BASE + i seconds with value i; a label at
    # BASE + s seconds + 1 microsecond must get row floor(s) (arithmetically known).
    n, second = 1_000_000, 1_000_000
    features = spark.range(n).select(
        F.lit(7).cast("long").alias("customer_id"),
        F.timestamp_micros(F.lit(BASE) + F.col("id") * second).alias("feature_ts"),
        F.col("id").cast("double").alias("value"),
    )
    offsets = [0, 1, 9_999, 10_000, 123_456, 999_999, 2_000_000]
    labels = spark.createDataFrame([(7, BASE + s * second + 1) for s in offsets], "customer_id long, ts long").select(
        "customer_id", F.timestamp_micros("ts").alias("label_ts")
    )
    src = FeatureSource("big", features, {"customer_id": "customer_id"}, "feature_ts", {"value": "value"})
    actual = asof_join(labels, ["customer_id"], "label_ts", [src]).select("customer_id", F.unix_micros("label_ts").alias("ts"), "value")
    expected = [(7, BASE + s * second + 1, float(min(s, n - 1))) for s in offsets]
    assertDataFrameEqual(actual, spark.createDataFrame(expected, actual.schema))


def _compound(key):
    """Reference key -> (region, customer_id); a null reference key becomes a PARTLY null compound key."""
    return ("r1", None) if key is None else (f"r{key % 3}", key)


def test_asof_join_with_a_string_and_a_long_key_matches_python_reference(spark):
    # Two key columns, one a string: the match pass sorts with Arrow instead of packing one int64.
    label_rows, sources = random_case(3)
    labels = spark.createDataFrame(
        [(*_compound(k), ts, label, note) for k, ts, label, note in label_rows],
        "region string, customer_id long, ts long, label int, note string",
    ).select("region", "customer_id", F.timestamp_micros("ts").alias("label_ts"), "label", "note")
    feature_sources = []
    for src in sources:
        fields = ", ".join(f"{f} {FEATURE_TYPES[f].simpleString()}" for f in src.features)
        df = spark.createDataFrame(
            [(*_compound(k), ts, *values) for k, ts, *values in src.rows], f"region_code string, cid long, ts long, {fields}"
        ).select("region_code", "cid", F.timestamp_micros("ts").alias("feature_ts"), *src.features)
        ttl = None if src.ttl is None else dt.timedelta(microseconds=src.ttl)
        feature_sources.append(
            FeatureSource(src.name, df, {"region": "region_code", "customer_id": "cid"}, "feature_ts", {f: f for f in src.features}, ttl)
        )
    joined = asof_join(labels, ["region", "customer_id"], "label_ts", feature_sources)
    actual = _as_micros(joined, {"label_ts", *(s.ts_output for s in feature_sources)})
    expected = [(*_compound(row[0]), *row[1:]) for row in python_asof(label_rows, sources)]
    assertDataFrameEqual(actual, _expected_df(spark, expected, actual))


def test_asof_join_with_keys_too_far_apart_to_pack_matches_python_reference(spark):
    # Keys 2**62 apart plus 60 minutes of microseconds do not fit one int64: the general sort runs.
    far = 2**62
    label_rows = [(k, BASE + m * MINUTE, 1, "x") for k in (-far, 0, far) for m in (0, 5, 30, 59)] + [(far, BASE - MINUTE, 0, "early")]
    rows = [(k, BASE + m * MINUTE, float(m), f"v{m}") for k in (-far, far) for m in (0, 5, 5, 20)]
    rows.append((0, BASE + 40 * MINUTE, 1.5, None))
    source = RefSource("a", rows, ["fa1", "fa2"], None)
    src = _source(spark, source)
    # One partition, so the far-apart keys meet in one match batch.
    joined = asof_join(_labels_df(spark, label_rows), ["customer_id"], "label_ts", [src], partitions=1)
    actual = _as_micros(joined, {"label_ts", src.ts_output})
    assertDataFrameEqual(actual, _expected_df(spark, python_asof(label_rows, [source]), actual))


def test_labels_before_any_feature_row_and_stale_ones_keep_null_features_per_source(spark):
    label_rows = [(5, BASE, 1, "before all"), (5, BASE + 20 * MINUTE, 0, "a only"), (5, BASE + 40 * MINUTE, 1, "both")]
    a = RefSource("a", [(5, BASE + MINUTE, 1.0, "a1"), (5, BASE + MINUTE, 1.0, "a2")], ["fa1", "fa2"], None)
    b = RefSource("b", [(5, BASE + 35 * MINUTE, 7)], ["fb1"], 10 * MINUTE)
    actual = _join(spark, label_rows, [a, b])
    expected = [
        (5, BASE, 1, "before all", None, None, None, None, None),
        (5, BASE + 20 * MINUTE, 0, "a only", 1.0, "a2", BASE + MINUTE, None, None),
        (5, BASE + 40 * MINUTE, 1, "both", 1.0, "a2", BASE + MINUTE, 7, BASE + 35 * MINUTE),
    ]
    assertDataFrameEqual(actual, _expected_df(spark, expected, actual))


def test_asof_join_rejects_label_columns_with_the_reserved_prefix(spark):
    labels = spark.createDataFrame([(1, dt.datetime(2024, 1, 2), 1)], "cid long, label_ts timestamp, _asof_lts long")
    features = spark.createDataFrame([(1, dt.datetime(2024, 1, 1), 4.5)], "cid long, feature_ts timestamp, spend double")
    with pytest.raises(ConfigError, match="reserved"):
        asof_join(labels, ["cid"], "label_ts", [FeatureSource("s", features, {"cid": "cid"}, features={"spend": "spend"})])


def test_times_before_1970_and_at_the_ends_of_the_calendar_match_with_many_sources(spark):
    # Tags share the low bits of the time: negative times (before 1970) and the extremes of
    # Spark's range (year 1, year 9999) must unpack to the same order and values.
    year1, year9999 = -62_135_596_800_000_000, 253_402_300_799_000_000
    times = [year1, year1 + 1, -BASE, -BASE + MINUTE, -1, 0, 1, BASE, year9999 - 1, year9999]
    label_rows = [(k, t, i % 2, f"l{i}") for k in (1, 2) for i, t in enumerate(times)]
    sources = []
    for s in range(7):  # labels get tag 7: three tag bits
        rows = [(k, t, float(s * 100 + i), None) for k in (1, 2) for i, t in enumerate(times) if (i + s + k) % 3 == 0]
        sources.append(RefSource(f"s{s}", rows, ["fa1", "fa2"], None))
    feature_sources = [
        FeatureSource(r.name, f.df, f.join_keys, f.ts_col, {"fa1": f"{r.name}_v", "fa2": f"{r.name}_w"})
        for r, f in zip(sources, [_source(spark, r) for r in sources], strict=True)
    ]
    joined = asof_join(_labels_df(spark, label_rows), ["customer_id"], "label_ts", feature_sources)
    actual = _as_micros(joined, {"label_ts", *(s.ts_output for s in feature_sources)})
    assertDataFrameEqual(actual, _expected_df(spark, python_asof(label_rows, sources), actual))


def test_asof_join_rejects_more_sources_than_the_tag_bits_hold(spark):
    src = _source(spark, RefSource("a", [(1, BASE, 1.0, "x")], ["fa1", "fa2"], None))
    many = [FeatureSource(f"s{i}", src.df, src.join_keys, src.ts_col, {"fa1": f"v{i}", "fa2": f"w{i}"}) for i in range(32)]
    with pytest.raises(ConfigError, match="32 feature sources; at most 31"):
        asof_join(_labels_df(spark, [(1, BASE, 1, "x")]), ["customer_id"], "label_ts", many)
