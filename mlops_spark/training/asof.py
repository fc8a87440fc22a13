"""Point-in-time (as-of) join of labels with feature tables: narrow matching, then a broadcast fetch.

For every label row and every feature source, the newest feature row of the same
entity with ``feature_ts <= label_ts`` is attached (and only when
``feature_ts >= label_ts - ttl`` if the source has a TTL; otherwise its features are
null). Exactly one output row per input label row, duplicates included; labels with
no feature history, a null key or a null timestamp keep their row with null features.

How (no range join, no per-entity explosion, wide feature rows never shuffled):

1. match on narrow rows: the (entity keys, label time) of the labels and the (entity keys,
   feature time) of every source are unioned with a tag (source position; labels last)
   packed into the low bits of the time (one column less to convert to Arrow),
   hash-partitioned by the entity keys, and one ``mapInArrow`` pass sorts each partition
   by (keys, time, tag) in memory (one packed int64 per row when a single integer key and
   the times fit, else an Arrow sort) and emits, per distinct (keys, label time) and
   source, the latest feature time ``<=`` the label time of the same entity (a running
   maximum of positions), unless older than the TTL;
2. fetch: those (tag, keys, label time, feature time) rows (at most one per distinct label
   pair and source) are broadcast and hash-joined with the union of the sources' rows, so
   every feature table is read once more and its wide rows are never shuffled nor sent
   through Python; above ``broadcast_rows`` label rows x sources the fetch is a shuffle
   join instead (Spark's own choice), so big label sets never exhaust the driver;
3. the fetched rows are grouped by (keys, label time), keeping per source the greatest
   (features, feature time) struct (the tie rule below), and the labels are left-joined
   with them on (keys, label time).

Ties: several rows of one source with the same entity and ``feature_ts`` are ordered by
their feature columns (ascending, nulls first) and the LAST one wins, i.e. the row that is
greatest by (feature_1, feature_2, ...). Deterministic whatever the input order.

Feature rows whose key or timestamp is null can never match a label and are ignored
(they are inputs, not output rows, so no label row is lost).

Limits: step 1 holds one partition's narrow rows in a Python worker (about 40 bytes a
row; raise ``partitions`` for more rows); step 2 broadcasts the matches (about 50 bytes
per distinct label pair and source) only up to ``broadcast_rows`` (one count of the
labels decides).

Output columns: every label column unchanged, then for each source its feature columns
(under their output names) and ``<source name>_feature_ts`` (timestamp: the matched
feature row's timestamp, null when nothing matched).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.errors import ConfigError, DataQualityError, SchemaMismatchError

RESERVED_PREFIX = "_asof_"
TS_COL = "_asof_ts"
TAG_COL = "_asof_tag"
LABEL_TS_COL = "_asof_lts"
MATCH_COL = "_asof_m"
LEAKAGE_MARKER = "TRAINING_SET_LEAKAGE"
BROADCAST_ROWS = 5_000_000
"""Default most label rows x sources whose matches are broadcast (about 50 bytes each: 250 MB)."""


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
    reserved = [c for c in label_types if c.startswith(RESERVED_PREFIX)]
    if reserved:
        raise ConfigError(f"labels: column names starting with {RESERVED_PREFIX} are reserved for the join: {reserved}; rename them")
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
            if out in seen or out.startswith(RESERVED_PREFIX):
                raise ConfigError(f"feature source {src.name}: output column {out} already exists; rename it")
            seen.add(out)
    if not isinstance(label_types[label_ts], (T.TimestampType, T.TimestampNTZType, T.DateType)):
        raise SchemaMismatchError(f"labels: {label_ts} is {label_types[label_ts].simpleString()}, not a timestamp")


def _usable(src: FeatureSource) -> DataFrame:
    """The rows of ``src`` that can match a label: key and timestamp not null."""
    part = src.df.where(F.col(src.ts_col).isNotNull())
    for feature_key in src.join_keys.values():
        part = part.where(F.col(feature_key).isNotNull())
    return part


def _narrow_union(labels: DataFrame, keys: Sequence[str], label_ts: str, sources: Sequence[FeatureSource]) -> DataFrame:
    """Keys and ``TS_COL`` of every usable row, the source tag (position; labels: ``len(sources)``)
    packed into the low bits of the time (see :func:`_tag_bits`)."""
    bits = _tag_bits(len(sources))

    def tagged(column: str, tag: int) -> F.Column:
        return (F.shiftleft(_micros(column), bits) + F.lit(tag).cast("long")).alias(TS_COL)

    label_part = labels.where(F.col(label_ts).isNotNull())
    for key in keys:
        label_part = label_part.where(F.col(key).isNotNull())
    union = label_part.select(*keys, tagged(label_ts, len(sources)))
    for i, src in enumerate(sources):
        part = _usable(src).select(*[F.col(src.join_keys[k]).alias(k) for k in keys], tagged(src.ts_col, i))
        union = union.unionByName(part)
    return union


MAX_SOURCES = 31
"""Most feature sources of one as-of join: their tags and the labels' share the time's low 5 bits."""


def _tag_bits(sources: int) -> int:
    """Low bits of the packed time that hold the tag (0..``sources``).

    Shifting microseconds by up to 5 bits cannot overflow a long for any Spark timestamp
    (years 1 to 9999 are within +-2.6e17 microseconds, x 32 < 9.2e18). Sending one packed
    column instead of time and tag saves about a fifth of the match pass (1 s of 5 s for
    11M rows in the training-set benchmark): Spark's row-to-Arrow conversion costs per column.
    """
    return max(1, sources.bit_length())


def _run_starts(new: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's run, where ``new`` marks the rows that start a run."""
    return np.maximum.accumulate(np.where(new, np.arange(new.size, dtype=np.int64), 0))


