"""The generator's writers: the ``datagen`` CLI step (Delta table, daily files) and write_daily_parquet."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark import datagen_command
from mlops_spark.cli import build_parser, main
from mlops_spark.datagen import DefectSpec, generate_customers, generate_transactions, write_daily_parquet
from mlops_spark.errors import UsageError
from mlops_spark.spark import delta
from tests.support import REPO_ROOT


def _args(*argv: str):
    return build_parser().parse_args(["datagen", *argv])


def test_cli_writes_the_generated_rows_to_a_named_delta_table_idempotently(spark, settings, unique_name, capsys):
    name, customers_name = f"bronze.{unique_name}", f"bronze.{unique_name}_customers"
    argv = ("--rows", "3000", "--customers", "70", "--seed", "5", "--table", name, "--customers-table", customers_name)
    assert datagen_command.run_command(_args(*argv), settings) == 0
    first = delta.current_version(spark, name)
    assert datagen_command.run_command(_args(*argv), settings) == 0
    assertDataFrameEqual(spark.table(name), generate_transactions(spark, 3_000, 70, seed=5))
    assertDataFrameEqual(delta.read_version(spark, name, first), spark.table(name))
    assertDataFrameEqual(spark.table(customers_name), generate_customers(spark, 70, seed=5))
    assert delta.table_properties(spark, name)["mlops.datagen.seed"] == "5"
    assert "3000 transactions" in capsys.readouterr().out


def test_cli_defects_and_drift_options_reach_the_generator(spark, settings, unique_name):
    name = f"bronze.{unique_name}"
    argv = ("--rows", "2000", "--customers", "40", "--days", "60", "--defects", "--drift-from", "2024-02-01", "--table", name)
    assert datagen_command.run_command(_args(*argv), settings) == 0
    expected = generate_transactions(
        spark, 2_000, 40, days=60, defects=DefectSpec.typical(), drift=datagen_command.DriftSpec(dt.date(2024, 2, 1), 1.5, 0.3)
    )
    assertDataFrameEqual(spark.table(name), expected)


def test_cli_writes_daily_parquet_files(spark, settings, tmp_path):
    folder = tmp_path / "landing"
    argv = ("--rows", "1500", "--customers", "30", "--start", "2024-05-01", "--days", "5", "--parquet-dir", str(folder))
    assert datagen_command.run_command(_args(*argv), settings) == 0
    assert sorted(p.name for p in folder.iterdir()) == [f"2024-05-0{d}.parquet" for d in range(1, 6)]
    assertDataFrameEqual(spark.read.parquet(str(folder)), generate_transactions(spark, 1_500, 30, start="2024-05-01", days=5))


def test_daily_files_hold_one_landing_day_each_with_utc_timestamps_and_rewrite_idempotently(spark, tmp_path):
    df = generate_transactions(spark, 1_200, 20, seed=2, start="2024-01-01", days=4, defects=DefectSpec(late_rate=0.1, late_days=2))
    folder = str(tmp_path / "raw")
    first = write_daily_parquet(df, folder)
    second = write_daily_parquet(df, folder)
    assert first == second
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [f"2024-01-0{d}.parquet" for d in range(1, 7)]
    table = pq.read_table(tmp_path / "raw" / "2024-01-05.parquet")
    assert table.schema.field("event_ts").type == pa.timestamp("us", tz="UTC")
    assert set(table.column("landing_date").to_pylist()) == {dt.date(2024, 1, 5)}
    back = spark.read.parquet(folder)
    assert back.schema["event_ts"].dataType == T.TimestampType()
    assertDataFrameEqual(back, df)


def test_daily_files_refuse_a_missing_day_column(spark, tmp_path):
    df = generate_transactions(spark, 10, 5)
    with pytest.raises(UsageError, match="'ingest_date' is not in"):
        write_daily_parquet(df, str(tmp_path / "x"), by="ingest_date")


def test_cli_rejects_a_bad_table_name_with_exit_code_2(capsys):
    assert main(["datagen", "--rows", "10", "--table", "bronze.bad-name", "--conf-dir", str(REPO_ROOT / "conf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mlops-spark datagen: error: 'bronze.bad-name' is not a table name of the form database.table"]


def test_cli_rejects_a_missing_database(settings, capsys):
    with pytest.raises(UsageError, match="database 'nosuchdb' does not exist"):
        datagen_command.run_command(_args("--rows", "10", "--table", "nosuchdb.t"), settings)


@pytest.mark.parametrize(
    "argv",
    [
        ("--rows", "-5", "--table", "bronze.t"),
        ("--rows", "5"),
        ("--table", "bronze.t", "--parquet-dir", "x"),
        ("--start", "2024-02-30", "--table", "bronze.t"),
    ],
    ids=["negative_rows", "no_target", "two_targets", "bad_start"],
)
def test_cli_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["datagen", *argv])
    assert exit_info.value.code == 2
