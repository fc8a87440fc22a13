"""The validate step end to end on Delta tables: bronze -> silver + quarantine + run log."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark.cli import main
from mlops_spark.errors import DataQualityError, UsageError
from mlops_spark.spark import delta
from mlops_spark.validate.pipeline import run
from mlops_spark.validate.settings import ValidateSettings
from mlops_spark.validate.tables import DQ_RUNS_SCHEMA

_module_counter = itertools.count()

NEW_RUN_COLUMNS = ("source_version", "suite_hash", "silver_version", "quarantine_version")

DAY = dt.date(2024, 3, 1)
NEXT = dt.date(2024, 3, 2)

BRONZE_SCHEMA = T.StructType(
    [
        T.StructField("transaction_id", T.StringType()),
        T.StructField("customer_id", T.LongType()),
        T.StructField("event_ts", T.TimestampType()),
        T.StructField("amount", T.DoubleType()),
        T.StructField("quantity", T.IntegerType()),
        T.StructField("category", T.StringType()),
        T.StructField("country", T.StringType()),
        T.StructField("channel", T.StringType()),
        T.StructField("landing_date", T.DateType()),
        T.StructField("_batch_id", T.StringType()),
    ]
)


def _ts(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour))


def _row(tid, cust=1, amount=10.0, qty=1, category="home", country="GB", channel="web", day=DAY, hour=10, landing=None):
    return (tid, cust, _ts(day, hour) if hour is not None else None, amount, qty, category, country, channel, landing or day, "b1")


# One clean row, one per defect, a duplicate pair, a row with three broken rules, and a
# row for the next day that a run for DAY must not touch.
ROWS = [
    _row("t1"),
    _row("t2", cust=None),
    _row("t3", amount=-5.0),
    _row("t4", channel="fax"),
    _row("t5", hour=9),
    _row("t5", hour=12, amount=99.0),
    _row("t6", cust=None, amount=0.0, category="??", channel="fax"),
    _row("t7", country=None, category=None, amount=None),
    _row("t8", day=NEXT),
]


@pytest.fixture
def vsettings(settings):
    """The session's settings without Data Docs (each build costs seconds); one test turns them on."""
    return settings.model_copy(update={"validation": ValidateSettings(data_docs=False)})


@pytest.fixture
def bronze(spark, unique_name):
    name = f"bronze.{unique_name}"
    delta.append(spark.createDataFrame(ROWS, BRONZE_SCHEMA), name, ["landing_date"])
    return name


@pytest.fixture(scope="module")
def validated_day(spark, settings):
    """One validation of DAY on a fresh bronze table, shared by the tests that only read what it wrote."""
    name = f"bronze.validated_day_{next(_module_counter)}"
    delta.append(spark.createDataFrame(ROWS, BRONZE_SCHEMA), name, ["landing_date"])
    vsettings = settings.model_copy(update={"validation": ValidateSettings(data_docs=False)})
    return name, run(spark, vsettings, name, DAY, suite_name="transactions")


def _silver_and_quarantine(spark, bronze_name):
    base = bronze_name.split(".")[1]
    return spark.table(f"silver.{base}"), spark.table(f"quarantine.{base}_rows")


def test_valid_rows_go_to_silver_with_warnings_and_bad_rows_to_quarantine_with_every_broken_rule(spark, validated_day):
    bronze, outcome = validated_day
    silver, quarantine = _silver_and_quarantine(spark, bronze)
    assertDataFrameEqual(
        silver.select("transaction_id", "amount", "_dq_warnings"),
        [Row(transaction_id="t1", amount=10.0, _dq_warnings=[]), Row(transaction_id="t4", amount=10.0, _dq_warnings=["unknown_channel"]),
         Row(transaction_id="t5", amount=10.0, _dq_warnings=[]), Row(transaction_id="t7", amount=None, _dq_warnings=[])],
    )  # fmt: skip
    assertDataFrameEqual(
        quarantine.select("transaction_id", "amount", "_failed_rules", "_run_date"),
        [
            Row(transaction_id="t2", amount=10.0, _failed_rules=["null_customer_id"], _run_date=DAY),
            Row(transaction_id="t3", amount=-5.0, _failed_rules=["non_positive_amount"], _run_date=DAY),
            Row(transaction_id="t5", amount=99.0, _failed_rules=["duplicate_transaction_id"], _run_date=DAY),
            Row(
                transaction_id="t6", amount=0.0,
                _failed_rules=["null_customer_id", "non_positive_amount", "unknown_category", "unknown_channel"], _run_date=DAY,
            ),
        ],
    )  # fmt: skip
    assert (outcome.rows_in, outcome.rows_silver, outcome.rows_quarantined, outcome.rows_warned) == (8, 4, 4, 2)