def _entity_starts(table: pa.Table, keys: Sequence[str]) -> np.ndarray:
    """Index of the first row of each row's entity run in a table sorted by ``keys``."""
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
    return _run_starts(new)


def _sorted_packed(table: pa.Table, key: str, tag_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Sort by (key, ts, tag) as ONE int64 per row when an integer key, the times and the tag fit in 63 bits.

    Returns (key, ts, tag, entity start) arrays in sorted order, or ``None`` when they do not fit.
    """
    if not pa.types.is_integer(table.schema.field(key).type):
        return None
    keys = table.column(key).to_numpy().astype(np.int64, copy=False)
    ts = table.column(TS_COL).to_numpy()
    k_lo, k_hi, t_lo, t_hi = int(keys.min()), int(keys.max()), int(ts.min()), int(ts.max())
    ts_bits = (t_hi - t_lo).bit_length()
    if (k_hi - k_lo).bit_length() + ts_bits + tag_bits > 63:
        return None
    packed = ((keys - k_lo) << (ts_bits + tag_bits)) | ((ts - t_lo) << tag_bits) | table.column(TAG_COL).to_numpy().astype(np.int64)
    packed.sort()
    entity = packed >> (ts_bits + tag_bits)
    new = np.ones(len(packed), dtype=bool)
    new[1:] = entity[1:] != entity[:-1]
    return entity + k_lo, ((packed >> tag_bits) & ((1 << ts_bits) - 1)) + t_lo, packed & ((1 << tag_bits) - 1), _run_starts(new)


def match_kernel(
    batches: Iterator[pa.RecordBatch], keys: Sequence[str], ttls: Sequence[int | None], out_schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """Step 1 over one partition of the narrow union (see the module docstring).

    Args:
        batches: Arrow batches of keys and ``TS_COL`` (time << :func:`_tag_bits` | tag), any order.
        keys: entity key columns.
        ttls: per source (tag = position) its TTL in microseconds or ``None``.
        out_schema: ``TAG_COL``, keys, ``TS_COL`` (label time), ``MATCH_COL`` (feature time).

    Yields:
        one batch: per distinct (keys, label time) and source with a match, the matched feature time.
    """
    present = [b for b in batches if b.num_rows]
    if not present:
        return
    table = pa.Table.from_batches(present).combine_chunks()
    label_tag = len(ttls)
    bits = _tag_bits(label_tag)
    packed_ts = table.column(TS_COL).to_numpy()
    table = table.set_column(table.schema.get_field_index(TS_COL), TS_COL, pa.array(packed_ts >> bits))
    table = table.append_column(TAG_COL, pa.array((packed_ts & ((1 << bits) - 1)).astype(np.int32)))
    packed = _sorted_packed(table, keys[0], label_tag.bit_length()) if len(keys) == 1 else None
    if packed is not None:
        key_values, ts, tags, starts = packed
    else:
        table = table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in [*keys, TS_COL, TAG_COL]]))
        starts = _entity_starts(table, keys)
        ts = table.column(TS_COL).to_numpy()
        tags = table.column(TAG_COL).to_numpy()
    positions = np.arange(len(ts), dtype=np.int64)
    is_label = tags == label_tag
    first = is_label.copy()  # one output row per distinct (keys, label time)
    first[1:] &= ~(is_label[:-1] & (starts[1:] == starts[:-1]) & (ts[1:] == ts[:-1]))
    rows = np.flatnonzero(first)
    parts: list[pa.RecordBatch] = []
    for tag, ttl in enumerate(ttls):
        latest = np.maximum.accumulate(np.where(tags == tag, positions, -1))[rows]
        ok = latest >= starts[rows]
        if ttl is not None:
            ok &= ts[np.maximum(latest, 0)] >= ts[rows] - ttl
        hit = rows[ok]
        if packed is not None:
            key_columns = [pa.array(key_values[hit]).cast(out_schema.field(keys[0]).type)]
        else:
            key_columns = [table.column(k).take(hit).combine_chunks() for k in keys]
        tag_column = pa.array(np.full(len(hit), tag, dtype=np.int32))
        parts.append(pa.RecordBatch.from_arrays([tag_column, *key_columns, pa.array(ts[hit]), pa.array(ts[latest[ok]])], schema=out_schema))
    yield from parts


def _feature_rows(keys: Sequence[str], sources: Sequence[FeatureSource]) -> DataFrame:
    """Every usable feature row of every source: ``TAG_COL``, keys, ``MATCH_COL`` (feature time), all outputs (null-padded)."""
    outputs = [(out, src.df.schema[col].dataType) for src in sources for col, out in src.features.items()]
    parts = []
    for i, src in enumerate(sources):
        mine = {out: col for col, out in src.features.items()}
        parts.append(
            _usable(src).select(
                F.lit(i).cast("int").alias(TAG_COL),
                *[F.col(src.join_keys[k]).alias(k) for k in keys],
                _micros(src.ts_col).alias(MATCH_COL),
                *[(F.col(mine[out]) if out in mine else F.lit(None).cast(t)).alias(out) for out, t in outputs],
            )
        )
    return functools.reduce(DataFrame.unionByName, parts)


def asof_join(
    labels: DataFrame,
    keys: Sequence[str],
    label_ts: str,
    sources: Sequence[FeatureSource],
    partitions: int | None = None,
    broadcast_rows: int = BROADCAST_ROWS,
    label_rows: int | None = None,
) -> DataFrame:
    """As-of join ``labels`` with every source: one narrow match pass, one broadcast fetch, one join.

    Args:
        labels: label rows: ``keys``, ``label_ts`` (timestamp, timestamp_ntz or date) and any columns.
        keys: entity key columns of ``labels``; each source maps them to its own columns.
        label_ts: the label timestamp column.
        sources: feature lookups (see :class:`FeatureSource`); their output names must not clash.
        partitions: partitions of the match pass and of the final join (default ``spark.sql.shuffle.partitions``).
        broadcast_rows: broadcast the matches when label rows x sources is at most this
            (one count of ``labels``); above it, Spark picks the join (a shuffle join).
        label_rows: the rows of ``labels`` when the caller has counted them (no count then).

    Returns:
        label columns (unchanged, same order) + per source its output feature columns and
        ``<name>_feature_ts``; exactly one row per label row.

    Raises:
        SchemaMismatchError: a column is missing or a key/timestamp has the wrong type.
        ConfigError: join keys do not match, output names clash or a label column uses the
            reserved ``_asof_`` prefix.
    """
    keys = list(keys)
    _check_inputs(labels, keys, label_ts, sources)
    if not sources:
        return labels
    if len(sources) > MAX_SOURCES:
        raise ConfigError(f"as-of join: {len(sources)} feature sources; at most {MAX_SOURCES} in one join (join the rest in a second pass)")
    n = partitions or int(labels.sparkSession.conf.get("spark.sql.shuffle.partitions") or 8)
    match_struct = T.StructType(
        [T.StructField(TAG_COL, T.IntegerType(), False)]
        + [labels.schema[k] for k in keys]
        + [T.StructField(LABEL_TS_COL, T.LongType(), False), T.StructField(MATCH_COL, T.LongType(), False)]
    )
    arrow_schema = _arrow_schema(match_struct)
    ttls = [None if src.ttl is None else int(src.ttl / dt.timedelta(microseconds=1)) for src in sources]

    def match(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return match_kernel(batches, keys, ttls, arrow_schema)

    # At most one wanted row per distinct (keys, label time) and source: the broadcast stays <= the labels.
    wanted = _narrow_union(labels, keys, label_ts, sources).repartition(n, *keys).mapInArrow(match, match_struct)
    if (labels.count() if label_rows is None else label_rows) * len(sources) <= broadcast_rows:
        wanted = F.broadcast(wanted)
    hits = _feature_rows(keys, sources).join(wanted, on=[TAG_COL, *keys, MATCH_COL], how="inner")
    # One row per (keys, label time): per source the greatest (features, feature time) struct,
    # i.e. the tie rule; other sources' rows are null for it and ignored by max.
    per_source = []
    for i, src in enumerate(sources):
        fields = [*src.features.values(), MATCH_COL]
        per_source.append(F.max(F.when(F.col(TAG_COL) == i, F.struct(*fields))).alias(f"{RESERVED_PREFIX}s{i}"))
    fetched = hits.repartition(n, *keys, LABEL_TS_COL).groupBy(*keys, LABEL_TS_COL).agg(*per_source)
    fetched = fetched.select(
        *[F.col(k).alias(f"{RESERVED_PREFIX}k{j}") for j, k in enumerate(keys)],
        F.col(LABEL_TS_COL).alias(f"{RESERVED_PREFIX}flts"),
        *[
            column
            for i, src in enumerate(sources)
            for column in [
                *[F.col(f"{RESERVED_PREFIX}s{i}")[out].alias(out) for out in src.features.values()],
                F.timestamp_micros(F.col(f"{RESERVED_PREFIX}s{i}")[MATCH_COL]).alias(src.ts_output),
            ]
        ],
    )
    on = [F.col(k) == F.col(f"{RESERVED_PREFIX}k{j}") for j, k in enumerate(keys)]
    on.append(F.col(LABEL_TS_COL) == F.col(f"{RESERVED_PREFIX}flts"))
    joined = labels.withColumn(LABEL_TS_COL, _micros(label_ts)).join(fetched, on=on, how="left")
    outputs = [*labels.columns, *[c for src in sources for c in [*src.features.values(), src.ts_output]]]
    return joined.select(*outputs)


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
