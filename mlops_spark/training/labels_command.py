"""``mlops-spark labels``: churn labels at monthly cut-offs from an event table to a label table.

For every entity with an event at or before a cut-off (the first day of a month,
00:00 UTC), ``churned`` is 1 when it has no event in ``(cutoff, cutoff + horizon]``
and 0 otherwise (:func:`mlops_spark.training.labels.churn_labels`). Both edges are
deliberate: an event exactly at the cut-off is history (it makes the entity active, it
is not a purchase in the horizon); an event exactly at ``cutoff + horizon`` is inside
the horizon (not churned). Cut-offs whose horizon ends after the newest event are
skipped, because their labels are not known yet.

The label table is a pure function of the event table and the options. It is
overwritten only when its rows would change: re-running on the same input writes no
new Delta version, so a training set built on it keeps its recorded input version.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.config.settings import Settings
from mlops_spark.errors import UsageError
from mlops_spark.log import fields
from mlops_spark.spark import delta
from mlops_spark.training.labels import churn_labels, monthly_cutoffs

log = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1)
_TIME_TYPES = (T.TimestampType, T.TimestampNTZType, T.DateType)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date in YYYY-MM-DD form") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be a positive number of days")
    return value


def _keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise argparse.ArgumentTypeError("give at least one entity key column")
    return keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlops-spark labels``."""
    parser.epilog = (
        "churned = 1 when an entity active at a cut-off has no event in (cut-off, cut-off + horizon]: an event exactly "
        "at the cut-off counts as history, one exactly at cut-off + horizon counts as a purchase (not churned). "
        "Cut-offs are the first day of each month, 00:00 UTC. The output table is rewritten only when its rows change."
    )
    group = parser.add_argument_group("labels options")
    group.add_argument("--events-table", required=True, metavar="TABLE", help="table of events, database.table (e.g. silver.online_retail)")
    group.add_argument(
        "--entity-keys", required=True, type=_keys, metavar="COL[,COL...]", help="entity key column(s) of the events, comma-separated"
    )
    group.add_argument("--event-time", required=True, metavar="COL", help="event time column (timestamp, timestamp_ntz or date; UTC)")
    group.add_argument(
        "--horizon-days", type=_positive, default=90, metavar="N", help="look-ahead window after each cut-off, in days (default 90)"
    )
    group.add_argument(
        "--active-days",
        type=_positive,
        default=None,
        metavar="N",
        help="label only entities with an event in the N days up to the cut-off (default: any event before it)",
    )
    group.add_argument(
        "--first-cutoff",
        type=_date,
        metavar="YYYY-MM-DD",
        help="earliest cut-off: the first month start on or after this date (default: the first month start at or after the oldest event)",
    )
    group.add_argument(
        "--last-cutoff",
        type=_date,
        metavar="YYYY-MM-DD",
        help="latest cut-off: the last month start on or before this date (default: the newest event minus the horizon; "
        "later cut-offs are skipped anyway, their horizon is not observed yet)",
    )
    group.add_argument("--output-table", metavar="TABLE", help="label table to write, database.table (default: <ml database>.churn_labels)")


@dataclass(frozen=True)
class LabelsResult:
    """What :func:`run` did."""

    table: str
    rows: int
    churned: int
    cutoffs: list[dt.datetime]
    skipped_cutoffs: list[dt.datetime]
    written: bool
    version: int

    def summary(self) -> dict[str, object]:
        return {
            "table": self.table,
            "rows": self.rows,
            "churned": self.churned,
            "churn_rate": round(self.churned / self.rows, 4) if self.rows else None,
            "cutoffs": [c.date().isoformat() for c in self.cutoffs],
            "skipped_cutoffs": [c.date().isoformat() for c in self.skipped_cutoffs],
            "written": self.written,
            "version": self.version,
        }


def _time_column(df: DataFrame, table: str, name: str) -> F.Column:
    """The event time as a timestamp column.

    Raises:
        UsageError: the column is missing or not a time.
    """
    field = next((f for f in df.schema.fields if f.name == name), None)
    if field is None:
        raise UsageError(f"--event-time: column '{name}' is not in {table} (columns: {', '.join(df.columns)})")
    if not isinstance(field.dataType, _TIME_TYPES):
        raise UsageError(f"--event-time: column '{name}' of {table} is {field.dataType.simpleString()}, not a timestamp or date")
    return F.col(name).cast(T.TimestampType())


def _time_range(events: DataFrame, ts: str) -> tuple[dt.datetime, dt.datetime] | None:
    """Oldest and newest event time as UTC-naive datetimes (independent of the Python process's zone)."""
    row = events.agg(F.min(F.unix_micros(ts)).alias("lo"), F.max(F.unix_micros(ts)).alias("hi")).first()
    if row is None or row["lo"] is None:
        return None
    return _EPOCH + dt.timedelta(microseconds=row["lo"]), _EPOCH + dt.timedelta(microseconds=row["hi"])