def _files_per_date(table) -> Counter:
    return Counter(re.search(r"landing_date=([0-9-]+)", f).group(1) for f in table.inputFiles())


def test_validating_all_dates_writes_each_date_of_silver_and_quarantine_in_one_file(spark, vsettings, unique_name):
    # The unique rule's shuffle spreads each date's rows over both partitions; without the
    # repartition by date before the writes each date would get a file per task.
    days = [DAY + dt.timedelta(days=i) for i in range(4)]
    rows = [_row(f"d{i}-{j}", day=d, amount=-1.0 if j < 2 else 10.0) for i, d in enumerate(days) for j in range(8)]
    name = f"bronze.{unique_name}"
    delta.append(spark.createDataFrame(rows, BRONZE_SCHEMA).repartition(3), name, ["landing_date"])
    outcome = run(spark, vsettings, name, days[-1], suite_name="transactions", all_dates=True)
    assert (outcome.rows_in, outcome.rows_silver, outcome.rows_quarantined) == (32, 24, 8)
    silver, quarantine = _silver_and_quarantine(spark, name)
    assert _files_per_date(silver) == _files_per_date(quarantine) == {d.isoformat(): 1 for d in days}


def test_a_validated_date_is_one_file_in_silver_and_one_in_quarantine(spark, validated_day):
    # Below validation.rows_per_file rows, whatever the shuffle partitions (2 here, 200 in prod).
    bronze, _ = validated_day
    silver, quarantine = _silver_and_quarantine(spark, bronze)
    assert _files_per_date(silver) == _files_per_date(quarantine) == {DAY.isoformat(): 1}


def test_run_log_row_records_counts_that_add_up(spark, validated_day):
    bronze, outcome = validated_day
    runs = spark.table("ml.dq_runs").where(F.col("source_table") == bronze)
    assertDataFrameEqual(
        runs.select(
            "run_id", "run_date", "suite", "scope", "status", "rows_in", "rows_silver", "rows_quarantined", "rows_warned", "reconciled"
        ),
        [Row(run_id=outcome.run_id, run_date=DAY, suite="transactions", scope="date", status="passed", rows_in=8, rows_silver=4,
             rows_quarantined=4, rows_warned=2, reconciled=True)],
    )  # fmt: skip


def test_results_table_has_one_row_per_expectation_batch_rule_and_row_rule(spark, validated_day):
    _, outcome = validated_day
    results = spark.table("ml.dq_results").where(F.col("run_id") == outcome.run_id)
    by_check = {(r.check_source, r.rule_name or r.expectation_type, r.column): r for r in results.collect()}
    # 9 columns x (exists, type) + 6 expectations + freshness + 10 row rules
    assert results.count() == 18 + 6 + 1 + 10
    unique = by_check[("gx", "expect_column_values_to_be_unique", "transaction_id")]
    assert (unique.success, unique.unexpected_count, unique.element_count) == (False, 2, 8)
    dup = by_check[("row_rule", "duplicate_transaction_id", "transaction_id")]
    assert (dup.success, dup.unexpected_count, dup.action) == (False, 1, "quarantine")
    fresh = by_check[("batch_rule", "expect_column_max_to_be_fresh", "event_ts")]
    assert (fresh.success, json.loads(fresh.observed_value)) == (True, "2024-03-01T12:00:00")
    typed = by_check[("gx", "expect_column_values_to_be_of_type", "event_ts")]
    assert (typed.success, json.loads(typed.observed_value)) == (True, "TimestampType")


