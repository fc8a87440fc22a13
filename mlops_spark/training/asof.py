"""Point-in-time (as-of) join of labels with feature tables, sort-based and vectorised.

For every label row and every feature source, the newest feature row of the same
entity with ``feature_ts <= label_ts`` is attached (and only when
``feature_ts >= label_ts - ttl`` if the source has a TTL; otherwise its features are
null). Exactly one output row per input label row, duplicates included; labels with
no feature history, a null key or a null timestamp keep their row with null features.

How (no range join, no per-entity explosion):

1. labels and every feature source are projected onto one tagged layout
   (entity keys, ``_ts`` in microseconds, ``_tag``; label columns null on feature
   rows, feature columns null on label rows) and unioned;
2. the union is hash-partitioned by the entity keys and sorted within partitions by
   (keys, ``_ts``, ``_tag``, feature columns): feature rows of a timestamp come before
   the labels of that timestamp (``<=``), sources before labels;
3. one ``mapInArrow`` pass scans each partition's Arrow batches: for every source a
   running maximum over "row index if the row belongs to that source" gives, for each
   label row, the position of the latest feature row before it; a label takes it when it
   lies in the same entity run and passes the TTL. The last feature row of each source in
   the batch's last entity is carried into the next batch, so an entity spanning batches
   (one customer with a million rows) is streamed, never grouped in memory.

Ties: several rows of one source with the same entity and ``feature_ts`` are ordered by
their feature columns (ascending, nulls first) and the LAST one wins, i.e. the row that is
greatest by (feature_1, feature_2, ...). Deterministic whatever the input order.

Feature rows whose key or timestamp is null can never match a label and are ignored
(they are inputs, not output rows, so no label row is lost).

Output columns: every label column unchanged, then for each source its feature columns
(under their output names) and ``<source name>_feature_ts`` (timestamp: the matched
feature row's timestamp, null when nothing matched).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.errors import ConfigError, DataQualityError, SchemaMismatchError

TS_COL = "_ts"
TAG_COL = "_tag"
LEAKAGE_MARKER = "TRAINING_SET_LEAKAGE"


class LeakageError(DataQualityError):
    """A joined feature row is newer than its label (``feature_ts > label_ts``)."""


@dataclass(frozen=True)
class FeatureSource:
    """One feature lookup of an as-of join.

    Attributes:
        name: short name; the matched timestamp is output as ``<name>_feature_ts``.
        df: the feature rows (entity keys, timestamp, feature columns).
        join_keys: label key column -> feature key column (same types).
        ts_col: the feature timestamp column of ``df`` (timestamp, timestamp_ntz or date).
        features: feature column of ``df`` -> output column name.
        ttl: maximum age of a feature row at label time; ``None``: no limit.
    """

    name: str
    df: DataFrame
    join_keys: dict[str, str]
    ts_col: str = "feature_ts"
    features: dict[str, str] = field(default_factory=dict)
    ttl: dt.timedelta | None = None

    @property
    def ts_output(self) -> str:
        return f"{self.name}_feature_ts"


def _micros(column: str) -> F.Column:
    # TIMESTAMP_NTZ and DATE become UTC instants first (the session time zone is UTC).
    return F.unix_micros(F.col(column).cast(T.TimestampType()))


def _check_inputs(labels: DataFrame, keys: Sequence[str], label_ts: str, sources: Sequence[FeatureSource]) -> None:
    label_types = {f.name: f.dataType for f in labels.schema.fields}
    for column in [*keys, label_ts]:
        if column not in label_types:
            raise SchemaMismatchError(f"labels: missing column {column}")
    seen = set(label_types)
    for src in sources:
        types = {f.name: f.dataType for f in src.df.schema.fields}
        if set(src.join_keys) != set(keys):
            raise ConfigError(f"feature source {src.name}: join keys {sorted(src.join_keys)} do not match label keys {sorted(keys)}")
        for label_key, feature_key in src.join_keys.items():
            if feature_key not in types:
                raise SchemaMismatchError(f"feature source {src.name}: missing key column {feature_key}")
            if types[feature_key] != label_types[label_key]:
                raise SchemaMismatchError(
                    f"feature source {src.name}: key {feature_key} is {types[feature_key].simpleString()}, "
                    f"label key {label_key} is {label_types[label_key].simpleString()}"
                )
        for column in [src.ts_col, *src.features]:
            if column not in types:
                raise SchemaMismatchError(f"feature source {src.name}: missing column {column}")
        if not isinstance(types[src.ts_col], (T.TimestampType, T.TimestampNTZType, T.DateType)):
            raise SchemaMismatchError(f"feature source {src.name}: {src.ts_col} is {types[src.ts_col].simpleString()}, not a timestamp")
        for out in [*src.features.values(), src.ts_output]:
            if out in seen or out in (TS_COL, TAG_COL):
                raise ConfigError(f"feature source {src.name}: output column {out} already exists; rename it")
            seen.add(out)
    if not isinstance(label_types[label_ts], (T.TimestampType, T.TimestampNTZType, T.DateType)):
        raise SchemaMismatchError(f"labels: {label_ts} is {label_types[label_ts].simpleString()}, not a timestamp")


def _tagged_union(labels: DataFrame, keys: Sequence[str], label_ts: str, sources: Sequence[FeatureSource]) -> DataFrame:
    label_cols = [c for c in labels.columns if c not in keys]
    feature_fields = [(out, src.df.schema[col].dataType) for src in sources for col, out in src.features.items()]
    label_tag = len(sources)
    parts = [
        labels.select(
            *keys,
            _micros(label_ts).alias(TS_COL),
            F.lit(label_tag).cast("int").alias(TAG_COL),
            *label_cols,
            *[F.lit(None).cast(t).alias(out) for out, t in feature_fields],
        )
    ]
    label_fields = {f.name: f.dataType for f in labels.schema.fields}
    for i, src in enumerate(sources):
        mine = set(src.features.values())
        part = src.df.where(F.col(src.ts_col).isNotNull())
        for feature_key in src.join_keys.values():
            part = part.where(F.col(feature_key).isNotNull())
        parts.append(
            part.select(
                *[F.col(src.join_keys[k]).alias(k) for k in keys],
                _micros(src.ts_col).alias(TS_COL),
                F.lit(i).cast("int").alias(TAG_COL),
                *[F.lit(None).cast(label_fields[c]).alias(c) for c in label_cols],
                *[
                    (F.col(next(c for c, o in src.features.items() if o == out)) if out in mine else F.lit(None).cast(t)).alias(out)
                    for out, t in feature_fields
                ],
            )
        )
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    return union


def _entity_starts(table: pa.Table, keys: Sequence[str]) -> np.ndarray:
    """Index of the first row of each row's entity run (null keys: a run of their own)."""
    n = table.num_rows
    new = np.zeros(n, dtype=bool)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new[0] = True
    for key in keys:
        column = table.column(key)
        if n > 1:
            changed = pc.fill_null(pc.not_equal(column.slice(1), column.slice(0, n - 1)), True)
            new[1:] |= changed.to_numpy(zero_copy_only=False)
        if column.null_count:
            nulls = column.is_null().to_numpy(zero_copy_only=False)
            new |= nulls
            new[1:] |= nulls[:-1]
    positions = np.arange(n, dtype=np.int64)
    return np.maximum.accumulate(np.where(new, positions, 0))


