"""Build, record and rebuild point-in-time correct training sets.

Tables written (the contract the trainer reads):

``ml.training_sets`` (one row per built set, keyed by ``training_set_id``):
    ``training_set_id`` string   ``<name>_<16 hex>``: hash of the definition and input versions
    ``name`` string              definition name
    ``definition`` string        the definition as canonical JSON
    ``definition_hash`` string   sha256 of ``definition``
    ``inputs`` array<struct<table:string, version:bigint>>  Delta version of every input table read
    ``rows_table`` string        table holding the rows (``ml.training_set_<name>``)
    ``label_column`` string      the label column
    ``label_ts_column`` string   the label time column
    ``entity_keys`` array<string>
    ``feature_columns`` array<string>  output feature columns, in order
    ``row_count`` bigint         rows of the set (= label rows read)
    ``rows_checksum`` string     order-independent checksum of the rows (rebuilds must match it)
    ``created_at`` timestamp     UTC time of the first build
    ``run_date`` date            the CLI's ``--run-date`` of the first build

``ml.training_set_<name>`` (partitioned by ``training_set_id``):
    ``training_set_id`` string, then every label column (entity keys, label time, label,
    extras), then per feature lookup its feature columns and ``<lookup>_feature_ts``
    (timestamp of the feature row used; null when none), then ``split`` (string,
    ``train``/``validation``/``test``) when the definition has a split.

The id depends only on the definition and the input versions, so running the same
definition again on unchanged inputs finds the set already built and writes nothing.
:func:`rebuild` re-reads the recorded versions with Delta time travel and rewrites the
same rows under the same id, checking the checksum.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.config.settings import Settings
from mlops_spark.errors import ConfigError, DataQualityError, UsageError
from mlops_spark.log import fields
from mlops_spark.spark import delta
from mlops_spark.training.asof import FeatureSource, asof_join, guard_no_leakage, raise_if_leakage
from mlops_spark.training.definition import TrainingSetDefinition, parse_definition
from mlops_spark.training.exact_windows import exact_window_features
from mlops_spark.training.split import SPLIT_COL, fraction_cut_points, time_split

log = logging.getLogger(__name__)

ID_COL = "training_set_id"
REGISTRY = "training_sets"

REGISTRY_SCHEMA = T.StructType(
    [
        T.StructField(ID_COL, T.StringType(), False, {"comment": "id: <name>_<hash of definition and input versions>"}),
        T.StructField("name", T.StringType(), False, {"comment": "training set definition name"}),
        T.StructField("definition", T.StringType(), False, {"comment": "definition as canonical JSON"}),
        T.StructField("definition_hash", T.StringType(), False, {"comment": "sha256 of definition"}),
        T.StructField(
            "inputs",
            T.ArrayType(T.StructType([T.StructField("table", T.StringType()), T.StructField("version", T.LongType())])),
            False,
            {"comment": "Delta version of every input table read"},
        ),
        T.StructField("rows_table", T.StringType(), False, {"comment": "table holding the rows"}),
        T.StructField("label_column", T.StringType(), False, {"comment": "label column"}),
        T.StructField("label_ts_column", T.StringType(), False, {"comment": "label time column"}),
        T.StructField("entity_keys", T.ArrayType(T.StringType()), False, {"comment": "entity key columns"}),
        T.StructField("feature_columns", T.ArrayType(T.StringType()), False, {"comment": "feature columns in order"}),
        T.StructField("row_count", T.LongType(), False, {"comment": "rows in the set (= label rows)"}),
        T.StructField("rows_checksum", T.StringType(), False, {"comment": "order-independent checksum of the rows"}),
        T.StructField("created_at", T.TimestampType(), False, {"comment": "UTC time of the first build"}),
        T.StructField("run_date", T.DateType(), True, {"comment": "logical run date of the first build"}),
    ]
)


@dataclass(frozen=True)
class TrainingSetResult:
    """What a build produced: id, rows table, row count, input versions, and whether it wrote."""

    training_set_id: str
    rows_table: str
    row_count: int
    inputs: dict[str, int]
    written: bool


def input_tables(definition: TrainingSetDefinition) -> list[str]:
    """Every table the definition reads, labels first, without duplicates."""
    tables = [definition.labels.table, *(f.table for f in definition.features), *(w.events_table() for w in definition.exact_windows)]
    return list(dict.fromkeys(tables))


def training_set_id(definition: TrainingSetDefinition, versions: dict[str, int]) -> str:
    """``<name>_<16 hex>`` from the definition's hash and the input versions."""
    payload = json.dumps({"definition": definition.definition_hash(), "inputs": sorted(versions.items())})
    return f"{definition.name}_{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def _read(spark: SparkSession, table: str, version: int) -> DataFrame:
    try:
        return delta.read_version(spark, table, version)
    except AnalysisException as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise UsageError(f"cannot read {table} at version {version}: {first}") from None


