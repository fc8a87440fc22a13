"""File ingestion: raw daily Parquet files -> bronze Delta vs a plain Parquet copy.

Data (``--rows`` N, default 5,000,000): synthetic transactions from
:func:`mlops_spark.datagen.generate_transactions` over 90 days, written once as one
Parquet file per landing day (:func:`mlops_spark.datagen.write_daily_parquet`), like a
raw landing zone.

Contenders (same files, same process, same session):
  ``project``             :func:`mlops_spark.ingest.pipeline.run` with ``conf/sources/transactions.yaml``:
                          listing, footer inspection, declared-schema casts, metadata columns,
                          one Delta append partitioned by event date, file tracking, run log
  ``spark_parquet_copy``  ``spark.read.parquet(files).write.parquet(out)``: the same bytes read
                          and written, no schema enforcement, tracking or transaction log
  ``spark_parquet_copy_partitioned``
                          the same copy partitioned by the UTC event date, as bronze is
                          (``partitionBy``): what splitting the rows into one file per date
                          and task costs Parquet alone, without Delta or the project
  ``project_rerun``       the step run again on the same files (nothing new: the incremental
                          check alone)

Steady state, like a daily run: before any timing, every contender runs once on three small
days landed earlier (2023-12-29..31), which creates the source's tables and compiles the
JVM's code for every path. Each timed project run then ingests the 90 files as new files
(hard links under new names in the landing folder) into the existing tables. Each time is
the best of ``$MLOPS_BENCH_REPEAT`` runs (default 2).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from benchmarks import harness

DEFAULT_ROWS = 5_000_000
DAYS = 90
WARM_ROWS = 3_000  # the warm-up's three small days


def run(rows: int | None) -> dict[str, Any]:
    """Time the contenders on the same landed files; print the table; return the result."""
    from pyspark.sql import functions as F

    from mlops_spark import datagen
    from mlops_spark.ingest.pipeline import run as ingest
    from mlops_spark.ingest.sources import load_source

    n = rows or DEFAULT_ROWS
    with harness.bench_tmpdir("mlops-bench-ingest-") as tmp:
        spark = harness.bench_spark(tmp, app_name="bench-ingest")
        settings = harness.bench_settings(tmp)
        sources_dir = str(harness.REPO_ROOT / "conf" / "sources")
        settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"sources_dir": sources_dir})})
        landing = Path(settings.landing_root) / "transactions"
        source = load_source("transactions", settings)
        run_date = dt.date(2024, 4, 1)

        # Warm-up: three small earlier days through every contender (tables created, code compiled).
        warm = datagen.generate_transactions(spark, WARM_ROWS, 300, start=dt.date(2023, 12, 29), days=3, seed=12)
        warm_files = datagen.write_daily_parquet(warm, str(landing))
        event_date = F.to_date(F.col(source.event_time_column)).alias(source.partition_column)

        def copy(paths: list[str], out: str, partitioned: bool = False) -> None:
            if partitioned:
                spark.read.parquet(*paths).select("*", event_date).write.mode("overwrite").partitionBy(source.partition_column).parquet(out)
            else:
                spark.read.parquet(*paths).write.mode("overwrite").parquet(out)

        ingest(spark, settings, source, run_date)
        copy(warm_files, str(tmp / "copy_warm"))
        copy(warm_files, str(tmp / "copy_warm_partitioned"), partitioned=True)

        staged = tmp / "staged"
        data = datagen.generate_transactions(spark, n, max(1, n // 50), start=dt.date(2024, 1, 1), days=DAYS, seed=11)
        files = datagen.write_daily_parquet(data, str(staged))
        baseline = harness.best_of(lambda: copy(files, str(tmp / "copy")))
        partitioned = harness.best_of(lambda: copy(files, str(tmp / "copy_partitioned"), partitioned=True))

        results: list[Any] = []

        def project_run() -> None:
            # The same bytes under names the source has not seen: a new day's files.
            for f in files:
                os.link(f, landing / f"r{len(results)}-{Path(f).name}")
            results.append(ingest(spark, settings, source, run_date))

        project = harness.best_of(project_run)
        again, rerun = harness.timed(lambda: ingest(spark, settings, source, run_date))
        copied = spark.read.parquet(str(tmp / "copy")).count()
        copied_partitioned = spark.read.parquet(str(tmp / "copy_partitioned")).count()
        bronze = spark.table(settings.table("bronze", source.table)).count()
        expected = WARM_ROWS + n * len(results)
        counts_agree = all(r.rows_written == n for r in results) and bronze == expected and copied == copied_partitioned == n
        if not (counts_agree and again.rows_written == 0):
            written = [r.rows_written for r in results]
            raise RuntimeError(
                f"row counts disagree: bronze {bronze} (expected {expected}), written {written}, "
                f"copy {copied}, partitioned copy {copied_partitioned}, rows {n}"
            )
        seconds = {
            "project": project,
            "spark_parquet_copy": baseline,
            "spark_parquet_copy_partitioned": partitioned,
            "project_rerun": rerun,
        }
        res = harness.result("ingest", n, seconds, harness.peak_rss_mb(spark))
        spark.stop()
    harness.print_table(
        res,
        {
            "project": {"files": results[-1].files_ingested, "rows/s": n / project},
            "spark_parquet_copy": {"files": len(files), "rows/s": n / baseline},
            "spark_parquet_copy_partitioned": {"files": len(files), "rows/s": n / partitioned},
            "project_rerun": {"files": again.files_ingested},
        },
    )
    return res
