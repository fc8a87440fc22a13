"""Feature pipeline: read a silver table, compute a feature set, write Delta feature tables.

Only :func:`run` reads and writes. It calls pure transforms:

- :func:`prepare_events`: derived columns, filter, and the columns the engine needs;
- :func:`snapshot_points`: one (entity, period) query point per period of the run for
  every entity with an event in the look-back;
- :func:`compute_snapshots` / :func:`compute_per_event`: the one-pass engine
  (:func:`mlops_spark.features.windows.compute_windows`) at those points / at each event.

Snapshot convention: the row of period ``p`` (a day by default) is stamped
``feature_ts`` = the last microsecond of the period (``23:59:59.999999`` for days), and
every window ends there inclusively: a ``1d`` window covers exactly that calendar day
(UTC), ``7d`` the seven days ending with it. ``feature_date`` is the period's date.

Incremental runs: ``--run-date D`` recomputes the periods of day ``D`` (and, with
``per_event``, the events of day ``D``), reading source rows with event time in
``(D - longest window, end of D]`` (all history up to D when a ``lifetime`` window is
defined). Writes use Delta ``replaceWhere`` on the feature date, so a re-run replaces
exactly what it computes: running a date twice leaves the table content unchanged.

Unchanged inputs write nothing: each write's lineage row in ``ml.feature_runs`` records the
source's Delta version, the definition hash and the feature table's version after the write.
A run for the same feature set, table, output and date range whose last lineage row read the
same source version with the same definition, while the table is still at the version that
run left (no other write since), is skipped: no new Delta version, no lineage row, so the
training set built on the table sees unchanged inputs. ``force`` (or ``rebuild``) recomputes.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import subprocess
import uuid
from dataclasses import dataclass
from functools import reduce
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark import __version__
from mlops_spark.config import Settings
from mlops_spark.errors import ConfigError, UsageError
from mlops_spark.features.spec import FeatureSet, window_micros
from mlops_spark.features.windows import compute_windows, feature_types
from mlops_spark.log import fields
from mlops_spark.spark import delta
from mlops_spark.spark.jars import project_root

log = logging.getLogger(__name__)

DAY_US = 86_400_000_000
FEATURE_DATE = "feature_date"
FEATURE_TS = "feature_ts"
EVENT_DATE = "event_date"

FEATURE_RUNS_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType(), metadata={"comment": "unique id of the run"}),
        T.StructField("feature_set", T.StringType(), metadata={"comment": "feature set name"}),
        T.StructField("feature_table", T.StringType(), metadata={"comment": "table written"}),
        T.StructField("output", T.StringType(), metadata={"comment": "snapshot or per_event"}),
        T.StructField("start_date", T.DateType(), metadata={"comment": "first feature date written"}),
        T.StructField("end_date", T.DateType(), metadata={"comment": "last feature date written"}),
        T.StructField("source_table", T.StringType(), metadata={"comment": "source table read"}),
        T.StructField("source_version", T.LongType(), metadata={"comment": "Delta version of the source read"}),
        T.StructField("definition_hash", T.StringType(), metadata={"comment": "SHA-256 of the feature-set definition"}),
        T.StructField("code_version", T.StringType(), metadata={"comment": "git commit of the code, else package version"}),
        T.StructField("rows_read", T.LongType(), metadata={"comment": "source rows in the read range"}),
        T.StructField("rows_filtered_out", T.LongType(), metadata={"comment": "rows excluded by the feature set's filter"}),
        T.StructField("rows_null_key", T.LongType(), metadata={"comment": "rows not evaluated: null entity key or event time"}),
        T.StructField("rows_written", T.LongType(), metadata={"comment": "feature rows written for the date range"}),
        T.StructField("started_at", T.TimestampType(), metadata={"comment": "run start (UTC)"}),
        T.StructField("finished_at", T.TimestampType(), metadata={"comment": "run end (UTC)"}),
        # Added later: a lineage table created before it gets it on its next write.
        T.StructField("table_version", T.LongType(), metadata={"comment": "Delta version of the feature table after this write"}),
    ]
)


@dataclass(frozen=True)
class RunResult:
    """What one run wrote."""

    feature_set: str
    table: str
    start: dt.date
    end: dt.date
    rows_written: int
    source_version: int
    skipped: bool = False
    """True when the table was already computed from this source version and definition (nothing written;
    ``rows_written`` is that run's)."""


# --- pure transforms -------------------------------------------------------------------


def derive_columns(source: DataFrame, spec: FeatureSet) -> DataFrame:
    """The source with the feature set's derived columns added (no filter, nothing dropped).

    Raises:
        ConfigError: a derived column does not compile against the source; names the
            feature set and the field.
    """
    df = source
    for name, expr in spec.columns.items():
        try:
            df = df.withColumn(name, F.expr(expr))
            df.schema  # noqa: B018 - analysis happens here; surface errors as config errors
        except Exception as exc:  # ParseException and AnalysisException
            raise ConfigError(f"feature set '{spec.name}': columns.{name}: cannot evaluate '{expr}': {_first_line(exc)}") from None
    return df


def filter_condition(df: DataFrame, spec: FeatureSet) -> F.Column:
    """The feature set's filter as a column (``true`` without a filter).

    Raises:
        ConfigError: the filter does not compile against ``df``.
    """
    if not spec.filter:
        return F.lit(True)
    cond = F.expr(spec.filter)
    try:
        df.select(cond).schema  # noqa: B018
    except Exception as exc:
        raise ConfigError(f"feature set '{spec.name}': filter: cannot evaluate '{spec.filter}': {_first_line(exc)}") from None
    return cond


def prepare_events(source: DataFrame, spec: FeatureSet) -> DataFrame:
    """Add the derived columns, apply the filter, keep what the engine reads.

    Input: the source table's columns. Output: entity columns, the timestamp column,
    ``event_id`` (when defined) and every aggregated column.

    Raises:
        ConfigError: a derived column or the filter does not compile against the source,
            or a referenced column is unknown; names the feature set and the field.
    """
    df = derive_columns(source, spec)
    df = df.where(filter_condition(df, spec))
    spec.check_columns(df.schema)
    cols = [*spec.entity, spec.timestamp, *([spec.event_id] if spec.event_id else []), *spec.value_columns()]
    return df.select(*[F.col(c) for c in dict.fromkeys(cols)])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _period_bounds(spec: FeatureSet, start: dt.date, end: dt.date) -> tuple[int, int, int]:
    """Granularity in microseconds and the first and last period index of ``[start, end]``."""
    g = int(window_micros(spec.snapshot.granularity))  # type: ignore[arg-type]
    epoch = dt.date(1970, 1, 1)
    first = (start - epoch).days * DAY_US // g
    last = ((end - epoch).days + 1) * DAY_US // g - 1
    return g, first, last


def snapshot_points(events: DataFrame, spec: FeatureSet, start: dt.date, end: dt.date) -> DataFrame:
    """Query points of the snapshot table for the periods in ``[start, end]``.

    An entity gets a point for period ``p`` when it has an event with
    ``end(p) - lookback < event_ts <= end(p)``. Output: entity columns, ``feature_date``
    (date of the period start), ``feature_ts`` (last microsecond of the period).
    """
    g, first, last = _period_bounds(spec, start, end)
    lookback = spec.lookback_micros()
    ts_us = F.unix_micros(F.col(spec.timestamp).cast(T.TimestampType()))
    # Period p sees the event when p*g <= ... : floor(ts/g) <= p <= floor((ts + lookback)/g) - 1.
    p0 = F.greatest(F.floor(ts_us / F.lit(g)), F.lit(first)).cast(T.LongType())
    p1 = F.least(F.floor((ts_us + F.lit(lookback)) / F.lit(g)) - 1, F.lit(last)).cast(T.LongType())
    # greatest/least skip nulls, so rows without a time or key must go first (they are not events).
    keyed = events.where(reduce(operator.and_, [F.col(c).isNotNull() for c in [*spec.entity, spec.timestamp]]))
    ranges = keyed.select(*[F.col(k) for k in spec.entity], p0.alias("p0"), p1.alias("p1")).where("p0 <= p1").distinct()
    periods = ranges.select(*spec.entity, F.explode(F.sequence(F.col("p0"), F.col("p1"))).alias("p"))
    periods = periods.dropDuplicates([*spec.entity, "p"])
    return periods.select(
        *[F.col(k) for k in spec.entity],
        F.to_date(F.timestamp_micros(F.col("p") * F.lit(g))).alias(FEATURE_DATE),
        F.timestamp_micros((F.col("p") + 1) * F.lit(g) - 1).alias(FEATURE_TS),
    )


def compute_snapshots(events: DataFrame, spec: FeatureSet, start: dt.date, end: dt.date, **engine: Any) -> DataFrame:
    """Snapshot features for ``[start, end]``: entity columns, ``feature_date``, ``feature_ts``,
    then every feature of ``spec.feature_names()``. ``events`` as from :func:`prepare_events`;
    ``engine``: options of :func:`compute_windows` (``partitions``, ``chunk_rows``, ``partition_bytes``)."""
    points = snapshot_points(events, spec, start, end)
    out = compute_windows(events, spec, points, query_timestamp=FEATURE_TS, **engine)
    return out.select(*spec.entity, FEATURE_DATE, FEATURE_TS, *spec.feature_names())


def compute_per_event(events: DataFrame, spec: FeatureSet, start: dt.date, end: dt.date, **engine: Any) -> DataFrame:
    """Per-event features for events dated ``[start, end]`` (UTC): entity columns, timestamp,
    ``event_id`` (when defined), ``event_date``, then every feature; ``engine`` as for :func:`compute_snapshots`."""
    extra = [spec.event_id] if spec.event_id else []
    out = compute_windows(events, spec, event_columns=extra, **engine)
    out = out.withColumn(EVENT_DATE, F.to_date(F.col(spec.timestamp).cast(T.TimestampType())))
    out = out.where(F.col(EVENT_DATE).between(F.lit(start), F.lit(end)))
    return out.select(*spec.entity, spec.timestamp, *extra, EVENT_DATE, *spec.feature_names())


# --- I/O shell -------------------------------------------------------------------------


def code_version() -> str:
    """The git commit of the checkout (``-dirty`` when modified), else the package version."""
    root = project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True)
        return sha.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"mlops-spark {__version__}"


