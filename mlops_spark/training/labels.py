"""Churn labels from an event table: one row per active entity and cut-off.

An entity is *active* at a cut-off when it has at least one event at or before the
cut-off (within ``active_days`` when given). It *churned* when it has no event in
``(cutoff, cutoff + horizon_days]``. Cut-offs whose horizon ends after the newest
event are dropped: their labels are not known yet (labelling them would call every
customer of the last months a churner).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark.errors import UsageError

LABEL_COLUMNS = ("label_ts", "churned")


def monthly_cutoffs(first: dt.date, last: dt.date) -> list[dt.datetime]:
    """Midnight UTC of the first day of every month in ``[first, last]``."""
    out, day = [], dt.date(first.year, first.month, 1)
    if day < first:
        day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    while day <= last:
        out.append(dt.datetime(day.year, day.month, 1))
        day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return out


def churn_labels(
    events: DataFrame,
    entity_keys: Sequence[str],
    event_ts: str,
    cutoffs: Sequence[dt.datetime],
    horizon_days: int = 90,
    active_days: int | None = None,
) -> DataFrame:
    """Label each active entity at each cut-off with ``churned`` (1 = no event in the horizon).

    Args:
        events: rows with ``entity_keys`` and the timestamp column ``event_ts``; rows with a
            null key or timestamp are not events of any entity and are ignored.
        entity_keys: entity key columns.
        event_ts: event time column (timestamp, UTC).
        cutoffs: label times (naive datetimes are UTC).
        horizon_days: length of the look-ahead window.
        active_days: only entities with an event in ``(cutoff - active_days, cutoff]``; ``None``: any before.

    Returns:
        Columns ``*entity_keys``, ``label_ts`` timestamp, ``churned`` int; one row per
        (entity, cut-off) whose horizon ends at or before the newest event.

    Raises:
        UsageError: no cut-off has a fully observed horizon.
    """
    keys = list(entity_keys)
    ev = events.where(F.col(event_ts).isNotNull())
    for key in keys:
        ev = ev.where(F.col(key).isNotNull())
    ev = ev.select(*keys, F.col(event_ts).alias("_ts"))
    newest = ev.agg(F.max("_ts")).collect()[0][0]  # a global aggregate: one row
    if newest is None:
        raise UsageError("churn labels: the event table has no events with a key and a timestamp")
    newest = newest.replace(tzinfo=None)
    known = [c for c in cutoffs if c + dt.timedelta(days=horizon_days) <= newest]
    if not known:
        raise UsageError(f"churn labels: no cut-off has a full {horizon_days}-day horizon before the newest event {newest:%Y-%m-%d}")
    spark = events.sparkSession
    cut = spark.createDataFrame([(c,) for c in known], "label_ts TIMESTAMP_NTZ").select(
        F.col("label_ts").cast("timestamp").alias("label_ts")
    )
    # Per entity and cut-off: was it active before, did it buy in the horizon? One
    # cross join of entities' monthly summaries would be smaller, but cut-offs are few
    # (tens) and this stays a single aggregation.
    horizon = F.expr(f"INTERVAL {int(horizon_days)} DAYS")
    before = F.col("_ts") <= F.col("label_ts")
    if active_days is not None:
        before = before & (F.col("_ts") > F.col("label_ts") - F.expr(f"INTERVAL {int(active_days)} DAYS"))
    after = (F.col("_ts") > F.col("label_ts")) & (F.col("_ts") <= F.col("label_ts") + horizon)
    labelled = (
        ev.join(F.broadcast(cut), on=F.col("_ts") <= F.col("label_ts") + horizon, how="inner")
        .groupBy(*keys, "label_ts")
        .agg(F.max(before.cast("int")).alias("_active"), F.max(after.cast("int")).alias("_bought"))
        .where(F.col("_active") == 1)
    )
    return labelled.select(*keys, "label_ts", (1 - F.col("_bought")).cast("int").alias("churned"))
