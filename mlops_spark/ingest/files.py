"""Pure parts of file ingestion: which files are new, how a file's schema maps onto the
declared raw schema, and the transforms that conform rows and add ingestion metadata.

Casting policy (file level, never row level): a file whose physical schema cannot be
cast to the declared one (a missing column, an undeclared column, an impossible type
change) is quarantined whole with the reason. Where a cast can fail on some values
(``string`` -> ``long``, ``double`` -> ``int``), or a column is declared not nullable,
the file's values are checked first and the file is quarantined whole if any value
fails, with the column, the count and an example. A file is never half ingested, so
"rows in = rows in bronze + rows in quarantined files" holds file by file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.ingest.sources import FileSource
from mlops_spark.io.files import FileInfo

METADATA_FIELDS = [
    T.StructField("_ingested_at", T.TimestampType(), True, {"comment": "when the batch that landed the row started (UTC)"}),
    T.StructField("_source_file", T.StringType(), True, {"comment": "fully qualified path of the raw file the row came from"}),
    T.StructField("_batch_id", T.StringType(), True, {"comment": "ingestion batch id (ml.ingest_runs.batch_id)"}),
]

_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_INTEGRAL_RANK = {T.ByteType: 0, T.ShortType: 1, T.IntegerType: 2, T.LongType: 3}


def bronze_schema(source: FileSource) -> T.StructType:
    """Schema of the bronze table: declared columns, ingestion metadata, partition column."""
    return T.StructType(
        [
            *source.raw_schema().fields,
            *METADATA_FIELDS,
            T.StructField(source.partition_column, T.DateType(), True, {"comment": f"UTC date of {source.event_time_column}"}),
        ]
    )


# -- which files to ingest -------------------------------------------------------------


@dataclass(frozen=True)
class TrackedFile:
    """A row of the file-tracking table: a file already ingested or quarantined."""

    path: str
    size: int
    mtime: dt.datetime
    status: str
    batch_id: str


@dataclass
class Selection:
    """New files to inspect, files to skip, and files changed after they were ingested."""

    new: list[FileInfo] = field(default_factory=list)
    skipped: list[FileInfo] = field(default_factory=list)
    changed: list[tuple[FileInfo, TrackedFile]] = field(default_factory=list)


def select_files(listed: Sequence[FileInfo], tracked: Sequence[TrackedFile]) -> Selection:
    """Split the listed files by what the tracking table says about them.

    A file is identified by path + size + mtime. Same identity as a tracked file: skip.
    A path that was ingested before but now has another size or mtime: ``changed`` (landing
    files must be immutable; re-ingesting it would duplicate its old rows). A path only
    ever quarantined that changed (the fix was uploaded): ``new``.
    """
    by_key = {(t.path, t.size, t.mtime) for t in tracked}
    ingested: dict[str, TrackedFile] = {}
    for t in tracked:
        if t.status == "ingested":
            ingested[t.path] = t
    out = Selection()
    for f in listed:
        if (f.path, f.size, f.mtime) in by_key:
            out.skipped.append(f)
        elif f.path in ingested:
            out.changed.append((f, ingested[f.path]))
        else:
            out.new.append(f)
    return out


# -- casting a file's schema onto the declared one --------------------------------------


@dataclass(frozen=True)
class ColumnCast:
    """How one declared column is produced from a file's column.

    ``checked`` casts may fail on some values: the file's values are checked first.
    """

    name: str
    source_type: T.DataType
    target_type: T.DataType
    checked: bool
    nullable: bool


@dataclass(frozen=True)
class CastPlan:
    """The casts for one physical schema, or the problems that make the file unusable."""

    casts: tuple[ColumnCast, ...]
    problems: tuple[str, ...]

    @property
    def needs_check(self) -> bool:
        """True when some values must be checked before the file can be ingested."""
        return any(c.checked or not c.nullable for c in self.casts)


def _cast_kind(src: T.DataType, dst: T.DataType) -> str | None:
    """``"safe"``, ``"checked"`` or ``None`` (impossible) for a cast from ``src`` to ``dst``."""
    if src == dst:
        return "safe"
    if isinstance(src, T.NullType):
        return "safe"
    if isinstance(dst, T.TimestampType) and isinstance(src, T.TimestampNTZType):
        return "safe"
    if isinstance(dst, T.StringType) and isinstance(src, (T.AtomicType,)) and not isinstance(src, T.BinaryType):
        return "safe"
    if isinstance(src, _INTEGRAL) and isinstance(dst, _INTEGRAL):
        return "safe" if _INTEGRAL_RANK[type(src)] <= _INTEGRAL_RANK[type(dst)] else "checked"
    if isinstance(src, T.FloatType) and isinstance(dst, T.DoubleType):
        return "safe"
    if isinstance(src, (T.ByteType, T.ShortType, T.IntegerType)) and isinstance(dst, (T.DoubleType, T.DecimalType)):
        return "safe" if isinstance(dst, T.DoubleType) else "checked"
    if isinstance(src, T.NumericType) and isinstance(dst, T.NumericType):
        return "checked"
    if isinstance(src, T.StringType) and isinstance(dst, (T.NumericType, T.DateType, T.TimestampType, T.BooleanType)):
        return "checked"
    if isinstance(src, T.DateType) and isinstance(dst, (T.TimestampType, T.TimestampNTZType)):
        return "safe"
    return None


def cast_plan(physical: T.StructType, source: FileSource) -> CastPlan:
    """Map a file's physical schema onto the source's declared schema.

    Returns:
        The per-column casts, and the problems (missing column, undeclared column when
        ``extra_columns: quarantine``, impossible type change) that quarantine the file.
    """
    have = {f.name: f.dataType for f in physical.fields}
    problems: list[str] = []
    casts: list[ColumnCast] = []
    for name, spec in source.columns.items():
        target = spec.spark_type()
        if name not in have:
            problems.append(f"missing column {name}")
            continue
        kind = _cast_kind(have[name], target)
        if kind is None:
            problems.append(f"column {name} is {have[name].simpleString()}, cannot be cast to {target.simpleString()}")
            continue
        casts.append(ColumnCast(name, have[name], target, kind == "checked", spec.nullable))
    if source.extra_columns == "quarantine":
        problems += [f"unexpected column {n}" for n in have if n not in source.columns]
    return CastPlan(tuple(casts), tuple(problems))


def _cast_expr(cast: ColumnCast, local_time_zone: str | None) -> Column:
    col = F.col(cast.name)
    if isinstance(cast.source_type, T.TimestampNTZType) and isinstance(cast.target_type, T.TimestampType):
        # A wall clock without zone: the cast reads it as a UTC wall clock (the session
        # zone is pinned to UTC), then to_utc_timestamp moves it from the source's zone.
        as_utc = col.cast(T.TimestampType())
        return F.to_utc_timestamp(as_utc, local_time_zone) if local_time_zone else as_utc
    if cast.source_type == cast.target_type:
        return col
    # try_cast: values are checked before a file with checked casts is ingested, so a
    # null here can only come from a null input.
    return col.try_cast(cast.target_type)


def cast_failures(df: DataFrame, plan: CastPlan, source: FileSource, file_column: str = "_source_file") -> DataFrame:
    """Per file, the number of values that would fail each checked cast or nullability rule.

    Input: raw rows with the file's physical columns and ``file_column``.
    Output columns: ``file_column``, then ``<column>__failed`` (long) and ``<column>__example``
    (string, one failing value) for each checked column; one row per file.
    """
    aggs: list[Column] = []
    for cast in plan.casts:
        if not (cast.checked or not cast.nullable):
            continue
        raw = F.col(cast.name)
        failed = raw.isNull() if not cast.nullable else F.lit(False)
        if cast.checked:
            converted = raw.try_cast(cast.target_type)
            bad = raw.isNotNull() & converted.isNull()
            if isinstance(cast.source_type, T.NumericType):
                # Narrowing a number fails when it does not survive the round trip (1.5 -> 1).
                bad = bad | (converted.isNotNull() & (converted.cast(cast.source_type) != raw))
            failed = failed | bad
        aggs.append(F.sum(F.when(failed, 1).otherwise(0)).cast("long").alias(f"{cast.name}__failed"))
        aggs.append(F.first(F.when(failed, F.coalesce(raw.cast("string"), F.lit("null"))), ignorenulls=True).alias(f"{cast.name}__example"))
    return df.groupBy(file_column).agg(*aggs).select(file_column, *[a for c in plan.casts for a in _agg_names(c)])


def _agg_names(cast: ColumnCast) -> list[str]:
    return [f"{cast.name}__failed", f"{cast.name}__example"] if (cast.checked or not cast.nullable) else []


def failure_reasons(rows: Sequence[Mapping[str, object]], plan: CastPlan, file_column: str = "_source_file") -> dict[str, str]:
    """Turn :func:`cast_failures` rows into ``{file: reason}`` for files with failures."""
    reasons: dict[str, str] = {}
    for row in rows:
        parts = []
        for cast in plan.casts:
            failed = row.get(f"{cast.name}__failed") if (cast.checked or not cast.nullable) else None
            if failed:
                what = (
                    f"cannot be cast to {cast.target_type.simpleString()}"
                    if cast.checked
                    else "are null but the column is declared not nullable"
                )
                parts.append(f"column {cast.name}: {failed} values {what} (e.g. {row.get(f'{cast.name}__example')!r})")
        if parts:
            reasons[str(row[file_column])] = "; ".join(parts)
    return reasons


def conform(
    df: DataFrame,
    source: FileSource,
    plan: CastPlan,
    batch_id: str,
    ingested_at: dt.datetime,
    file_column: str = "_source_file",
) -> DataFrame:
    """Cast raw rows to the bronze schema and add the ingestion metadata.

    Input: raw rows with the file's physical columns and ``file_column`` (the file path).
    Output: the columns of :func:`bronze_schema`: declared columns, ``_ingested_at``,
    ``_source_file``, ``_batch_id``, and the partition column (UTC date of the event time).
    """
    by_name = {c.name: c for c in plan.casts}
    declared = [_cast_expr(by_name[n], source.local_time_zone).alias(n) for n in source.columns]
    out = df.select(
        *declared,
        F.lit(ingested_at).cast(T.TimestampType()).alias("_ingested_at"),
        F.col(file_column).alias("_source_file"),
        F.lit(batch_id).alias("_batch_id"),
    )
    return out.select(
        *[F.col(f.name) for f in source.raw_schema().fields],
        "_ingested_at",
        "_source_file",
        "_batch_id",
        F.to_date(F.col(source.event_time_column)).alias(source.partition_column),
    )