def asof_kernel(
    batches: Iterator[pa.RecordBatch],
    keys: Sequence[str],
    label_cols: Sequence[str],
    sources: Sequence[tuple[list[str], int | None, str]],
    out_schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """The merge pass over one sorted partition (see the module docstring).

    Args:
        batches: Arrow batches of the tagged union, sorted by (keys, _ts, _tag, ...).
        keys: entity key columns.
        label_cols: label columns to output (keys included), in order.
        sources: per source (tag = position): its output feature columns, TTL in
            microseconds or ``None``, and its output timestamp column.
        out_schema: the Arrow schema of the output batches.

    Yields:
        one batch of label rows with their features per input batch.
    """
    label_tag = len(sources)
    carry: pa.Table | None = None
    for batch in batches:
        table = pa.Table.from_batches([batch])
        if carry is not None and carry.num_rows:
            table = pa.concat_tables([carry, table])
        table = table.combine_chunks()
        n = table.num_rows
        if n == 0:
            continue
        starts = _entity_starts(table, keys)
        positions = np.arange(n, dtype=np.int64)
        tags = table.column(TAG_COL).to_numpy(zero_copy_only=False)
        ts_column = table.column(TS_COL)
        ts_null = ts_column.is_null().to_numpy(zero_copy_only=False)
        ts = pc.fill_null(ts_column, 0).to_numpy(zero_copy_only=False)
        label_rows = np.flatnonzero(tags == label_tag)
        out_columns: list[pa.Array] = [table.column(c).take(label_rows) for c in label_cols]
        carry_rows: list[int] = []
        last_start = starts[n - 1]
        for tag, (feature_cols, ttl, _) in enumerate(sources):
            latest = np.maximum.accumulate(np.where(tags == tag, positions, -1))
            match = latest[label_rows]
            ok = (match >= starts[label_rows]) & ~ts_null[label_rows]
            if ttl is not None:
                ok &= ts[np.maximum(match, 0)] >= ts[label_rows] - ttl
            index = pa.array(match, mask=~ok)
            out_columns += [table.column(c).take(index) for c in feature_cols]
            out_columns.append(ts_column.take(index).cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")))
            if latest[n - 1] >= last_start:
                carry_rows.append(int(latest[n - 1]))
        carry = table.take(sorted(carry_rows)) if carry_rows else None
        if len(label_rows):
            yield pa.RecordBatch.from_arrays(
                [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in out_columns], schema=out_schema
            )


def asof_join(
    labels: DataFrame,
    keys: Sequence[str],
    label_ts: str,
    sources: Sequence[FeatureSource],
    partitions: int | None = None,
) -> DataFrame:
    """As-of join ``labels`` with every source in one shuffle, one sort and one Arrow pass.

    Args:
        labels: label rows: ``keys``, ``label_ts`` (timestamp, timestamp_ntz or date) and any columns.
        keys: entity key columns of ``labels``; each source maps them to its own columns.
        label_ts: the label timestamp column.
        sources: feature lookups (see :class:`FeatureSource`); their output names must not clash.
        partitions: shuffle partitions of the merge (default ``spark.sql.shuffle.partitions``).

    Returns:
        label columns (unchanged, same order) + per source its output feature columns and
        ``<name>_feature_ts``; exactly one row per label row.

    Raises:
        SchemaMismatchError: a column is missing or a key/timestamp has the wrong type.
        ConfigError: join keys do not match or output names clash.
    """
    keys = list(keys)
    _check_inputs(labels, keys, label_ts, sources)
    union = _tagged_union(labels, keys, label_ts, sources)
    n = partitions or int(labels.sparkSession.conf.get("spark.sql.shuffle.partitions") or 8)
    tiebreak = [out for src in sources for out in src.features.values()]
    ordered = union.repartition(n, *keys).sortWithinPartitions(
        *[F.col(k).asc_nulls_first() for k in keys],
        F.col(TS_COL).asc_nulls_first(),
        F.col(TAG_COL).asc(),
        *[F.col(c).asc_nulls_first() for c in tiebreak],
    )
    label_fields = list(labels.schema.fields)
    label_cols = [f.name for f in label_fields]
    out_fields = list(label_fields)
    spec: list[tuple[list[str], int | None, str]] = []
    for src in sources:
        out_fields += [T.StructField(out, src.df.schema[col].dataType, True) for col, out in src.features.items()]
        out_fields.append(T.StructField(src.ts_output, T.TimestampType(), True))
        ttl = None if src.ttl is None else int(src.ttl / dt.timedelta(microseconds=1))
        spec.append((list(src.features.values()), ttl, src.ts_output))
    out_struct = T.StructType(out_fields)
    arrow_schema = _arrow_schema(out_struct)

    def merge(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return asof_kernel(batches, keys, label_cols, spec, arrow_schema)

    return ordered.mapInArrow(merge, out_struct).select(*[f.name for f in out_fields])


def _arrow_schema(struct: T.StructType) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(struct, timezone="UTC", prefers_large_types=False)


def guard_no_leakage(df: DataFrame, label_ts: str, feature_ts_cols: Sequence[str]) -> DataFrame:
    """Make any row with ``feature_ts > label_ts`` fail the job that evaluates ``df``.

    The check runs inside the same job that writes the training set, so a leaked row
    aborts the write before Delta commits; :func:`raise_if_leakage` turns the failure
    into :class:`LeakageError`.

    Args:
        df: joined rows with ``label_ts`` and the ``*_feature_ts`` columns.

    Returns:
        ``df`` with the same columns, guarded.
    """
    label = F.col(label_ts).cast(T.TimestampType())
    condition = F.lit(False)
    for column in feature_ts_cols:
        condition = condition | F.coalesce(F.col(column) > label, F.lit(False))
    first = df.columns[0]
    guarded = F.when(condition, F.raise_error(F.lit(f"{LEAKAGE_MARKER}: a feature row newer than its label was joined"))).otherwise(
        F.col(first)
    )
    return df.select(guarded.cast(df.schema[first].dataType).alias(first), *df.columns[1:])


def raise_if_leakage(exc: BaseException, where: str) -> None:
    """Re-raise a Spark failure caused by :func:`guard_no_leakage` as :class:`LeakageError`."""
    if LEAKAGE_MARKER in str(exc):
        raise LeakageError(f"{where}: leakage guard: a joined feature_ts is later than its label_ts; nothing was written") from None
