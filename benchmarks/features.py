"""Per-event windowed features: the project's one-pass engine vs three baselines.

Data (``--rows`` N events, default 10,000,000): N synthetic transactions of N/100 customers
over 365 days from :func:`mlops_spark.datagen.generate_transactions`, written once as
Parquet that every contender reads. Features: sum, count and avg of ``amount`` over 7, 30
and 90 days (9 features) for every event, window ``(t - W, t]``; every contender writes its
per-event output (transaction id, customer, time, 9 features) as Parquet.

Contenders:
  ``project``        :func:`mlops_spark.features.windows.compute_windows` (one shuffle, Arrow sort in the worker,
                     numpy prefix sums and binary search per Arrow chunk)
  ``duckdb``         DuckDB, 2 threads, nine ``RANGE BETWEEN ... PRECEDING AND CURRENT ROW`` windows
  ``spark_windows``  Spark with one ``rangeBetween`` window expression per feature
  ``pandas``         ``groupby(customer).rolling('<W>D', closed='right')`` per window (tutorial style;
                     pandas' time windows do not extend over later tied rows, a small semantic
                     difference that does not change the cost)

Each contender's time is the best of ``$MLOPS_BENCH_REPEAT`` runs (default 2; pandas: one run).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from benchmarks import harness

DEFAULT_ROWS = 10_000_000
WINDOWS = {"7d": 7, "30d": 30, "90d": 90}
DAY_US = 86_400_000_000


def _spec() -> Any:
    from mlops_spark.features.spec import parse_feature_set

    return parse_feature_set(
        {
            "name": "bench",
            "source": "bench.events",
            "entity": ["customer_id"],
            "timestamp": "event_ts",
            "aggregations": [{"column": "amount", "functions": ["sum", "count", "avg"], "windows": list(WINDOWS)}],
        }
    )


def _generate(spark: Any, folder: Path, rows: int) -> None:
    from mlops_spark.datagen import generate_transactions

    df = generate_transactions(spark, rows=rows, customers=max(1, rows // 100), seed=7, start="2024-01-01", days=365)
    df.select("transaction_id", "customer_id", "event_ts", "amount").write.mode("overwrite").parquet(str(folder))


def _project(spark: Any, data: Path, out: Path) -> None:
    from mlops_spark.features.windows import compute_windows

    events = spark.read.parquet(str(data))
    compute_windows(events, _spec(), event_columns=["transaction_id"]).write.mode("overwrite").parquet(str(out))


def _spark_windows(spark: Any, data: Path, out: Path) -> None:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    events = spark.read.parquet(str(data)).withColumn("_us", F.unix_micros("event_ts"))
    cols = []
    for name, days in WINDOWS.items():
        w = Window.partitionBy("customer_id").orderBy("_us").rangeBetween(-(days * DAY_US - 1), Window.currentRow)
        cols += [
            F.sum("amount").over(w).alias(f"amount_sum_{name}"),
            F.count("amount").over(w).alias(f"amount_count_{name}"),
            F.avg("amount").over(w).alias(f"amount_avg_{name}"),
        ]
    events.select("customer_id", "event_ts", "transaction_id", *cols).write.mode("overwrite").parquet(str(out))


def _duckdb(data: Path, out: Path) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    exprs = []
    for name, days in WINDOWS.items():
        frame = f"OVER (PARTITION BY customer_id ORDER BY _us RANGE BETWEEN {days * DAY_US - 1} PRECEDING AND CURRENT ROW)"
        exprs += [f"sum(amount) {frame} AS amount_sum_{name}", f"count(amount) {frame} AS amount_count_{name}"]
        exprs += [f"avg(amount) {frame} AS amount_avg_{name}"]
    src = f"(SELECT *, epoch_us(event_ts) AS _us FROM read_parquet('{data}/*.parquet'))"
    query = f"SELECT customer_id, event_ts, transaction_id, {', '.join(exprs)} FROM {src}"
    con.execute(f"COPY ({query}) TO '{out}' (FORMAT parquet)")
    con.close()


def _pandas(data: Path, out: Path) -> None:
    import pandas as pd

    df = pd.read_parquet(data).sort_values(["customer_id", "event_ts"], kind="stable").reset_index(drop=True)
    grouped = df.groupby("customer_id", sort=False)
    for name, days in WINDOWS.items():
        roll = grouped.rolling(f"{days}D", on="event_ts", closed="right")["amount"]
        df[f"amount_sum_{name}"] = roll.sum().to_numpy()
        df[f"amount_count_{name}"] = roll.count().to_numpy()
        df[f"amount_avg_{name}"] = roll.mean().to_numpy()
    df.to_parquet(out)


def run(rows: int | None = None) -> dict[str, Any]:
    """Generate the data, time every contender once on it, print the table and return the result."""
    n = rows or DEFAULT_ROWS
    skip = set(filter(None, os.environ.get("MLOPS_BENCH_FEATURES_SKIP", "").split(",")))
    with harness.bench_tmpdir("mlops-bench-features-") as tmp:
        data = tmp / "events"
        spark = harness.bench_spark(tmp, app_name="bench-features", shuffle_partitions=8)
        _generate(spark, data, n)
        # Warm-up on 1% of the rows: JVM JIT and Python workers, so no contender pays start-up.
        _generate(spark, tmp / "warm", max(1000, n // 100))
        _project(spark, tmp / "warm", tmp / "warm_project")
        _spark_windows(spark, tmp / "warm", tmp / "warm_spark")
        seconds: dict[str, float] = {}
        seconds["project"] = harness.best_of(lambda: _project(spark, data, tmp / "out_project"))
        peak_project = harness.peak_rss_mb(spark)
        seconds["duckdb"] = harness.best_of(lambda: _duckdb(data, tmp / "out_duckdb.parquet"))
        if "spark_windows" not in skip:
            seconds["spark_windows"] = harness.best_of(lambda: _spark_windows(spark, data, tmp / "out_spark"))
        if "pandas" not in skip:
            seconds["pandas"] = harness.best_of(lambda: _pandas(data, tmp / "out_pandas.parquet"), repeat=1)  # 100 s a run, no JVM
        res = harness.result("features", n, seconds, harness.peak_rss_mb(spark))
        spark.stop()
    harness.print_table(res)
    print(f"peak RSS after generation + project only: {peak_project} MiB (upper bound: sum of process peaks)", file=sys.stdout)
    return res