def _sources(spark: SparkSession, definition: TrainingSetDefinition, versions: dict[str, int]) -> list[FeatureSource]:
    keys = definition.labels.entity_keys
    sources = []
    for lookup in definition.features:
        df = _read(spark, lookup.table, versions[lookup.table])
        join_keys = lookup.join_keys or {k: k for k in keys}
        if set(join_keys) != set(keys):
            raise ConfigError(f"training set {definition.name}: lookup {lookup.lookup_name}: join_keys must map exactly {keys}")
        properties = delta.table_properties(spark, lookup.table)
        ts_col = lookup.timestamp or properties.get("mlops.timestamp_column", "feature_ts")
        primary_key = [c for c in properties.get("mlops.primary_key", "").split(",") if c]
        skip = {*join_keys.values(), ts_col, *primary_key}
        columns = lookup.features if lookup.features is not None else [c for c in df.columns if c not in skip]
        missing = [c for c in [*columns, ts_col, *join_keys.values()] if c not in df.columns]
        if missing:
            raise ConfigError(f"training set {definition.name}: table {lookup.table} has no column(s) {missing}")
        unknown = sorted(set(lookup.renames) - set(columns))
        if unknown:
            raise ConfigError(f"training set {definition.name}: lookup {lookup.lookup_name}: renames name unknown features {unknown}")
        features = {c: lookup.renames.get(c, c) for c in columns}
        sources.append(FeatureSource(lookup.lookup_name, df, join_keys, ts_col, features, lookup.ttl_delta))
    return sources


def _labels(spark: SparkSession, definition: TrainingSetDefinition, versions: dict[str, int]) -> DataFrame:
    spec = definition.labels
    df = _read(spark, spec.table, versions[spec.table])
    wanted = [*spec.entity_keys, spec.timestamp, spec.label]
    columns = list(dict.fromkeys(wanted + (spec.columns if spec.columns is not None else [c for c in df.columns if c not in wanted])))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"training set {definition.name}: label table {spec.table} has no column(s) {missing}")
    if ID_COL in columns or SPLIT_COL in columns:
        raise ConfigError(f"training set {definition.name}: label table columns must not be named {ID_COL} or {SPLIT_COL}")
    return df.select(*columns)


def build(
    spark: SparkSession,
    definition: TrainingSetDefinition,
    versions: dict[str, int],
    partitions: int | None = None,
    label_rows: int | None = None,
) -> DataFrame:
    """The training-set rows for ``definition`` from the inputs at ``versions`` (no writes);
    ``label_rows``: the label table's rows at its version, when the caller has counted them.

    Returns:
        label columns, per lookup its features and ``<lookup>_feature_ts``, then ``split``
        when the definition has one; one row per label row.

    Raises:
        ConfigError: columns named by the definition do not exist or clash.
        UsageError: an input version cannot be read (e.g. vacuumed).
    """
    labels = _labels(spark, definition, versions)
    keys, label_ts = definition.labels.entity_keys, definition.labels.timestamp
    joined = labels
    if definition.features:
        joined = asof_join(labels, keys, label_ts, _sources(spark, definition, versions), partitions, label_rows=label_rows)
    for window in definition.exact_windows:
        events = _read(spark, window.events_table(), versions[window.events_table()])
        joined = exact_window_features(joined, keys, label_ts, events, window.spec(), window.features, window.renames, partitions)
    split = definition.split
    if split is None:
        return joined
    if split.fractions is not None:
        train_until, validation_until = fraction_cut_points(labels, definition.labels.timestamp, split.fractions)
    else:
        train_until, validation_until = split.train_until, split.validation_until  # type: ignore[assignment]
    together = definition.labels.entity_keys if split.keep_entity_together else None
    return joined.transform(time_split, definition.labels.timestamp, train_until, validation_until, together)


def rows_checksum(df: DataFrame) -> str:
    """Order-independent checksum of ``df``'s rows: count and sum of per-row 64-bit hashes."""
    row = df.select(F.count(F.lit(1)).alias("n"), F.sum(F.xxhash64(*df.columns).cast(T.DecimalType(38, 0))).alias("s")).first()
    return f"{row['n']}:{row['s'] or 0}"  # type: ignore[index]


def _registered(spark: SparkSession, registry: str, set_id: str) -> dict | None:
    if not delta.table_exists(spark, registry):
        return None
    rows = spark.table(registry).where(F.col(ID_COL) == F.lit(set_id)).collect()
    return rows[0].asDict(recursive=True) if rows else None


def _write_rows(df: DataFrame, rows_table: str, set_id: str) -> None:
    """Replace the rows of ``set_id`` in ``rows_table`` (created on first write)."""
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", delta.col_eq(ID_COL, set_id))
        # A later definition of the same name may add feature columns.
        .option("mergeSchema", "true")
        .partitionBy(ID_COL)
        .saveAsTable(rows_table)
    )


