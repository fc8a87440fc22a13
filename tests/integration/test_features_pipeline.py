"""The feature pipeline on real Delta tables: snapshots, per-event tables, idempotency, lineage."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark.cli import main
from mlops_spark.errors import ConfigError
from mlops_spark.features import pipeline
from mlops_spark.features.spec import parse_feature_set
from mlops_spark.spark import delta
from tests.feature_reference import duckdb_per_event, loop_at_queries, random_events
from tests.unit.test_feature_windows import EVENT_SCHEMA, _assert_same, _events

DAY = dt.date(2024, 1, 20)


def _spec(name: str, source: str, windows: list[str], per_event: bool = False, **extra: object):
    return parse_feature_set(
        {
            "name": name,
            "source": source,
            "entity": ["customer_id"],
            "timestamp": "event_ts",
            "event_id": "event_id",
            "aggregations": [
                {"column": "amount", "functions": ["count", "sum", "avg", "min", "max", "stddev", "last"], "windows": windows},
                {"column": "category", "functions": ["distinct_count"], "windows": windows},
            ],
            "ratios": [{"name": "ratio", "numerator": f"amount_sum_{windows[0]}", "denominator": f"amount_sum_{windows[-1]}"}],
            "per_event": per_event,
            **extra,
        }
    )


@pytest.fixture(scope="module")
def source(spark, settings):
    """A silver-like Delta table of random events (ties, nulls, single-event customers)."""
    pdf = random_events(seed=21, entities=25, events=900)
    name = settings.table("silver", "features_src_events")
    delta.append(_events(spark, pdf), name)
    return name, pdf


def test_snapshot_rows_match_a_python_loop_at_the_end_of_the_day(spark, settings, source, unique_name) -> None:
    name, pdf = source
    spec = _spec(unique_name, name, ["1d", "7d", "lifetime"])
    pipeline.run(spark, settings, spec, DAY)
    got = spark.table(settings.table("features", unique_name)).toPandas()
    end = pd.Timestamp(DAY) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    active = pdf[(pdf.event_ts <= end) & (pdf.event_ts > end - pd.Timedelta(days=7))]["customer_id"].unique()
    queries = pd.DataFrame({"customer_id": sorted(active), "feature_ts": end, "feature_date": DAY})
    expected = loop_at_queries(pdf, queries, spec, "feature_ts")
    expected["ratio"] = [
        a / b if a is not None and not pd.isna(a) and b not in (None, 0) else None
        for a, b in zip(expected["amount_sum_1d"], expected["amount_sum_lifetime"], strict=True)
    ]
    got["feature_ts"] = pd.to_datetime(got["feature_ts"])
    _assert_same(got.drop(columns=["feature_ts"]), expected.drop(columns=["feature_ts"]), ["customer_id"])
    assert (got["feature_ts"] == end).all()


def test_second_run_for_the_same_date_changes_nothing(spark, settings, source, unique_name) -> None:
    name, _ = source
    spec = _spec(unique_name, name, ["1d", "7d"])
    table = settings.table("features", unique_name)
    pipeline.run(spark, settings, spec, DAY)
    first = spark.table(table).collect()
    pipeline.run(spark, settings, spec, DAY)
    second = spark.table(table)
    assert second.count() == len(first)
    assertDataFrameEqual(second, first)


def test_incremental_run_equals_the_same_day_of_a_backfill(spark, settings, source, unique_name) -> None:
    name, _ = source
    backfill = _spec(unique_name + "_b", name, ["1d", "7d"])
    daily = _spec(unique_name + "_d", name, ["1d", "7d"])
    pipeline.run(spark, settings, backfill, DAY - dt.timedelta(days=3), DAY + dt.timedelta(days=2))
    pipeline.run(spark, settings, daily, DAY)
    assertDataFrameEqual(
        spark.table(settings.table("features", unique_name + "_d")),
        spark.table(settings.table("features", unique_name + "_b")).where(F.col("feature_date") == F.lit(DAY)),
    )


def test_per_event_table_matches_duckdb_for_the_events_of_the_day(spark, settings, source, unique_name) -> None:
    name, pdf = source
    spec = _spec(unique_name, name, ["1d", "7d"], per_event=True)
    pipeline.run(spark, settings, spec, DAY)
    got = spark.table(settings.table("features", unique_name + "_events")).toPandas()
    expected = duckdb_per_event(pdf, spec, "event_id")
    day_ids = pdf.loc[pdf.event_ts.dt.date == DAY, "event_id"]
    expected = expected[expected.event_id.isin(day_ids)]
    _assert_same(got.drop(columns=["customer_id", "event_ts", "event_date"]), expected, ["event_id"])


def test_tables_carry_comments_keys_and_a_lineage_row(spark, settings, source, unique_name) -> None:
    name, pdf = source
    spec = _spec(unique_name, name, ["1d", "7d"])
    source_version = delta.current_version(spark, name)
    pipeline.run(spark, settings, spec, DAY)
    table = settings.table("features", unique_name)
    props = delta.table_properties(spark, table)
    assert (props["mlops.primary_key"], props["mlops.timestamp_column"], props["mlops.definition_hash"]) == (
        "customer_id,feature_date",
        "feature_ts",
        spec.definition_hash(),
    )
    comments = delta.column_comments(spark, table)
    assert set(spec.feature_names()) <= set(comments)
    assert "function=sum; window=7d; source=" + name in comments["amount_sum_7d"]
    lineage = spark.table(settings.table("ml", "feature_runs")).where(F.col("feature_table") == table).collect()
    assert len(lineage) == 1
    row = lineage[0]
    end = pd.Timestamp(DAY) + pd.Timedelta(days=1)
    in_range = int(((pdf.event_ts < end) & (pdf.event_ts > pd.Timestamp(DAY) - pd.Timedelta(days=7))).sum())
    written = spark.table(table).count()
    assert (row.source_table, row.source_version, row.definition_hash, row.rows_read, row.rows_written, row.rows_null_key) == (
        name,
        source_version,
        spec.definition_hash(),
        in_range,
        written,
        0,
    )
    assert len(row.code_version) >= 7


def test_changed_definition_is_refused_without_rebuild(spark, settings, source, unique_name) -> None:
    name, _ = source
    pipeline.run(spark, settings, _spec(unique_name, name, ["1d", "7d"]), DAY)
    with pytest.raises(ConfigError, match=f"feature set '{unique_name}': definition changed"):
        pipeline.run(spark, settings, _spec(unique_name, name, ["1d", "30d"]), DAY)


def test_derived_column_with_unknown_column_names_the_feature_set_and_field(spark, settings, source, unique_name) -> None:
    name, _ = source
    spec = _spec(unique_name, name, ["1d"], columns={"net": "amount * qty"})
    with pytest.raises(ConfigError, match=f"feature set '{unique_name}': columns.net: cannot evaluate 'amount \\* qty'"):
        pipeline.run(spark, settings, spec, DAY)


def test_cli_unknown_feature_set_exits_2_with_one_line(tmp_path, capsys) -> None:
    (tmp_path / "spend.yaml").write_text("name: spend\n")
    code = main(["features", "--definitions-dir", str(tmp_path), "--feature-set", "nope", "--run-date", "2024-01-20"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == f"mlops-spark features: error: unknown feature set 'nope': {tmp_path / 'nope.yaml'} not found (defined: spend)"


def test_cli_bad_definition_file_exits_2_naming_the_field(tmp_path, capsys) -> None:
    path = tmp_path / "spend.yaml"
    path.write_text(
        "name: spend\nsource: silver.t\nentity: [c]\ntimestamp: ts\n"
        "aggregations:\n  - {column: amount, functions: [sum], windows: [7 days]}\n"
    )
    code = main(["features", "--definition", str(path), "--run-date", "2024-01-20"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith(f"mlops-spark features: error: feature set 'spend' ({path}): aggregations.0.windows: bad window '7 days'")


def test_null_entity_rows_are_counted_in_lineage(spark, settings, unique_name) -> None:
    src = settings.table("silver", unique_name + "_src")
    t = dt.datetime(2024, 1, 20, 9)
    rows = [("a", 1, t, 1.0, "x"), ("b", None, t, 2.0, "x"), ("c", 2, None, 3.0, "y")]
    delta.append(spark.createDataFrame(rows, EVENT_SCHEMA), src)
    spec = _spec(unique_name, src, ["1d", "lifetime"])
    pipeline.run(spark, settings, spec, DAY)
    row = spark.table(settings.table("ml", "feature_runs")).where(F.col("feature_set") == unique_name).first()
    assert (row.rows_read, row.rows_null_key, row.rows_written) == (3, 2, 1)


def test_weekly_snapshots_end_on_period_ends_and_daily_runs_rebuild_the_backfill(spark, settings, source, unique_name) -> None:
    """7-day periods count from 1970-01-01: a backfill starting mid-period writes the period
    containing its start; a daily run writes a period only on its last day; re-runs change nothing."""
    name, pdf = source
    weekly = {"snapshot": {"granularity": "7d", "lookback": "30d"}}
    backfill = _spec(unique_name + "_b", name, ["1d", "7d"], **weekly)
    daily = _spec(unique_name + "_d", name, ["1d", "7d"], **weekly)
    start, end = DAY - dt.timedelta(days=10), DAY + dt.timedelta(days=10)
    pipeline.run(spark, settings, backfill, start, end)
    pipeline.run(spark, settings, backfill, start, end)  # idempotent
    got = spark.table(settings.table("features", unique_name + "_b")).toPandas()
    # Periods ending in [start, end], stamped with their last microsecond.
    epoch = dt.date(1970, 1, 1)
    ends = [epoch + dt.timedelta(days=7 * p + 6) for p in range(20_000) if start <= epoch + dt.timedelta(days=7 * p + 6) <= end]
    stamps = sorted({pd.Timestamp(e) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1) for e in ends})
    assert sorted(pd.to_datetime(got["feature_ts"]).unique()) == stamps
    assert (pd.to_datetime(got["feature_date"]) == pd.to_datetime(got["feature_ts"]).dt.normalize() - pd.Timedelta(days=6)).all()
    # The same rows as a plain loop at each period end, for customers active in the 30-day look-back.
    queries = pd.concat(
        pd.DataFrame(
            {
                "customer_id": sorted(pdf[(pdf.event_ts <= ts) & (pdf.event_ts > ts - pd.Timedelta(days=30))]["customer_id"].unique()),
                "feature_ts": ts,
            }
        )
        for ts in stamps
    )
    expected = loop_at_queries(pdf, queries, backfill, "feature_ts")
    cols = ["customer_id", "feature_ts", "amount_sum_1d", "amount_count_7d", "amount_sum_7d"]
    got["feature_ts"] = pd.to_datetime(got["feature_ts"])
    _assert_same(got[cols], expected[cols], ["customer_id", "feature_ts"])
    # Daily runs rebuild the same table: on a period's last day they write it, on other days nothing.
    for day in [ends[0] - dt.timedelta(days=1), *ends]:
        pipeline.run(spark, settings, daily, day)
        if day not in ends:
            assert spark.table(settings.table("features", unique_name + "_d")).count() == 0
    assertDataFrameEqual(
        spark.table(settings.table("features", unique_name + "_d")), spark.table(settings.table("features", unique_name + "_b"))
    )


# --- unchanged inputs: a re-run is skipped and writes nothing ----------------------------


def test_a_rerun_on_unchanged_source_and_definition_writes_no_table(spark, settings, source, unique_name) -> None:
    name, _ = source
    spec = _spec(unique_name, name, ["1d", "7d"], per_event=True)
    tables = [settings.table("features", unique_name), settings.table("features", unique_name + "_events")]
    first = pipeline.run(spark, settings, spec, DAY)
    runs = settings.table("ml", "feature_runs")
    before = {t: delta.current_version(spark, t) for t in [*tables, runs]}
    again = pipeline.run(spark, settings, spec, DAY)
    assert {t: delta.current_version(spark, t) for t in [*tables, runs]} == before
    assert [(r.table, r.rows_written, r.skipped) for r in again] == [(r.table, r.rows_written, True) for r in first]
    lineage = spark.table(runs).where(F.col("feature_set") == unique_name)
    assert sorted((r.feature_table, r.table_version) for r in lineage.collect()) == sorted((t, before[t]) for t in tables)


def test_an_append_to_the_source_recomputes(spark, settings, unique_name) -> None:
    src = settings.table("silver", unique_name + "_src")
    t = dt.datetime(2024, 1, 20, 9)
    delta.append(spark.createDataFrame([("a", 1, t, 1.0, "x")], EVENT_SCHEMA), src)
    spec = _spec(unique_name, src, ["1d"])
    table = settings.table("features", unique_name)
    pipeline.run(spark, settings, spec, DAY)
    version = delta.current_version(spark, table)
    delta.append(spark.createDataFrame([("b", 2, t, 2.0, "y")], EVENT_SCHEMA), src)
    [again] = pipeline.run(spark, settings, spec, DAY)
    assert (again.skipped, again.rows_written, again.source_version) == (False, 2, delta.current_version(spark, src))
    assert delta.current_version(spark, table) > version


def test_another_writer_on_the_feature_table_recomputes_and_restores_the_rows(spark, settings, source, unique_name) -> None:
    name, _ = source
    spec = _spec(unique_name, name, ["1d"])
    table = settings.table("features", unique_name)
    pipeline.run(spark, settings, spec, DAY)
    first = spark.table(table).collect()
    spark.sql(f"DELETE FROM {table} WHERE customer_id = {first[0].customer_id}")
    [again] = pipeline.run(spark, settings, spec, DAY)
    assert not again.skipped
    assertDataFrameEqual(spark.table(table), first)


def test_cli_marks_an_unchanged_rerun_skipped_and_force_recomputes(spark, settings, source, unique_name, tmp_path, capsys) -> None:
    name, _ = source
    conf = tmp_path / "features.yaml"
    conf.write_text(f"lake_root: {settings.lake_root}\nspark:\n  shuffle_partitions: 2\n  ui_enabled: false\n")
    definition = tmp_path / f"{unique_name}.yaml"
    definition.write_text(
        f"name: {unique_name}\nsource: {name}\nentity: [customer_id]\ntimestamp: event_ts\n"
        "aggregations:\n  - {column: amount, functions: [sum], windows: [1d]}\n"
    )
    table = settings.table("features", unique_name)
    argv = ["features", "--definition", str(definition), "--run-date", DAY.isoformat(), "--conf", str(conf)]
    assert main(argv) == 0
    first = capsys.readouterr().out.strip()
    version = delta.current_version(spark, table)
    assert main(argv) == 0
    skipped = capsys.readouterr().out.strip()
    assert skipped == first.removesuffix(")") + "; skipped: already computed from this source version and definition, nothing written)"
    assert delta.current_version(spark, table) == version
    assert main([*argv, "--force"]) == 0
    assert capsys.readouterr().out.strip() == first
    assert delta.current_version(spark, table) > version