def _read_range(source: DataFrame, spec: FeatureSet, start: dt.date, end: dt.date) -> DataFrame:
    """Source rows that can fall in a window of ``[start, end]``: event time up to the end of
    ``end``, and after ``start - longest window`` unless a lifetime window needs all history."""
    ts = F.col(spec.timestamp).cast(T.TimestampType())
    upper = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    cond = ts < F.lit(upper)
    longest = spec.max_window_micros()
    if longest is not None:
        reach = max(longest, spec.lookback_micros())
        lower = dt.datetime.combine(start, dt.time()) - dt.timedelta(microseconds=reach)
        cond = cond & (ts > F.lit(lower))
    return source.where(cond | F.col(spec.timestamp).isNull())


def _field(name: str, dtype: T.DataType, comment: str) -> T.StructField:
    return T.StructField(name, dtype, metadata={"comment": comment})


def _table_schema(spec: FeatureSet, events: DataFrame, per_event: bool) -> T.StructType:
    types = {f.name: f.dataType for f in events.schema.fields}
    ftypes = feature_types(spec, events.schema)
    fields_: list[T.StructField] = [
        T.StructField(k, types[k], metadata={"comment": f"entity key (from {spec.source}.{k})"}) for k in spec.entity
    ]
    if per_event:
        fields_.append(_field(spec.timestamp, types[spec.timestamp], "event time; windows end here inclusively"))
        if spec.event_id:
            fields_.append(T.StructField(spec.event_id, types[spec.event_id], metadata={"comment": "event identifier"}))
        fields_.append(T.StructField(EVENT_DATE, T.DateType(), metadata={"comment": "UTC date of the event (replaceWhere key)"}))
    else:
        fields_.append(T.StructField(FEATURE_DATE, T.DateType(), metadata={"comment": "date of the snapshot period (UTC)"}))
        fields_.append(_field(FEATURE_TS, T.TimestampType(), "end of the period (last microsecond); windows end here inclusively"))
    for name in spec.feature_names():
        fields_.append(T.StructField(name, ftypes.get(name, T.DoubleType()), metadata={"comment": spec.describe_feature(name)}))
    return T.StructType(fields_)