def _materialise(
    spark: SparkSession, settings: Settings, definition: TrainingSetDefinition, versions: dict[str, int], set_id: str
) -> tuple[str, int, str, list[str]]:
    expected = _read(spark, definition.labels.table, versions[definition.labels.table]).count()
    rows = build(spark, definition, versions, _partitions(settings), label_rows=expected)
    label_cols = set(_labels(spark, definition, versions).columns)
    feature_cols = [c for c in rows.columns if c not in label_cols and c != SPLIT_COL and not c.endswith("_feature_ts")]
    ts_cols = [f"{f.lookup_name}_feature_ts" for f in definition.features]
    guarded = rows.transform(guard_no_leakage, definition.labels.timestamp, ts_cols)
    rows_table = settings.table("ml", f"training_set_{definition.name}")
    out = guarded.select(F.lit(set_id).alias(ID_COL), *guarded.columns)
    try:
        _write_rows(out, rows_table, set_id)
    except Exception as exc:
        raise_if_leakage(exc, f"training set {set_id}")
        raise
    written = spark.table(rows_table).where(F.col(ID_COL) == F.lit(set_id)).select(*out.columns)
    checksum = rows_checksum(written)
    count = int(checksum.split(":")[0])
    if count != expected:
        raise DataQualityError(f"training set {set_id}: {expected} label rows in but {count} rows written")
    return rows_table, count, checksum, feature_cols


def _partitions(settings: Settings) -> int | None:
    section = getattr(settings, "training_sets", None)
    return getattr(section, "partitions", None)


def run(spark: SparkSession, settings: Settings, definition: TrainingSetDefinition, run_date: dt.date | None = None) -> TrainingSetResult:
    """Build the set from the inputs' current versions, write it and record it.

    Idempotent: when the same definition was already built from the same versions,
    nothing is written and the recorded set is returned.

    Raises:
        ConfigError: the definition names columns that do not exist.
        LeakageError: a joined feature row is newer than its label (nothing written).
        DataQualityError: the rows written differ in number from the label rows.
    """
    for table in input_tables(definition):
        if not delta.table_exists(spark, table):
            raise ConfigError(f"training set {definition.name}: input table {table} does not exist")
    versions = {t: delta.current_version(spark, t) for t in input_tables(definition)}
    set_id = training_set_id(definition, versions)
    registry = settings.table("ml", REGISTRY)
    known = _registered(spark, registry, set_id)
    if known is not None and delta.table_exists(spark, known["rows_table"]):
        log.info("training set already built", extra=fields(training_set_id=set_id, rows=known["row_count"]))
        return TrainingSetResult(set_id, known["rows_table"], known["row_count"], versions, written=False)
    rows_table, count, checksum, feature_cols = _materialise(spark, settings, definition, versions, set_id)
    record = spark.createDataFrame(
        [
            (
                set_id,
                definition.name,
                definition.canonical_json(),
                definition.definition_hash(),
                [(t, v) for t, v in versions.items()],
                rows_table,
                definition.labels.label,
                definition.labels.timestamp,
                definition.labels.entity_keys,
                feature_cols,
                count,
                checksum,
                dt.datetime.now(dt.timezone.utc),
                run_date,
            )
        ],
        REGISTRY_SCHEMA,
    )
    if known is None:
        # Checked above that the id is not recorded: a plain append is enough (and much cheaper than MERGE).
        delta.create_table(spark, registry, REGISTRY_SCHEMA, comment="Training sets: definition, input Delta versions, row count")
        delta.append(record, registry)
    log.info("training set built", extra=fields(training_set_id=set_id, rows=count, rows_table=rows_table, inputs=versions))
    return TrainingSetResult(set_id, rows_table, count, versions, written=True)


def rebuild(spark: SparkSession, settings: Settings, set_id: str) -> TrainingSetResult:
    """Rebuild a recorded set from its recorded definition and input versions (time travel).

    Rewrites the set's rows under the same id; the registry row is kept as it was.

    Raises:
        UsageError: ``set_id`` is not recorded, or an input version is no longer readable.
        DataQualityError: the rebuilt rows differ from the recorded checksum.
    """
    registry = settings.table("ml", REGISTRY)
    known = _registered(spark, registry, set_id)
    if known is None:
        raise UsageError(f"training set {set_id} is not recorded in {registry}")
    definition = parse_definition(json.loads(known["definition"]), f"{registry} {set_id}")
    versions = {i["table"]: int(i["version"]) for i in known["inputs"]}
    _, count, checksum, _ = _materialise(spark, settings, definition, versions, set_id)
    if checksum != known["rows_checksum"]:
        raise DataQualityError(
            f"training set {set_id}: rebuilt rows differ from the recorded ones ({checksum} != {known['rows_checksum']})"
        )
    log.info("training set rebuilt", extra=fields(training_set_id=set_id, rows=count, inputs=versions))
    return TrainingSetResult(set_id, known["rows_table"], count, versions, written=True)
