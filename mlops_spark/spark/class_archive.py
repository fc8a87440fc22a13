"""The class data sharing archive of local sessions (``make jars`` builds it).

A local Spark session loads and verifies about 20,000 classes before its first job
finishes. The JVM can instead map them from an archive written by an earlier run with
the same Java and class path (JEP 350, dynamic CDS): on a 2-core machine a session then
starts in about 4 s instead of 7 s and its first job takes 1.5 s instead of 3.

:func:`build` runs a small representative session (a Delta table in a throwaway lake
and metastore, a shuffle, a join, an Arrow exchange with a Python worker) in a child
process through the project's own session factory, so the archive's class path is the
one every later local session has; the JVM writes the archive when it exits. The
session factory maps it (setting ``spark.class_archive``); the JVM itself rejects an
archive that no longer matches its jars or Java, and the session then starts as usual.

Usage: ``python -m mlops_spark.spark.class_archive build .jars/cds/spark.jsa``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mlops_spark.errors import MissingDependencyError

# The child's timeout: a session, a few small jobs and the archive dump.
BUILD_TIMEOUT_SECONDS = 600


def build(archive: Path, timeout: float = BUILD_TIMEOUT_SECONDS) -> Path:
    """Write the archive to ``archive`` (replacing it) from a small session in a child process.

    Raises:
        MissingDependencyError: the child failed or the JVM wrote no archive (the message
            carries the child's last output line).
    """
    archive = archive.resolve()
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlops-cds-") as tmp:
        partial = Path(tmp) / "spark.jsa"
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MLOPS_")}
        env["PYSPARK_PYTHON"] = sys.executable
        cmd = [sys.executable, "-m", "mlops_spark.spark.class_archive", "workload", str(partial), str(Path(tmp) / "lake")]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise MissingDependencyError(f"class archive {archive}: the archiving session took over {timeout:.0f}s") from None
        if done.returncode != 0 or not partial.is_file():
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise MissingDependencyError(f"class archive {archive}: the archiving session failed ({lines[-1]})")
        os.replace(partial, archive)
    return archive


def _workload(partial: Path, lake: Path) -> None:
    """The child: a session whose JVM dumps its classes to ``partial`` when it exits."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    from mlops_spark.config import load_settings
    from mlops_spark.spark.session import CDS_QUIET, get_spark

    dump = f"-XX:ArchiveClassesAtExit={partial} {CDS_QUIET}"
    overrides = {
        "lake_root": str(lake),
        "spark": {"class_archive": None, "ui_enabled": False, "shuffle_partitions": 2, "conf": {"spark.driver.extraJavaOptions": dump}},
    }
    settings = load_settings(env="local", overrides=overrides, environ={})
    spark = get_spark(settings, app_name="mlops-spark-class-archive")
    jvm = spark.sparkContext._gateway.proc  # type: ignore[union-attr]
    events = spark.range(2000).select(
        F.col("id"), (F.col("id") % 7).alias("k"), F.col("id").cast("double").alias("v"), F.current_timestamp().alias("ts")
    )
    events.write.format("delta").partitionBy("k").saveAsTable("default.class_archive_events")
    table = spark.table("default.class_archive_events")
    table.groupBy("k").agg(F.sum("v"), F.count("*"), F.max("ts")).collect()
    table.join(table.select("k", F.col("v").alias("w")).distinct(), "k").where("v > w").count()
    spark.sql("UPDATE default.class_archive_events SET v = v + 1 WHERE k = 1")
    spark.sql("DESCRIBE HISTORY default.class_archive_events").collect()

    def identity(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield pa.RecordBatch.from_arrays([batch.column(0)], names=["id"])

    table.select("id").repartition(2, "id").mapInArrow(identity, "id long").write.mode("overwrite").parquet(str(lake / "parquet"))
    spark.read.parquet(str(lake / "parquet")).count()
    spark.stop()
    # The archive is written when the JVM exits: end the gateway and wait for it.
    spark.sparkContext._gateway.shutdown()  # type: ignore[union-attr]
    if jvm is not None:
        if jvm.stdin is not None:
            jvm.stdin.close()
        jvm.wait(timeout=BUILD_TIMEOUT_SECONDS)


def main(argv: list[str]) -> int:
    """Entry point of ``python -m mlops_spark.spark.class_archive``."""
    if len(argv) == 2 and argv[0] == "build":
        try:
            print(f"built {build(Path(argv[1]))}")
        except MissingDependencyError as exc:  # an optimisation: sessions work without it
            print(f"warning: {exc}; local sessions start without it", file=sys.stderr)
        return 0
    if len(argv) == 3 and argv[0] == "workload":
        _workload(Path(argv[1]), Path(argv[2]))
        return 0
    print("usage: python -m mlops_spark.spark.class_archive build ARCHIVE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