def cutoffs_for(
    oldest: dt.datetime, newest: dt.datetime, horizon_days: int, first: dt.date | None, last: dt.date | None
) -> tuple[list[dt.datetime], list[dt.datetime]]:
    """Cut-offs to label and those skipped for an unobserved horizon.

    Defaults: the first month start at or after ``oldest`` (a cut-off before any event
    labels nobody) up to ``newest - horizon``.

    Returns:
        (labelled, skipped): month starts in the range whose horizon ends at or before
        ``newest``, and those whose horizon ends after it.
    """
    if first is None:
        # Month starts at or after the oldest event: a cut-off at midnight of its day counts only if it is that event's time.
        first = oldest.date() if oldest == dt.datetime.combine(oldest.date(), dt.time()) else oldest.date() + dt.timedelta(days=1)
    last = last or (newest - dt.timedelta(days=horizon_days)).date()
    cutoffs = monthly_cutoffs(first, last)
    horizon = dt.timedelta(days=horizon_days)
    return [c for c in cutoffs if c + horizon <= newest], [c for c in cutoffs if c + horizon > newest]


def _same_rows(spark: SparkSession, table: str, labels: DataFrame, count: int) -> bool:
    """True when ``table`` holds exactly ``labels`` (same columns and types, same multiset of rows)."""
    existing = spark.table(table)
    if [(f.name, f.dataType) for f in existing.schema.fields] != [(f.name, f.dataType) for f in labels.schema.fields]:
        return False
    # Equal sizes and an empty multiset difference one way mean equal multisets.
    return existing.count() == count and labels.exceptAll(existing).isEmpty()


def run(
    spark: SparkSession,
    settings: Settings,
    events_table: str,
    entity_keys: Sequence[str],
    event_time: str,
    output_table: str | None = None,
    horizon_days: int = 90,
    active_days: int | None = None,
    first_cutoff: dt.date | None = None,
    last_cutoff: dt.date | None = None,
) -> LabelsResult:
    """Write churn labels of ``events_table`` to ``output_table`` (default ``<ml>.churn_labels``).

    Output columns: ``*entity_keys`` (their types in the event table), ``label_ts``
    timestamp (the cut-off), ``churned`` int.

    Raises:
        UsageError: the event table or a named column does not exist, the time column is
            not a time, the table has no events, or no cut-off in range has an observed horizon.
    """
    output_table = output_table or settings.table("ml", "churn_labels")
    delta.quote_table(output_table)
    if not delta.table_exists(spark, events_table):
        raise UsageError(f"--events-table: table {events_table} does not exist")
    source = spark.table(events_table)
    missing = [k for k in entity_keys if k not in source.columns]
    if missing:
        raise UsageError(f"--entity-keys: column(s) {', '.join(missing)} not in {events_table} (columns: {', '.join(source.columns)})")
    events = source.select(*entity_keys, _time_column(source, events_table, event_time).alias(event_time))
    # Rows without a key or a time are nobody's events (churn_labels ignores them): they do not move the range.
    known = F.col(event_time).isNotNull()
    for key in entity_keys:
        known = known & F.col(key).isNotNull()
    span = _time_range(events.where(known), event_time)
    if span is None:
        raise UsageError(f"--events-table: {events_table} has no events with a key and a time in column {event_time}")
    if first_cutoff and last_cutoff and last_cutoff < first_cutoff:
        raise UsageError(f"--last-cutoff {last_cutoff} is before --first-cutoff {first_cutoff}")
    labelled, skipped = cutoffs_for(span[0], span[1], horizon_days, first_cutoff, last_cutoff)
    if not labelled:
        raise UsageError(
            f"no monthly cut-off in range has a full {horizon_days}-day horizon before the newest event of {events_table} "
            f"({span[1]:%Y-%m-%d %H:%M}); oldest event {span[0]:%Y-%m-%d}"
        )
    labels = churn_labels(events, entity_keys, event_time, labelled, horizon_days=horizon_days, active_days=active_days).cache()
    try:
        stats = labels.agg(F.count(F.lit(1)).alias("n"), F.sum("churned").alias("churned")).collect()[0]
        rows, churned = int(stats["n"]), int(stats["churned"] or 0)
        written = not (delta.table_exists(spark, output_table) and _same_rows(spark, output_table, labels, rows))
        if written:
            params = {"events_table": events_table, "entity_keys": list(entity_keys), "event_time": event_time,
                      "horizon_days": horizon_days, "active_days": active_days}  # fmt: skip
            (
                labels.write.format("delta")
                .mode("overwrite")
                .option("overwriteSchema", "true")
                .option("userMetadata", json.dumps({"mlops.labels": params}))
                .saveAsTable(output_table)
            )
    finally:
        labels.unpersist()
    result = LabelsResult(output_table, rows, churned, labelled, skipped, written, delta.current_version(spark, output_table))
    log.info("labels " + ("written" if written else "unchanged; nothing written"), extra=fields(**result.summary()))
    return result


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Write the labels and print one JSON summary line."""
    from mlops_spark.spark.session import get_spark

    delta.quote_table(args.events_table)
    if args.output_table:
        delta.quote_table(args.output_table)
    if args.first_cutoff and args.last_cutoff and args.last_cutoff < args.first_cutoff:
        raise UsageError(f"--last-cutoff {args.last_cutoff} is before --first-cutoff {args.first_cutoff}")
    spark = get_spark(settings, app_name="mlops-spark labels")
    result = run(
        spark, settings, args.events_table, args.entity_keys, args.event_time, output_table=args.output_table,
        horizon_days=args.horizon_days, active_days=args.active_days,
        first_cutoff=args.first_cutoff, last_cutoff=args.last_cutoff,
    )  # fmt: skip
    print(json.dumps(result.summary()))
    return 0
