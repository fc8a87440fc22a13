"""Time-based train / validation / test split of a training set.

Rows are assigned by label time: ``ts < train_until`` -> ``train``,
``ts < validation_until`` -> ``validation``, otherwise ``test``. Cut points can instead
be derived from fractions as exact percentiles of the label times.

With ``keep_entity_together`` an entity's rows all go to the split of its FIRST label
time, so no entity appears in two splits (its later rows may then sit in ``train`` with
times after ``train_until``: entity leakage is avoided at the price of some time overlap).

Rows with a null label time get split ``null`` (never dropped); with
``keep_entity_together`` they follow their entity when it has a non-null first time.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

SPLIT_COL = "split"
TRAIN, VALIDATION, TEST = "train", "validation", "test"
_EPOCH = dt.datetime(1970, 1, 1)


def fraction_cut_points(df: DataFrame, ts_col: str, fractions: Sequence[float]) -> tuple[dt.datetime, dt.datetime]:
    """Cut times at the ``fractions[0]`` and ``fractions[0] + fractions[1]`` percentiles of ``ts_col``.

    Uses Spark's exact ``percentile`` (interpolated) over the non-null label times; a label
    exactly at a percentile falls in the earlier split. Label times often take few distinct
    values (one per monthly cut-off): when the second percentile is the latest time, that
    time becomes the test split, and when no label time lies between the two cuts, the
    latest time before the test cut becomes the validation split. So with at least three
    distinct label times no split is empty.

    Returns:
        (train_until, validation_until) as UTC-naive datetimes.
    """
    micros = F.unix_micros(F.col(ts_col).cast(T.TimestampType()))
    first = float(fractions[0])
    second = min(1.0, first + float(fractions[1]))
    row = df.select(
        F.percentile(micros, first).alias("a"),
        F.percentile(micros, second).alias("b"),
        F.min(micros).alias("lo"),
        F.max(micros).alias("hi"),
    ).first()
    if row is None or row["a"] is None:
        return _EPOCH, _EPOCH
    # One microsecond past the (rounded-up) percentile: a label exactly at it falls in the earlier split.
    a, b = math.ceil(row["a"]) + 1, math.ceil(row["b"]) + 1
    if b > row["hi"] > row["lo"] and second < 1.0:
        b = row["hi"]
    before = df.select(F.max(F.when(micros < b, micros)).alias("t")).collect()[0]["t"]  # a global aggregate: one row
    if before is not None and row["lo"] < before < a:  # no label time in [a, b): validation would be empty
        a = before
    return _EPOCH + dt.timedelta(microseconds=a), _EPOCH + dt.timedelta(microseconds=b)


def _utc_literal(value: dt.datetime) -> F.Column:
    """A timestamp literal for ``value`` (naive means UTC), independent of the Python process's zone."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return F.timestamp_micros(F.lit((value - _EPOCH) // dt.timedelta(microseconds=1)))


def time_split(
    df: DataFrame,
    ts_col: str,
    train_until: dt.datetime,
    validation_until: dt.datetime,
    entity_keys: Sequence[str] | None = None,
) -> DataFrame:
    """Add column ``split`` (``train`` / ``validation`` / ``test``) by label time.

    Args:
        df: rows with ``ts_col`` (timestamp, timestamp_ntz or date) and ``entity_keys``.
        train_until: first time that is not ``train`` (UTC).
        validation_until: first time that is ``test`` (UTC).
        entity_keys: when given, every row of an entity goes to the split of the entity's
            first label time (null keys: each row on its own).

    Returns:
        ``df``'s columns followed by ``split`` (string; null when the time is null).
    """
    ts = F.col(ts_col).cast(T.TimestampType())
    if entity_keys:
        # An explicit frame over the whole entity: the first label time decides.
        whole = Window.partitionBy(*entity_keys).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
        any_null_key = F.lit(False)
        for key in entity_keys:
            any_null_key = any_null_key | F.col(key).isNull()
        ts = F.when(any_null_key, ts).otherwise(F.min(ts).over(whole))
    split = (
        F.when(ts.isNull(), F.lit(None).cast(T.StringType()))
        .when(ts < _utc_literal(train_until), F.lit(TRAIN))
        .when(ts < _utc_literal(validation_until), F.lit(VALIDATION))
        .otherwise(F.lit(TEST))
    )
    return df.select(*df.columns, split.alias(SPLIT_COL))
