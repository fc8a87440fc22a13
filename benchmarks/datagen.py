"""Synthetic data throughput: ``generate_transactions`` written to a Delta table, in rows/s.

Baseline ``spark_range_rand``: ``spark.range(n)`` with ``rand()`` columns of the same
names, types and width (a hex id string, three category strings, a timestamp, a
date, numbers) written the same way, with the same number of partitions, in the
same session. The baseline has none of the generator's structure (customers,
seasonality, churn, per-chunk determinism), so the ratio is the price of realism.
A small warm-up of both runs first so that neither pays for starting Python workers
or JIT compilation. Default 10M rows; 100 rows per customer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks import harness
from mlops_spark.datagen import CATEGORIES, CHANNELS, COUNTRIES, generate_transactions
from mlops_spark.datagen_command import overwrite_table

DEFAULT_ROWS = 10_000_000
WARMUP_ROWS = 200_000
START, DAYS = dt.date(2024, 1, 1), 730


def _customers(rows: int) -> int:
    return max(100, rows // 100)


def _pick(values: tuple[str, ...], seed: int) -> Any:
    return F.element_at(F.array(*[F.lit(v) for v in values]), (F.rand(seed) * len(values)).cast("int") + 1)


def range_rand(spark: SparkSession, rows: int, partitions: int) -> DataFrame:
    """``rows`` random rows with the generator's schema, from ``spark.range`` and ``rand()``."""
    start_s = int(dt.datetime(START.year, START.month, START.day, tzinfo=dt.timezone.utc).timestamp())
    event_ts = F.timestamp_seconds(F.lit(start_s) + (F.rand(3) * DAYS * 86_400).cast("long"))
    return spark.range(0, rows, 1, partitions).select(
        F.concat(F.lit("T"), F.lpad(F.lower(F.hex((F.rand(1) * 2**62).cast("long"))), 16, "0")).alias("transaction_id"),
        (F.rand(2) * _customers(rows) + 1).cast("long").alias("customer_id"),
        event_ts.alias("event_ts"),
        F.round(F.exp(F.randn(4) * 0.5 + 3.0), 2).alias("amount"),
        (F.rand(5) * 4 + 1).cast("int").alias("quantity"),
        _pick(CATEGORIES, 6).alias("category"),
        _pick(COUNTRIES, 7).alias("country"),
        _pick(CHANNELS, 8).alias("channel"),
        F.to_date(event_ts).alias("landing_date"),
    )


def _write(df: DataFrame, name: str) -> None:
    overwrite_table(df, name)


def run(rows: int | None = None) -> dict[str, Any]:
    """Generate ``rows`` (default 10M) transactions into Delta with the project and the baseline."""
    rows = rows or DEFAULT_ROWS
    with harness.bench_tmpdir("mlops-bench-datagen-") as tmp:
        spark = harness.bench_spark(tmp, app_name="bench-datagen")
        try:
            partitions = spark.sparkContext.defaultParallelism * 2  # what generate_transactions picks
            project = lambda n: generate_transactions(spark, n, _customers(n), seed=1, start=START, days=DAYS)  # noqa: E731
            _write(project(WARMUP_ROWS), "bronze.bench_datagen")
            _write(range_rand(spark, WARMUP_ROWS, partitions), "bronze.bench_range_rand")
            seconds = {
                "project": harness.best_of(lambda: _write(project(rows), "bronze.bench_datagen")),
                "spark_range_rand": harness.best_of(lambda: _write(range_rand(spark, rows, partitions), "bronze.bench_range_rand")),
            }
            written = {t: spark.table(t).count() for t in ("bronze.bench_datagen", "bronze.bench_range_rand")}
            if set(written.values()) != {rows}:
                raise RuntimeError(f"expected {rows} rows in each table, found {written}")
            res = harness.result("datagen", rows, seconds, harness.peak_rss_mb(spark))
        finally:
            spark.stop()
    harness.print_table(res, {who: {"rows/s": rows / s} for who, s in res["seconds"].items()})
    return res