def _ensure_table(spark: SparkSession, name: str, schema: T.StructType, spec: FeatureSet, per_event: bool, rebuild: bool) -> None:
    keys = [*spec.entity, *((spec.timestamp,) if per_event else (FEATURE_DATE,))]
    if per_event and spec.event_id:
        keys.append(spec.event_id)
    properties = {
        "mlops.primary_key": ",".join(keys),
        "mlops.timestamp_column": spec.timestamp if per_event else FEATURE_TS,
        "mlops.feature_set": spec.name,
        "mlops.source_table": spec.source,
        "mlops.definition_hash": spec.definition_hash(),
    }
    exists = delta.table_exists(spark, name)
    if exists and not rebuild:
        have = delta.table_properties(spark, name).get("mlops.definition_hash")
        if have != spec.definition_hash():
            raise ConfigError(
                f"feature set '{spec.name}': definition changed since {name} was written "
                f"(hash {str(have)[:12]} -> {spec.definition_hash()[:12]}); rerun with --rebuild and --backfill"
            )
        return
    kind = "per-event rolling features" if per_event else f"snapshot features every {spec.snapshot.granularity}"
    comment = f"{spec.description or spec.name}: {kind} from {spec.source}; windows (t - W, t]"
    delta.create_table(spark, name, schema, comment=comment, properties=properties, replace=rebuild)


