"""``ingest`` step: raw files (local or ``s3a://``) into a bronze Delta table, incrementally.

One batch (:func:`run_files`):

1. list the landing folder; settle an interrupted earlier batch (see below);
2. keep files not yet tracked in ``bronze._ingested_files`` (path + size + mtime);
3. read each new file's Parquet footer (driver, in parallel): unreadable / truncated
   files are quarantined; readable ones are grouped by physical schema, and each
   schema is mapped onto the declared one (:func:`files.cast_plan`); files whose values
   could fail a cast are checked first;
4. append the good files' rows to bronze in ONE Delta commit whose ``userMetadata`` is
   the batch id; columns that every file of the batch stores without a dictionary are
   written without one too (see :data:`PARQUET_DICTIONARY`), and the per-file constants
   ``_source_file`` and ``_batch_id`` without Parquet statistics (:data:`NO_PARQUET_STATISTICS`),
   each task writing to all its dates' files at once (:data:`~mlops_spark.spark.delta.OPEN_FILES_PER_TASK`);
5. record quarantined files (``quarantine.<source>_files``), then append the batch's files
   to the tracking table (``ingested`` / ``quarantined``), then the run log row.

Crash safety comes from that order: bronze is committed before the files are tracked.
If the process dies in between, the next run finds a recent bronze commit whose batch id
has no tracking rows, and tracks the files that have rows of that batch in bronze instead
of appending them again. Files of that batch without rows in bronze (empty or
quarantined files) are simply inspected again. One run per source at a time (concurrent
runs of the same source would both see the same new files).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.config.settings import Settings
from mlops_spark.errors import DataQualityError, UsageError
from mlops_spark.ingest import files as fx
from mlops_spark.ingest import tables
from mlops_spark.ingest.kafka_spec import KafkaSource
from mlops_spark.ingest.sources import FileSource, load_source
from mlops_spark.io.files import FileInfo, list_files, read_footers
from mlops_spark.log import fields
from mlops_spark.spark import delta
from mlops_spark.spark.session import runtime_conf

log = logging.getLogger(__name__)
LISTING_THRESHOLD = "spark.sql.sources.parallelPartitionDiscovery.threshold"

_FILE = "_source_file"

# Files of one physical schema: how they are cast, the schema, the files.
Group = tuple[fx.CastPlan, T.StructType, list[FileInfo]]


@dataclass
class IngestResult:
    """What one ingestion batch did; ``quarantined`` maps file path -> reason."""

    source: str
    batch_id: str
    files_seen: int = 0
    files_skipped: int = 0
    files_ingested: int = 0
    files_recovered: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    quarantined: dict[str, str] = field(default_factory=dict)

    @property
    def files_quarantined(self) -> int:
        """Number of files quarantined by this batch."""
        return len(self.quarantined)

    def summary(self) -> dict[str, Any]:
        """The counters as a dict (for logs and the CLI)."""
        return {
            "source": self.source,
            "batch_id": self.batch_id,
            "files_seen": self.files_seen,
            "files_skipped": self.files_skipped,
            "files_ingested": self.files_ingested,
            "files_quarantined": self.files_quarantined,
            "files_recovered": self.files_recovered,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_quarantined": self.rows_quarantined,
        }


def run(
    spark: SparkSession,
    settings: Settings,
    source: str | Any,
    run_date: dt.date,
    strict: bool = False,
    mode: str | None = None,
) -> Any:
    """Ingest one source: a name (``conf/sources/<name>.yaml``) or a loaded source model.

    Dispatches on the source's ``kind``: ``files`` runs :func:`run_files`; ``kafka`` runs the
    streaming ingestion with ``mode`` (``available-now`` or ``continuous``).

    Raises:
        ConfigError: unknown or invalid source.
        UsageError: ``mode=continuous`` for a file source.
        DataQualityError: ``strict`` and some files were quarantined.
    """
    src = load_source(source, settings) if isinstance(source, str) else source
    if isinstance(src, KafkaSource):
        from mlops_spark.ingest.kafka import run_kafka  # Structured Streaming only when needed

        outcome = run_kafka(spark, settings, src, mode=mode or "available-now")  # type: ignore[arg-type]  # run_kafka checks the mode
        if strict and outcome.rows_quarantined:
            raise DataQualityError(f"ingest {src.name}: {outcome.rows_quarantined} message(s) quarantined in {outcome.quarantine_table}")
        return outcome
    if mode == "continuous":
        raise UsageError(f"source '{src.name}' is a file source: --mode continuous is for kafka sources")
    return run_files(spark, settings, src, run_date, strict=strict)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def run_files(spark: SparkSession, settings: Settings, source: FileSource, run_date: dt.date, strict: bool = False) -> IngestResult:
    """One incremental batch of a file source into ``bronze.<source.table>``.

    Output tables: ``bronze.<table>`` (declared columns, ``_ingested_at``, ``_source_file``,
    ``_batch_id``, partition column), ``quarantine.<source>_files``, ``bronze._ingested_files``,
    ``ml.ingest_runs`` (a row only when the batch found files or recovered some).

    Raises:
        ConfigError: the landing folder does not exist.
        DataQualityError: ``strict`` and some files were quarantined (after everything
            else was ingested and recorded).
    """
    started = _utcnow()
    batch_id = f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    result = IngestResult(source.name, batch_id)
    bronze = settings.table("bronze", source.table)
    tables.ensure_tables(spark, settings, source.name)
    delta.create_table(
        spark,
        bronze,
        fx.bronze_schema(source),
        partition_by=[source.partition_column],
        comment=f"Raw rows of source {source.name}, append-only, as landed",
        # Readers prune bronze by its date partition; min/max statistics of every column
        # (Delta's default: the first 32) doubled the cost of the append in the ingest
        # benchmark, so bronze keeps them for the event time and the batch columns only.
        properties={"delta.dataSkippingStatsColumns": f"{source.event_time_column},_ingested_at,_batch_id"},
    )
    listed = list_files(spark, source.landing_uri(settings), source.file_pattern)
    seen = _tracked(spark, settings, source.name)
    result.files_recovered = _recover(spark, settings, source, bronze, listed, {t.batch_id for t in seen})
    if result.files_recovered:
        seen = _tracked(spark, settings, source.name)
    selection = fx.select_files(listed, seen)
    result.files_seen, result.files_skipped = len(listed), len(selection.skipped)
    log.info("ingest files listed", extra=fields(source=source.name, batch_id=batch_id, seen=len(listed), new=len(selection.new)))

    bad: dict[str, tuple[FileInfo, str, int | None]] = {}
    for info, previous in selection.changed:
        reason = f"file changed after it was ingested by batch {previous.batch_id} (size/mtime differ); landing files must be immutable"
        bad[info.path] = (info, reason, None)
    groups, rows_by_file, plain = _inspect(spark, settings, source, selection.new, bad)
    good = [f for _, _, group in groups for f in group]

    written_files: list[FileInfo] = []
    if good:
        no_dictionary = sorted(_common_plain(good, plain) & set(source.columns))
        if no_dictionary:
            log.info("bronze columns written without a dictionary", extra=fields(batch_id=batch_id, columns=no_dictionary))
        with (
            _parquet_off(spark, PARQUET_DICTIONARY, no_dictionary),
            _parquet_off(spark, PARQUET_STATISTICS, NO_PARQUET_STATISTICS),
            # A task holding many event dates sorted all its rows by date before writing: 5M rows in 90
            # files, alternated 5 rounds in one JVM, medians 17.6 s wall and 32.2 CPU s sorted, 13.7 s
            # and 25.5 CPU s with 128 open files (the same rows in as many files).
            runtime_conf(spark, delta.OPEN_FILES_PER_TASK, str(settings.ingest.open_files_per_task)),
        ):
            written_files = _write_bronze(spark, source, bronze, groups, batch_id, started, bad)
        result.files_ingested = len(written_files)
        result.rows_written = delta.last_commit(spark, bronze, batch_id)[1] if written_files else 0
        expected = sum(rows_by_file.get(f.path, 0) for f in written_files)
        if result.rows_written != expected:
            log.error(
                "bronze rows differ from file footers", extra=fields(batch_id=batch_id, written=result.rows_written, footers=expected)
            )
    _record_quarantine(spark, settings, source, batch_id, started, bad)
    tracked = [(f, "ingested", rows_by_file.get(f.path)) for f in written_files]
    tracked += [(info, "quarantined", rows) for info, _, rows in bad.values()]
    _track(spark, settings, source.name, tracked, batch_id, _utcnow())
    for path, (_, reason, rows) in bad.items():
        result.quarantined[path] = reason
        result.rows_quarantined += rows or 0
    result.rows_read = sum(rows_by_file.get(f.path, 0) for f in written_files) + result.rows_quarantined
    if selection.new or selection.changed or result.files_recovered:
        _log_run(spark, settings, result, run_date, started)
    log.info("ingest batch done", extra=fields(**result.summary()))
    if strict and result.quarantined:
        first = next(iter(result.quarantined.items()))
        raise DataQualityError(
            f"ingest {source.name}: {result.files_quarantined} file(s) quarantined in "
            f"{tables.quarantine_table(settings, source.name)} (first: {first[0]}: {first[1]})"
        )
    return result


# -- inspection -----------------------------------------------------------------------


def _inspect(
    spark: SparkSession,
    settings: Settings,
    source: FileSource,
    new: list[FileInfo],
    bad: dict[str, tuple[FileInfo, str, int | None]],
) -> tuple[list[Group], dict[str, int], dict[str, frozenset[str] | None]]:
    """Footers, schema plans and value checks of the new files.

    Returns the ingestible files grouped by cast plan, rows per file (from footers), and
    per file the columns it stores without a dictionary (:attr:`Footer.plain_columns`);
    adds the files to quarantine to ``bad``.
    """
    footers = read_footers(spark, [f.path for f in new], settings.ingest.footer_threads)
    rows_by_file: dict[str, int] = {}
    plain: dict[str, frozenset[str] | None] = {}
    by_schema: dict[str, list[FileInfo]] = defaultdict(list)
    for info, footer in zip(new, footers, strict=True):
        if footer.error is not None:
            bad[info.path] = (info, f"not a readable Parquet file: {footer.error}", None)
            continue
        rows_by_file[info.path] = int(footer.rows or 0)
        plain[info.path] = footer.plain_columns
        by_schema[str(footer.schema)].append(info)

    groups: list[Group] = []
    for group in by_schema.values():
        # One small job per distinct physical schema (usually one per batch).
        physical = spark.read.options(**source.options).parquet(group[0].path).schema
        plan = fx.cast_plan(physical, source)
        if plan.problems:
            reason = "schema cannot be cast to the declared schema: " + "; ".join(plan.problems)
            for info in group:
                bad[info.path] = (info, reason, rows_by_file.get(info.path))
            continue
        if plan.needs_check:
            raw = _read_raw(spark, source, physical, group)
            failures = fx.failure_reasons([r.asDict() for r in fx.cast_failures(raw, plan, source).collect()], plan)
            for info in group:
                if info.path in failures:
                    bad[info.path] = (info, failures[info.path], rows_by_file.get(info.path))
            group = [f for f in group if f.path not in failures]
        if group:
            groups.append((plan, physical, group))
    return groups, rows_by_file, plain


def _common_plain(files: list[FileInfo], plain: dict[str, frozenset[str] | None]) -> set[str]:
    """The columns that every file of ``files`` with row groups stores without a dictionary."""
    votes = [p for p in (plain.get(f.path) for f in files) if p is not None]
    return set(frozenset.intersection(*votes)) if votes else set()


PARQUET_DICTIONARY = "parquet.enable.dictionary"
"""Parquet dictionary encoding, per column (``<setting>#<column>``).

A Parquet writer dictionary-encodes every column of a new file and gives the dictionary up
(rewriting the values plainly) when it does not pay, as with ids and times. Bronze writes
one file per event date, so small files do that work again and again (daily files of 60k
rows: 5-20% of the append's JVM CPU, measured with ids, times and amounts written plainly).
The raw files' own writer already found which columns do not pay; those are written
plainly from the start."""

PARQUET_STATISTICS = "parquet.column.statistics.enabled"
"""Parquet min/max statistics, per column (see :data:`NO_PARQUET_STATISTICS`)."""


@contextlib.contextmanager
def _parquet_off(spark: SparkSession, setting: str, columns: Sequence[str]) -> Iterator[None]:
    """Parquet writer ``setting`` false for ``columns`` during the block.

    Spark copies session settings into the Hadoop configuration of its writers, where
    Parquet reads ``<setting>#<column>``.
    """
    with contextlib.ExitStack() as stack:
        for column in columns:
            stack.enter_context(runtime_conf(spark, f"{setting}#{column}", "false"))
        yield


NO_PARQUET_STATISTICS = ("_source_file", "_batch_id")
"""Bronze columns written without Parquet min/max statistics (Delta's own file statistics are unaffected).

Both hold one value for all the rows of a raw file (the file's path; the batch id), yet
Parquet's writer compares every value with the page's and the chunk's minimum and
maximum, byte by byte along the whole string when they are equal: about a tenth of the
bronze write's JVM CPU with long landing paths (5M rows, 90 files, alternated in one JVM:
medians 25.1 against 28.0 CPU s). A file's row groups hold a handful of their values, so
those statistics skip nothing that the bronze table's Delta statistics on ``_batch_id``
(its ``delta.dataSkippingStatsColumns``) do not."""


def _read_raw(spark: SparkSession, source: FileSource, physical: T.StructType, group: list[FileInfo]) -> DataFrame:
    """Raw rows of ``group`` (one physical schema) with ``_source_file`` = the listed path."""
    jvm = spark.sparkContext._jvm
    # _metadata.file_path is URI-encoded (spaces as %20): map it back to the listed path.
    # Only the paths that differ go in the map: a map lookup is a scan of its keys per row.
    encoded = {str(jvm.org.apache.hadoop.fs.Path(f.path).toUri().toString()): f.path for f in group}  # type: ignore[union-attr]
    differ = {uri: listed for uri, listed in encoded.items() if uri != listed}
    paths = [f.path for f in group]
    # Spark lists more than 32 paths with a job of one task per path (made for remote
    # stores): for local files that job cost more than the listing (370 files: 2-3 s).
    local = all(p.startswith("file:") for p in paths)
    listing = runtime_conf(spark, LISTING_THRESHOLD, str(len(paths) + 1)) if local else contextlib.nullcontext()
    with listing:
        df = spark.read.options(**source.options).schema(physical).parquet(*paths)
    path = F.col("_metadata.file_path")
    if not differ:
        return df.withColumn(_FILE, path)
    lookup = F.create_map(*[F.lit(x) for kv in differ.items() for x in kv])
    return df.withColumn(_FILE, F.coalesce(lookup[path], path))


# -- writing --------------------------------------------------------------------------


def _batch_frame(
    spark: SparkSession,
    source: FileSource,
    groups: list[Group],
    batch_id: str,
    started: dt.datetime,
    exclude: set[str],
) -> tuple[DataFrame | None, list[FileInfo]]:
    frames, included = [], []
    for plan, physical, group in groups:
        members = [f for f in group if f.path not in exclude]
        if not members:
            continue
        raw = _read_raw(spark, source, physical, members)
        frames.append(fx.conform(raw, source, plan, batch_id, started))
        included += members
    if not frames:
        return None, []
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out, included


def _write_bronze(
    spark: SparkSession,
    source: FileSource,
    bronze: str,
    groups: list[Group],
    batch_id: str,
    started: dt.datetime,
    bad: dict[str, tuple[FileInfo, str, int | None]],
) -> list[FileInfo]:
    """Append the batch in one Delta commit; returns the files written.

    A file whose footer is fine but whose data pages are not fails the whole write: then
    each file is read on its own to find the culprits, they are quarantined (added to
    ``bad``), and the rest is written.
    """
    df, included = _batch_frame(spark, source, groups, batch_id, started, set())
    if df is None:
        return []
    try:
        _append(df, bronze, source, batch_id)
        return included
    except (Py4JJavaError, PySparkException) as exc:
        log.warning("bronze write failed; checking files one by one", extra=fields(batch_id=batch_id, error=str(exc).splitlines()[0]))
    for plan, physical, group in groups:
        for info in group:
            single, _ = _batch_frame(spark, source, [(plan, physical, [info])], batch_id, started, set())
            try:
                single.write.format("noop").mode("overwrite").save()  # type: ignore[union-attr]
            except (Py4JJavaError, PySparkException) as exc:
                bad[info.path] = (info, f"unreadable data: {_first_line(exc)}", None)
    df, included = _batch_frame(spark, source, groups, batch_id, started, set(bad))
    if df is not None:
        _append(df, bronze, source, batch_id)
    return included


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, Py4JJavaError):
        return str(exc.java_exception.toString()).splitlines()[0]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _append(df: DataFrame, bronze: str, source: FileSource, batch_id: str) -> None:
    df.write.format("delta").mode("append").option("userMetadata", batch_id).partitionBy(source.partition_column).saveAsTable(bronze)


# -- bookkeeping ----------------------------------------------------------------------


def _tracked(spark: SparkSession, settings: Settings, source_name: str) -> list[fx.TrackedFile]:
    rows = (
        spark.table(tables.tracking_table(settings))
        .where(F.col("source") == source_name)
        .select("file_path", "file_size", "file_mtime", "status", "batch_id")
        .collect()
    )
    return [fx.TrackedFile(r.file_path, int(r.file_size), r.file_mtime, r.status, r.batch_id) for r in rows]


def _track(
    spark: SparkSession,
    settings: Settings,
    source_name: str,
    files: list[tuple[FileInfo, str, int | None]],
    batch_id: str,
    at: dt.datetime,
) -> None:
    """Append tracking rows ``(file, status, rows)`` of one batch."""
    if not files:
        return
    data = [(source_name, f.path, f.size, f.mtime, status, batch_id, rows, at) for f, status, rows in files]
    delta.append(spark.createDataFrame(data, tables.TRACKING_SCHEMA), tables.tracking_table(settings), ["source"])


def _record_quarantine(
    spark: SparkSession,
    settings: Settings,
    source: FileSource,
    batch_id: str,
    at: dt.datetime,
    bad: dict[str, tuple[FileInfo, str, int | None]],
) -> None:
    """Quarantine rows, merged on the file identity so a retried batch adds no second row."""
    if not bad:
        return
    data = [(source.name, i.path, i.size, i.mtime, reason, rows, batch_id, at) for i, reason, rows in bad.values()]
    df = spark.createDataFrame(data, tables.QUARANTINE_SCHEMA)
    (
        DeltaTable.forName(spark, tables.quarantine_table(settings, source.name))
        .alias("t")
        .merge(df.alias("s"), "t.file_path = s.file_path AND t.file_size = s.file_size AND t.file_mtime = s.file_mtime")
        .whenNotMatchedInsertAll()
        .execute()
    )


# How many recent bronze commits are checked for a batch that was never tracked. Only the
# last one can be affected (the next run settles it), the margin covers other writers.
_RECOVERY_COMMITS = 20


def _recover(spark: SparkSession, settings: Settings, source: FileSource, bronze: str, listed: list[FileInfo], known: set[str]) -> int:
    """Track the files of a batch committed to bronze but never tracked (a crash in between).

    ``known``: the batch ids the tracking table has for the source.

    Returns:
        The number of files recovered (now tracked as ``ingested``).
    """
    batches = [c.user_metadata for c in delta.recent_commits(spark, bronze, _RECOVERY_COMMITS) if c.user_metadata is not None]
    if not batches:
        return 0
    missing = sorted(set(batches) - known)
    if not missing:
        return 0
    landed = (
        spark.table(bronze)
        .where(F.col("_batch_id").isin(missing))
        .groupBy("_batch_id", _FILE)
        .agg(F.count(F.lit(1)).alias("rows"))
        .collect()
    )
    by_path = {f.path: f for f in listed}
    at = _utcnow()
    for batch in missing:
        files: list[tuple[FileInfo, str, int | None]] = []
        for r in landed:
            if r["_batch_id"] != batch:
                continue
            # A file deleted since keeps its path with unknown size and mtime: it cannot come back unnoticed.
            info = by_path.get(r[_FILE], FileInfo(r[_FILE], -1, dt.datetime(1970, 1, 1)))
            files.append((info, "ingested", int(r["rows"])))
        _track(spark, settings, source.name, files, batch, at)
    log.warning("recovered an interrupted ingestion batch", extra=fields(source=source.name, batches=missing, files=len(landed)))
    return len(landed)


def _log_run(spark: SparkSession, settings: Settings, result: IngestResult, run_date: dt.date, started: dt.datetime) -> None:
    row = (
        result.batch_id,
        result.source,
        "files",
        run_date,
        started,
        _utcnow(),
        result.files_seen,
        result.files_skipped,
        result.files_ingested,
        result.files_quarantined,
        result.files_recovered,
        result.rows_read,
        result.rows_written,
        result.rows_quarantined,
        "quarantined" if result.quarantined else "ok",
    )
    delta.append(spark.createDataFrame([row], tables.RUNS_SCHEMA), tables.runs_table(settings))


__all__ = ["IngestResult", "run", "run_files"]
