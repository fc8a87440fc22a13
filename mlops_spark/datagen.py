"""Deterministic, realistic synthetic retail data at any size, generated in Spark.

Rows are produced in chunks of a fixed number of rows: ``spark.range(chunks)`` is
mapped with ``mapInArrow`` and chunk ``c`` is drawn by numpy seeded with
``(seed, c)`` (see :mod:`mlops_spark.datagen_model` for the retail model). The
output therefore depends only on the arguments, never on the number of
partitions, executors or cores, and scales from thousands to 100M+ rows.

What is in the data:

- customers with a segment, lognormal spend level and purchase frequency, a
  signup date and, for churners, a ``churn_date``; lower spend/frequency churns more;
- transactions with weekly and yearly seasonality and lognormal amounts; a
  churner's purchase rate decays over the 8 weeks before ``churn_date`` and stops
  there, so recent-activity window features predict churn;
- optional planted defects (:class:`DefectSpec`) at exact, recoverable counts;
- optional planted drift from a date (:class:`DriftSpec`).

Example::

    customers = generate_customers(spark, 1_000, seed=7)
    tx = generate_transactions(spark, 100_000, 1_000, seed=7, defects=DefectSpec.typical())
    write_daily_parquet(tx, "s3a://landing/retail")
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark import datagen_model as model
from mlops_spark.datagen_model import CATEGORIES, CHANNELS, COUNTRIES, MALFORMED_CATEGORIES, SEGMENTS
from mlops_spark.errors import UsageError
from mlops_spark.log import fields
from mlops_spark.spark.session import runtime_conf

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 100_000
_EPOCH = dt.date(1970, 1, 1)

TRANSACTION_SCHEMA = T.StructType(
    [
        T.StructField("transaction_id", T.StringType(), True, {"comment": "event key; repeated only by planted duplicates"}),
        T.StructField("customer_id", T.LongType(), True, {"comment": "customer key (null on planted null-key defects)"}),
        T.StructField("event_ts", T.TimestampType(), True, {"comment": "time of the purchase, UTC"}),
        T.StructField("amount", T.DoubleType(), True, {"comment": "basket amount; negative only on planted defects"}),
        T.StructField("quantity", T.IntegerType(), True, {"comment": "items in the basket"}),
        T.StructField("category", T.StringType(), True, {"comment": "product category; outside CATEGORIES on malformed rows"}),
        T.StructField("country", T.StringType(), True, {"comment": "ISO country of the customer"}),
        T.StructField("channel", T.StringType(), True, {"comment": "web, store or mobile"}),
        T.StructField("landing_date", T.DateType(), True, {"comment": "day the event landed; after the event day on late rows"}),
    ]
)
"""Columns of :func:`generate_transactions`, in order."""

CUSTOMER_SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.LongType(), True, {"comment": "customer key, 1 .. customers"}),
        T.StructField("signup_date", T.DateType(), True, {"comment": "first day the customer could buy"}),
        T.StructField("segment", T.StringType(), True, {"comment": "vip, regular or occasional"}),
        T.StructField("country", T.StringType(), True, {"comment": "ISO country"}),
        T.StructField("spend_level", T.DoubleType(), True, {"comment": "median basket amount (lognormal across customers)"}),
        T.StructField("frequency", T.DoubleType(), True, {"comment": "expected purchases per week (lognormal)"}),
        T.StructField("churn_date", T.DateType(), True, {"comment": "first day without purchases for good; null: no churn in range"}),
    ]
)
"""Columns of :func:`generate_customers`, in order."""

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "COUNTRIES",
    "CUSTOMER_SCHEMA",
    "MALFORMED_CATEGORIES",
    "SEGMENTS",
    "TRANSACTION_SCHEMA",
    "DefectSpec",
    "DriftSpec",
    "generate_customers",
    "generate_transactions",
    "write_daily_parquet",
]


@dataclass(frozen=True)
class DefectSpec:
    """Rates of planted defects; each defect hits exactly ``floor(rate * rows)`` distinct rows.

    Defects never overlap: a row carries at most one. Counts are recoverable with
    :meth:`counts` and from the data:

    - ``null_customer``: ``customer_id IS NULL``;
    - ``negative_amount``: ``amount < 0``;
    - ``late``: ``landing_date > to_date(event_ts)`` (1 .. ``late_days`` days later);
    - ``malformed``: ``category NOT IN CATEGORIES`` (one of ``MALFORMED_CATEGORIES``);
    - ``duplicate``: an exact copy (same ``transaction_id``, every column equal) of a
      clean row, so ``count(DISTINCT transaction_id) = rows - duplicate``.

    Attributes:
        null_customer_rate: share of rows whose ``customer_id`` is null.
        negative_amount_rate: share of rows whose ``amount`` is negated.
        duplicate_rate: share of rows that repeat another row's event.
        late_rate: share of rows landing after their event day.
        late_days: the most days a late row lands after its event day (at least 1).
        malformed_rate: share of rows with an unknown category.

    Raises:
        UsageError: a rate outside [0, 1), rates summing over 0.5, or ``late_days < 1``.
    """

    null_customer_rate: float = 0.0
    negative_amount_rate: float = 0.0
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    late_days: int = 3
    malformed_rate: float = 0.0

    def __post_init__(self) -> None:
        rates = self.rates()
        for name, rate in zip(("null_customer", "negative_amount", "late", "malformed", "duplicate"), rates, strict=True):
            if not 0.0 <= rate < 1.0:
                raise UsageError(f"defect rate {name}_rate={rate} must be in [0, 1)")
        if sum(rates) > 0.5:
            raise UsageError(f"defect rates sum to {sum(rates):.3f}; at most 0.5 so that clean rows remain")
        if self.late_days < 1:
            raise UsageError(f"late_days={self.late_days} must be at least 1")

    @classmethod
    def typical(cls) -> DefectSpec:
        """A mix like a real raw feed: about 4.5% of rows carry one defect."""
        return cls(
            null_customer_rate=0.01,
            negative_amount_rate=0.005,
            duplicate_rate=0.01,
            late_rate=0.015,
            late_days=3,
            malformed_rate=0.005,
        )

    def rates(self) -> tuple[float, float, float, float, float]:
        """Rates in planting order: null customer, negative amount, late, malformed, duplicate."""
        return (self.null_customer_rate, self.negative_amount_rate, self.late_rate, self.malformed_rate, self.duplicate_rate)

    def counts(self, rows: int) -> dict[str, int]:
        """Exact number of rows carrying each defect in a data set of ``rows`` rows."""
        names = ("null_customer", "negative_amount", "late", "malformed", "duplicate")
        return {name: model.defect_count(rate, 0, rows) for name, rate in zip(names, self.rates(), strict=True)}


@dataclass(frozen=True)
class DriftSpec:
    """Planted drift: from ``start`` (event day, inclusive) amounts scale and the category mix shifts.

    Attributes:
        start: first event day with drift.
        amount_scale: factor applied to every amount from ``start`` (1.0: none).
        category_shift: share of rows from ``start`` whose category is redrawn from the
            reversed category mix (0.0: none).

    Raises:
        UsageError: ``amount_scale <= 0`` or ``category_shift`` outside [0, 1].
    """

    start: dt.date
    amount_scale: float = 1.5
    category_shift: float = 0.3

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _as_date(self.start, "drift start"))
        if self.amount_scale <= 0:
            raise UsageError(f"drift amount_scale={self.amount_scale} must be positive")
        if not 0.0 <= self.category_shift <= 1.0:
            raise UsageError(f"drift category_shift={self.category_shift} must be in [0, 1]")


def _as_date(value: str | dt.date, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise UsageError(f"{what} '{value}' is not a date in YYYY-MM-DD form") from None


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UsageError(f"{name}={value!r} must be a non-negative integer")


def _partitions(spark: SparkSession, chunks: int, partitions: int | None) -> int:
    if partitions is not None:
        if partitions < 1:
            raise UsageError(f"partitions={partitions} must be at least 1")
        return partitions
    return max(1, min(chunks, spark.sparkContext.defaultParallelism * 2))


def generate_customers(
    spark: SparkSession,
    customers: int,
    seed: int = 42,
    start: str | dt.date = "2024-01-01",
    days: int = 730,
    partitions: int | None = None,
) -> DataFrame:
    """The customers behind :func:`generate_transactions` with the same arguments.

    Args:
        spark: the session.
        customers: number of customers; ids are ``1 .. customers``.
        seed: non-negative seed; same arguments, same rows.
        start: first day of the range.
        days: length of the range in days (churn dates fall inside it).
        partitions: Spark partitions (default: twice the default parallelism, capped by the
            number of chunks); it never changes the rows.

    Returns:
        Columns ``customer_id`` long, ``signup_date`` date, ``segment`` string, ``country``
        string, ``spend_level`` double, ``frequency`` double, ``churn_date`` date (null: the
        customer does not churn in the range).

    Raises:
        UsageError: a negative size or seed, or a bad start date.
    """
    _check_sizes(customers=customers, seed=seed, days=days)
    start_day = (_as_date(start, "start") - _EPOCH).days
    block = DEFAULT_CHUNK_ROWS
    chunks = math.ceil(customers / block)

    def make(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for chunk in batch.column(0).to_pylist():
                first = chunk * block + 1
                yield model.customers_batch(seed, first, min(first + block - 1, customers), start_day, days)

    return (
        spark.range(0, chunks, 1, _partitions(spark, chunks, partitions))
        .mapInArrow(make, CUSTOMER_SCHEMA)
        .select(*CUSTOMER_SCHEMA.fieldNames())
    )


def generate_transactions(
    spark: SparkSession,
    rows: int,
    customers: int,
    seed: int = 42,
    start: str | dt.date = "2024-01-01",
    days: int = 730,
    defects: DefectSpec | None = None,
    drift: DriftSpec | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    partitions: int | None = None,
) -> DataFrame:
    """Exactly ``rows`` synthetic retail transactions of ``customers`` customers.

    The rows depend on every argument except ``partitions``; ``chunk_rows`` is part of
    the determinism key (keep the default to reproduce published figures).

    Args:
        spark: the session.
        rows: number of rows, duplicates included.
        customers: number of customers (see :func:`generate_customers`).
        seed: non-negative seed.
        start: first event day.
        days: number of event days (event days are ``start .. start + days - 1``;
            late rows land up to ``defects.late_days`` later).
        defects: planted defects (none when ``None``).
        drift: planted drift (none when ``None``).
        chunk_rows: rows generated per task unit (at least 100).
        partitions: Spark partitions; never changes the rows.

    Returns:
        Columns ``transaction_id`` string, ``customer_id`` long (nullable), ``event_ts``
        timestamp (UTC), ``amount`` double, ``quantity`` int, ``category`` string,
        ``country`` string, ``channel`` string, ``landing_date`` date
        (:data:`TRANSACTION_SCHEMA`).

    Raises:
        UsageError: negative sizes or seed, ``customers == 0`` with rows, ``days == 0``,
            ``chunk_rows < 100`` or a bad date.
    """
    _check_sizes(rows=rows, customers=customers, seed=seed, days=days, chunk_rows=chunk_rows)
    if rows and customers == 0:
        raise UsageError("customers=0: transactions need at least one customer")
    if days == 0:
        raise UsageError("days=0: the range needs at least one day")
    if chunk_rows < 100:
        raise UsageError(f"chunk_rows={chunk_rows} must be at least 100")
    start_day = (_as_date(start, "start") - _EPOCH).days
    params = model.ChunkParams(seed=seed, rows=rows, customers=customers, start_day=start_day, days=days, chunk_rows=chunk_rows)
    if defects is not None:
        params = replace(params, defect_rates=defects.rates(), late_days=defects.late_days)
    if drift is not None:
        params = replace(
            params,
            drift_day=(drift.start - _EPOCH).days,
            drift_amount_scale=drift.amount_scale,
            drift_category_shift=drift.category_shift,
        )
    log.debug("generating transactions", extra=fields(rows=rows, customers=customers, seed=seed, chunks=params.chunks))

    def make(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for chunk in batch.column(0).to_pylist():
                yield model.transactions_batch(params, chunk)

    return (
        spark.range(0, params.chunks, 1, _partitions(spark, params.chunks, partitions))
        .mapInArrow(make, TRANSACTION_SCHEMA)
        .select(*TRANSACTION_SCHEMA.fieldNames())
    )


def write_daily_parquet(df: DataFrame, folder: str, by: str = "landing_date") -> list[str]:
    """Write ``df`` as one Parquet file per day of column ``by``: ``<folder>/YYYY-MM-DD.parquet``.

    Like a raw landing zone. Written by Spark (local path or ``s3a://``), not pandas, with
    ``spark.sql.parquet.outputTimestampType=TIMESTAMP_MICROS``: timestamps are Parquet
    ``TIMESTAMP(isAdjustedToUTC=true)``, read back as Spark ``TIMESTAMP`` (pandas-written
    files hold ``TIMESTAMP_NTZ``). Every column, ``by`` included, is in each file. A day's
    file is replaced when it exists, so re-writing the same data is idempotent; other
    files in ``folder`` are left alone.

    Args:
        df: rows to write; ``by`` must be a date (or timestamp) column without nulls.
        folder: destination folder.
        by: the day column that names the files.

    Returns:
        The written file paths, sorted.

    Raises:
        UsageError: ``by`` is not a column of ``df`` or has null values.
    """
    if by not in df.columns:
        raise UsageError(f"write_daily_parquet: column '{by}' is not in {df.columns}")
    spark = df.sparkSession
    folder = folder.rstrip("/")
    tmp = f"{folder}/_tmp_daily_{uuid.uuid4().hex}"
    day_col = "__day"
    # One shuffle partition per day holds all of a day's rows, so each day becomes one file.
    out = df.withColumn(day_col, F.date_format(F.col(by), "yyyy-MM-dd")).repartition(day_col)
    with runtime_conf(spark, "spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS"):
        out.write.mode("overwrite").partitionBy(day_col).parquet(tmp)

    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path  # type: ignore[union-attr]
    fs = hpath(tmp).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    written: list[str] = []
    try:
        for part in fs.listStatus(hpath(tmp)):
            name = part.getPath().getName()
            if not part.isDirectory() or not name.startswith(f"{day_col}="):
                continue
            day = name.split("=", 1)[1]
            if day == "__HIVE_DEFAULT_PARTITION__":
                raise UsageError(f"write_daily_parquet: column '{by}' has null values")
            files = [s.getPath() for s in fs.listStatus(part.getPath()) if s.getPath().getName().endswith(".parquet")]
            if len(files) != 1:
                raise RuntimeError(f"expected one Parquet file for day {day}, found {len(files)}")
            dest = hpath(f"{folder}/{day}.parquet")
            if fs.exists(dest):
                fs.delete(dest, False)
            if not fs.rename(files[0], dest):
                raise RuntimeError(f"could not move {files[0]} to {dest}")
            crc = hpath(f"{folder}/.{day}.parquet.crc")
            if fs.exists(crc):
                fs.delete(crc, False)
            written.append(str(dest))
    finally:
        fs.delete(hpath(tmp), True)
    log.info("wrote daily parquet files", extra=fields(folder=folder, files=len(written), by=by))
    return sorted(written)
