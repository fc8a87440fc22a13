"""Schemas and names of the bookkeeping tables of file ingestion.

- ``bronze._ingested_files``: one row per file identity (source, path, size, mtime) with its
  status: ``ingested`` or ``quarantined``, written after the bronze commit of its batch.
- ``quarantine.<source>_files``: every quarantined file with its reason.
- ``ml.ingest_runs``: one row per batch: files and rows read, written, quarantined.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from mlops_spark.config.settings import Settings
from mlops_spark.spark import delta

TRACKING_TABLE = "_ingested_files"
RUNS_TABLE = "ingest_runs"

TRACKING_SCHEMA = T.StructType(
    [
        T.StructField("source", T.StringType(), False, {"comment": "source name (conf/sources/<source>.yaml)"}),
        T.StructField("file_path", T.StringType(), False, {"comment": "fully qualified file path"}),
        T.StructField("file_size", T.LongType(), False, {"comment": "size in bytes when seen"}),
        T.StructField("file_mtime", T.TimestampType(), False, {"comment": "modification time when seen (UTC)"}),
        T.StructField("status", T.StringType(), False, {"comment": "ingested or quarantined"}),
        T.StructField("batch_id", T.StringType(), False, {"comment": "batch that handled the file"}),
        T.StructField("rows", T.LongType(), True, {"comment": "rows in the file (from its footer; null when unreadable)"}),
        T.StructField("recorded_at", T.TimestampType(), False, {"comment": "when this status was recorded (UTC)"}),
    ]
)

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("source", T.StringType(), False, {"comment": "source name"}),
        T.StructField("file_path", T.StringType(), False, {"comment": "fully qualified path of the rejected file"}),
        T.StructField("file_size", T.LongType(), False, {"comment": "size in bytes"}),
        T.StructField("file_mtime", T.TimestampType(), False, {"comment": "modification time (UTC)"}),
        T.StructField("reason", T.StringType(), False, {"comment": "why the file was not ingested"}),
        T.StructField("rows", T.LongType(), True, {"comment": "rows in the file (null when the footer is unreadable)"}),
        T.StructField("batch_id", T.StringType(), False, {"comment": "batch that quarantined the file"}),
        T.StructField("quarantined_at", T.TimestampType(), False, {"comment": "when (UTC)"}),
    ]
)

RUNS_SCHEMA = T.StructType(
    [
        T.StructField("batch_id", T.StringType(), False, {"comment": "batch id (bronze _batch_id)"}),
        T.StructField("source", T.StringType(), False, {"comment": "source name"}),
        T.StructField("kind", T.StringType(), False, {"comment": "files or kafka"}),
        T.StructField("run_date", T.DateType(), False, {"comment": "logical date of the run"}),
        T.StructField("started_at", T.TimestampType(), False, {"comment": "start (UTC)"}),
        T.StructField("finished_at", T.TimestampType(), False, {"comment": "end (UTC)"}),
        T.StructField("files_seen", T.LongType(), True, {"comment": "files listed in the landing folder"}),
        T.StructField("files_skipped", T.LongType(), True, {"comment": "files already ingested or quarantined before"}),
        T.StructField("files_ingested", T.LongType(), True, {"comment": "files written to bronze by this batch"}),
        T.StructField("files_quarantined", T.LongType(), True, {"comment": "files quarantined by this batch"}),
        T.StructField("files_recovered", T.LongType(), True, {"comment": "files of an interrupted batch found in bronze"}),
        T.StructField("rows_read", T.LongType(), False, {"comment": "rows in the batch's readable files"}),
        T.StructField("rows_written", T.LongType(), False, {"comment": "rows appended to bronze (Delta numOutputRows)"}),
        T.StructField("rows_quarantined", T.LongType(), False, {"comment": "rows in quarantined files"}),
        T.StructField("status", T.StringType(), False, {"comment": "ok, or quarantined when files were quarantined"}),
    ]
)


def tracking_table(settings: Settings) -> str:
    """Name of the file-tracking table."""
    return settings.table("bronze", TRACKING_TABLE)


def quarantine_table(settings: Settings, source_name: str) -> str:
    """Name of the file quarantine table of a source."""
    return settings.table("quarantine", f"{source_name}_files")


def runs_table(settings: Settings) -> str:
    """Name of the ingestion run log."""
    return settings.table("ml", RUNS_TABLE)


def ensure_tables(spark: SparkSession, settings: Settings, source_name: str) -> None:
    """Create the bookkeeping tables if they do not exist."""
    delta.create_table(
        spark,
        tracking_table(settings),
        TRACKING_SCHEMA,
        partition_by=["source"],
        comment="Raw files seen by file ingestion, by path + size + mtime, with their status",
    )
    delta.create_table(
        spark,
        quarantine_table(settings, source_name),
        QUARANTINE_SCHEMA,
        comment=f"Files of source {source_name} that were not ingested, with the reason",
    )
    delta.create_table(spark, runs_table(settings), RUNS_SCHEMA, comment="One row per ingestion batch: files and rows accounted")