def test_freshness_fails_when_newest_event_is_older_than_the_limit(spark, vsettings, bronze):
    outcome = run(spark, vsettings, bronze, DAY + dt.timedelta(days=0), suite_name="transactions")
    late = run(spark, vsettings, bronze, NEXT, suite_name="transactions")
    fresh = [r for r in outcome.results + late.results if r["expectation_type"] == "expect_column_max_to_be_fresh"]
    assert [r["success"] for r in fresh] == [True, True]
    stale = run(spark, vsettings, bronze, dt.date(2024, 3, 5), suite_name="transactions")
    assert [r["success"] for r in stale.results if r["expectation_type"] == "expect_column_max_to_be_fresh"] == [False]


def test_revalidating_the_same_date_changes_nothing(spark, vsettings, bronze):
    run(spark, vsettings, bronze, DAY, suite_name="transactions")
    run(spark, vsettings, bronze, NEXT, suite_name="transactions")
    silver, quarantine = _silver_and_quarantine(spark, bronze)
    first = (silver.drop("_dq_run_id").collect(), quarantine.drop("_dq_run_id").collect())
    run(spark, vsettings, bronze, DAY, suite_name="transactions")
    silver, quarantine = _silver_and_quarantine(spark, bronze)
    assertDataFrameEqual(silver.drop("_dq_run_id"), first[0])
    assertDataFrameEqual(quarantine.drop("_dq_run_id"), first[1])
    runs = spark.table("ml.dq_runs").where(F.col("source_table") == bronze)
    assert sorted((r.run_date, r.rows_in) for r in runs.collect()) == [(DAY, 8), (NEXT, 1)]
    results = spark.table("ml.dq_results").where(F.col("source_table") == bronze)
    assert results.groupBy("run_date").count().orderBy("run_date").collect() == [Row(run_date=DAY, count=35), Row(run_date=NEXT, count=35)]


@pytest.fixture
def bronze_with_null_event_time(spark, unique_name):
    name = f"bronze.{unique_name}"
    delta.append(spark.createDataFrame([*ROWS, _row("t9", hour=None)], BRONZE_SCHEMA), name, ["landing_date"])
    return name


def test_a_broken_fail_rule_stops_the_step_and_writes_nothing_to_silver(spark, vsettings, bronze_with_null_event_time):
    with pytest.raises(DataQualityError, match=r"rule missing_event_ts broken by 1 rows; nothing written to silver\."):
        run(spark, vsettings, bronze_with_null_event_time, DAY, suite_name="transactions")
    base = bronze_with_null_event_time.split(".")[1]
    assert not delta.table_exists(spark, f"silver.{base}")
    assert not delta.table_exists(spark, f"quarantine.{base}_rows")
    run_row = spark.table("ml.dq_runs").where(F.col("source_table") == bronze_with_null_event_time).first()
    assert (run_row.status, run_row.rows_in, run_row.rows_failed, run_row.rows_silver) == ("failed", 9, 1, 0)


def test_a_bronze_table_without_the_suite_columns_fails_before_any_row_rule(spark, vsettings, unique_name):
    name = f"bronze.{unique_name}"
    delta.append(spark.createDataFrame(ROWS, BRONZE_SCHEMA).drop("channel").withColumn("amount", F.col("amount").cast("string")), name)
    with pytest.raises(DataQualityError, match=r"column amount is string, expected double; missing column channel \(string\)"):
        run(spark, vsettings, name, DAY, suite_name="transactions")
    results = spark.table("ml.dq_results").where(F.col("source_table") == name)
    failed = {(r.expectation_type, r.column) for r in results.where(~F.col("success")).collect()}
    assert failed == {("expect_column_to_exist", "channel"), ("expect_column_values_to_be_of_type", "channel"),
                      ("expect_column_values_to_be_of_type", "amount")}  # fmt: skip