def _period_dates(spec: FeatureSet, start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
    """``feature_date`` (period start) of the first and last snapshot period computed for ``[start, end]``.

    Periods are those ending in ``[start, end]``; with a granularity over a day the first
    one starts before ``start`` (weeks count from 1970-01-01), and its rows are rewritten too.
    """
    g, first, last = _period_bounds(spec, start, end)
    if last < first:
        return start, end
    epoch = dt.date(1970, 1, 1)
    return epoch + dt.timedelta(days=first * g // DAY_US), epoch + dt.timedelta(days=last * g // DAY_US)


def _date_range_condition(column: str, start: dt.date, end: dt.date) -> str:
    c = delta.quote_column(column)
    return f"{c} >= DATE {delta.sql_literal(start.isoformat())} AND {c} <= DATE {delta.sql_literal(end.isoformat())}"


def run(
    spark: SparkSession,
    settings: Settings,
    spec: FeatureSet,
    start: dt.date,
    end: dt.date | None = None,
    rebuild: bool = False,
    force: bool = False,
) -> list[RunResult]:
    """Compute ``spec`` for feature dates ``[start, end]`` and write its tables.

    Writes ``features.<name>`` (snapshots) and, when ``spec.per_event``,
    ``features.<name>_events``, each with ``replaceWhere`` on the date range; appends a
    lineage row per table to ``ml.feature_runs``. A table whose last run for the same date
    range read the same source version with the same definition, and that nothing wrote
    since, is skipped (``RunResult.skipped``) unless ``force`` or ``rebuild``.

    Raises:
        UsageError: ``end`` before ``start``, or the source table does not exist.
        ConfigError: the definition does not fit the source or changed since the table was
            created (use ``rebuild``).
    """
    end = end or start
    if end < start:
        raise UsageError(f"backfill end {end} is before start {start}")
    if not delta.table_exists(spark, spec.source):
        raise UsageError(f"feature set '{spec.name}': source table {spec.source} does not exist")
    started = dt.datetime.now(dt.timezone.utc)
    version = delta.current_version(spark, spec.source)
    outputs = [(False, settings.table("features", spec.name))]
    if spec.per_event:
        outputs.append((True, settings.table("features", f"{spec.name}_events")))
    done: dict[str, RunResult] = {}
    if not (force or rebuild):
        for per_event, table in outputs:
            rows = _unchanged_run(spark, settings, spec, table, "per_event" if per_event else "snapshot", start, end, version)
            if rows is not None:
                log.info(
                    "already computed",
                    extra=fields(feature_set=spec.name, table=table, start=str(start), end=str(end), source_version=version),
                )
                done[table] = RunResult(spec.name, table, start, end, rows, version, skipped=True)
    if len(done) == len(outputs):
        return [done[table] for _, table in outputs]
    source = _read_range(delta.read_version(spark, spec.source, version), spec, start, end)
    try:
        source.schema  # noqa: B018
    except AnalysisException as exc:
        raise ConfigError(f"feature set '{spec.name}': timestamp: {_first_line(exc)}") from None
    prepared = prepare_events(source, spec)
    # One pass over the read range for the lineage counts: read, kept by the filter, unkeyable.
    derived = derive_columns(source, spec)
    kept = filter_condition(derived, spec)
    null_key = reduce(operator.or_, [F.col(c).isNull() for c in [*spec.entity, spec.timestamp]])
    stats = derived.agg(
        F.count(F.lit(1)).alias("read"),
        F.count(F.when(kept, 1)).alias("kept"),
        F.count(F.when(kept & null_key, 1)).alias("null_key"),
    ).first()
    rows_read, rows_kept, rows_null_key = int(stats["read"]), int(stats["kept"]), int(stats["null_key"])  # type: ignore[index]
    fs = settings.features
    engine = {"partitions": fs.partitions, "chunk_rows": fs.chunk_rows, "partition_bytes": fs.partition_bytes}
    results = []
    for per_event, table in outputs:
        if table in done:
            results.append(done[table])
            continue
        _ensure_table(spark, table, _table_schema(spec, prepared, per_event), spec, per_event, rebuild)
        if per_event:
            df, date_col = compute_per_event(prepared, spec, start, end, **engine), EVENT_DATE
        else:
            df, date_col = compute_snapshots(prepared, spec, start, end, **engine), FEATURE_DATE
        condition = _date_range_condition(date_col, *(_period_dates(spec, start, end) if not per_event else (start, end)))
        delta.overwrite_where(df, table, condition)
        table_version, written = delta.last_commit(spark, table)
        _record_run(
            spark,
            settings,
            {
                "run_id": str(uuid.uuid4()),
                "feature_set": spec.name,
                "feature_table": table,
                "output": "per_event" if per_event else "snapshot",
                "start_date": start,
                "end_date": end,
                "source_table": spec.source,
                "source_version": version,
                "definition_hash": spec.definition_hash(),
                "code_version": code_version(),
                "rows_read": rows_read,
                "rows_filtered_out": rows_read - rows_kept,
                "rows_null_key": rows_null_key,
                "rows_written": written,
                "started_at": started,
                "finished_at": dt.datetime.now(dt.timezone.utc),
                "table_version": table_version,
            },
        )
        log.info(
            "feature table written",
            extra=fields(feature_set=spec.name, table=table, start=str(start), end=str(end), rows=written, source_version=version),
        )
        results.append(RunResult(spec.name, table, start, end, written, version))
    return results


def _unchanged_run(
    spark: SparkSession, settings: Settings, spec: FeatureSet, table: str, output: str, start: dt.date, end: dt.date, source_version: int
) -> int | None:
    """Rows written by the last run of ``table`` for ``[start, end]`` when it read ``source_version``
    with the current definition and the table is still at the version it left; else ``None``."""
    runs_table = settings.table("ml", "feature_runs")
    if not delta.table_exists(spark, runs_table) or not delta.table_exists(spark, table):
        return None
    runs = spark.table(runs_table)
    if "table_version" not in runs.columns:  # written by a release that did not record it
        return None
    same_range = (
        (F.col("feature_set") == spec.name)
        & (F.col("feature_table") == table)
        & (F.col("output") == output)
        & (F.col("start_date") == F.lit(start))
        & (F.col("end_date") == F.lit(end))
    )
    last = runs.where(same_range).orderBy(F.col("finished_at").desc()).first()
    if last is None or last["table_version"] is None:
        return None
    if (last["source_table"], last["source_version"], last["definition_hash"]) != (spec.source, source_version, spec.definition_hash()):
        return None
    if delta.current_version(spark, table) != last["table_version"]:
        return None
    return int(last["rows_written"])


def _record_run(spark: SparkSession, settings: Settings, row: dict[str, object]) -> None:
    table = settings.table("ml", "feature_runs")
    delta.create_table(spark, table, FEATURE_RUNS_SCHEMA, comment="one lineage row per feature-table write")
    delta.add_missing_columns(spark, table, FEATURE_RUNS_SCHEMA)
    df = spark.createDataFrame([tuple(row[f.name] for f in FEATURE_RUNS_SCHEMA.fields)], FEATURE_RUNS_SCHEMA)
    delta.append(df, table)