def test_unknown_table_is_a_usage_error(spark, vsettings):
    with pytest.raises(UsageError, match=r"table 'bronze\.no_such_table' does not exist"):
        run(spark, vsettings, "bronze.no_such_table", DAY, suite_name="transactions")


def test_data_docs_html_is_written_under_the_reports_root(spark, settings, bronze):
    run(spark, settings.model_copy(update={"validation": ValidateSettings(data_docs=True)}), bronze, DAY, suite_name="transactions")
    index = Path(settings.reports_root) / "data_docs" / "transactions" / "index.html"
    assert index.is_file() and "transactions" in index.read_text()


@pytest.fixture
def cli_conf(tmp_path: Path, settings) -> Path:
    conf = tmp_path / "validate.yaml"
    # Same Spark sizing as the test session: the CLI's get_spark reuses it and re-applies runtime conf.
    conf.write_text(
        f"lake_root: {settings.lake_root}\nspark:\n  shuffle_partitions: 2\n  ui_enabled: false\nvalidation:\n  data_docs: false\n"
    )
    return conf


def test_cli_exits_1_with_one_line_when_a_fail_rule_breaks(spark, bronze_with_null_event_time, cli_conf, capsys):
    argv = ["validate", "--table", bronze_with_null_event_time, "--suite", "transactions", "--run-date", "2024-03-01"]
    code = main([*argv, "--conf", str(cli_conf), "--log-level", "ERROR"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"mlops-spark validate: error: {bronze_with_null_event_time}: suite 'transactions' failed")


def test_cli_exits_2_with_one_line_for_an_unknown_table(spark, cli_conf, capsys):
    code = main(["validate", "--table", "bronze.nope", "--suite", "transactions", "--conf", str(cli_conf), "--log-level", "ERROR"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == ["mlops-spark validate: error: table 'bronze.nope' does not exist"]


def test_cli_prints_a_summary_line_and_exits_0(spark, bronze, cli_conf, capsys):
    code = main(["validate", "--table", bronze, "--suite", "transactions", "--run-date", "2024-03-01", "--conf", str(cli_conf)])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"validated {bronze} for 2024-03-01: 8 rows in, 4 to silver.")


# --- unchanged inputs: a re-run is skipped and writes nothing ----------------------------

LOG_TABLES = ("ml.dq_runs", "ml.dq_results")
# One row rule and no declared columns or expectations, so GX does not run: these tests are
# about which runs write, and a run of this suite takes a fraction of the full suite's time.
RERUN_SUITE = """
name: rerun_check
date_column: landing_date
rules:
  - {name: non_positive_amount, kind: range, column: amount, min: 0, strict_min: true, action: quarantine}
"""


@pytest.fixture
def rerun_suite(tmp_path: Path) -> Path:
    path = tmp_path / "rerun_check.yaml"
    path.write_text(RERUN_SUITE)
    return path


def _versions(spark, *tables: str) -> dict[str, int]:
    return {t: delta.current_version(spark, t) for t in tables}


def _outputs(bronze_name: str) -> tuple[str, str]:
    base = bronze_name.split(".")[1]
    return f"silver.{base}", f"quarantine.{base}_rows"


def test_a_rerun_on_unchanged_bronze_and_suite_is_skipped_and_writes_no_table(spark, vsettings, bronze, rerun_suite):
    first = run(spark, vsettings, bronze, DAY, suite_name=str(rerun_suite))
    before = _versions(spark, *_outputs(bronze), *LOG_TABLES)
    again = run(spark, vsettings, bronze, DAY, suite_name=str(rerun_suite))
    assert _versions(spark, *_outputs(bronze), *LOG_TABLES) == before
    assert (again.skipped, again.run_id, again.rows_in, again.rows_silver, again.rows_quarantined, again.rows_warned) == (
        True, first.run_id, 8, 6, 2, 0,
    )  # fmt: skip
    run_row = spark.table("ml.dq_runs").where(F.col("source_table") == bronze).first()
    assert (run_row.run_id, run_row.source_version, run_row.silver_version, run_row.quarantine_version) == (
        first.run_id, delta.current_version(spark, bronze), before[_outputs(bronze)[0]], before[_outputs(bronze)[1]],
    )  # fmt: skip


def test_an_append_to_bronze_revalidates(spark, vsettings, bronze, rerun_suite):
    run(spark, vsettings, bronze, DAY, suite_name=str(rerun_suite))
    silver = _outputs(bronze)[0]
    before = delta.current_version(spark, silver)
    delta.append(spark.createDataFrame([_row("t9")], BRONZE_SCHEMA), bronze)
    again = run(spark, vsettings, bronze, DAY, suite_name=str(rerun_suite))
    assert (again.skipped, again.rows_in, again.rows_silver) == (False, 9, 7)
    assert delta.current_version(spark, silver) > before


def test_another_writer_on_silver_revalidates_and_restores_the_rows(spark, vsettings, bronze, rerun_suite):
    run(spark, vsettings, bronze, DAY, suite_name=str(rerun_suite))
    silver = _outputs(bronze)[0]
    spark.sql(f"DELETE FROM {silver} WHERE transaction_id = 't1'")
    again = run(spark, vsettings, bronze, DAY, suite_name=str(rerun_suite))
    assert not again.skipped
    assert sorted(r.transaction_id for r in spark.table(silver).collect()) == ["t1", "t2", "t4", "t5", "t5", "t7"]


def test_an_edited_suite_revalidates_even_with_the_same_version(spark, vsettings, bronze, rerun_suite):
    run(spark, vsettings, bronze, DAY, suite_name=str(rerun_suite))
    rerun_suite.write_text(RERUN_SUITE.replace("min: 0,", "min: 50,"))
    again = run(spark, vsettings, bronze, DAY, suite_name=str(rerun_suite))
    assert (again.skipped, again.rows_silver, again.rows_quarantined) == (False, 2, 6)


def test_a_run_log_without_version_columns_takes_them_on_the_next_run(spark, vsettings, bronze, rerun_suite, unique_name):
    db = f"ml_{unique_name}"[:60]
    spark.sql(f"CREATE DATABASE `{db}` LOCATION {delta.sql_literal(vsettings.database_location(db))}")
    legacy = vsettings.model_copy(update={"databases": vsettings.databases.model_copy(update={"ml": db})})
    old_schema = T.StructType([f for f in DQ_RUNS_SCHEMA.fields if f.name not in NEW_RUN_COLUMNS])
    delta.create_table(spark, f"{db}.dq_runs", old_schema)
    first = run(spark, legacy, bronze, DAY, suite_name=str(rerun_suite))
    runs = spark.table(f"{db}.dq_runs")
    assert set(NEW_RUN_COLUMNS) <= set(runs.columns)
    assert runs.where(F.col("run_id") == first.run_id).first().source_version == delta.current_version(spark, bronze)
    assert run(spark, legacy, bronze, DAY, suite_name=str(rerun_suite)).skipped


def test_cli_marks_an_unchanged_rerun_skipped_and_force_revalidates(spark, bronze, rerun_suite, cli_conf, capsys):
    argv = ["validate", "--table", bronze, "--suite", str(rerun_suite), "--run-date", "2024-03-01", "--conf", str(cli_conf)]
    assert main(argv) == 0
    first = capsys.readouterr().out.strip()
    silver = _outputs(bronze)[0]
    version = delta.current_version(spark, silver)
    assert main(argv) == 0
    skipped = capsys.readouterr().out.strip()
    run_id = first.rsplit("(run ", 1)[1].rstrip(")")
    marker = f"; skipped: already validated at bronze version {delta.current_version(spark, bronze)}, nothing written)"
    assert skipped == first.removesuffix(")") + marker
    assert run_id in skipped and delta.current_version(spark, silver) == version
    assert main([*argv, "--force"]) == 0
    forced = capsys.readouterr().out.strip()
    assert "skipped" not in forced and run_id not in forced
    assert delta.current_version(spark, silver) > version
