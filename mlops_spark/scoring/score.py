"""Pure scoring transforms: feature lookup as of a time, missing-feature handling,
schema checks and the prediction table's columns. Nothing here reads or writes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.errors import SchemaMismatchError
from mlops_spark.scoring.model_udf import PREDICTION, PROBABILITY

NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType, T.BooleanType)
TIMESTAMPS = (T.TimestampType, T.TimestampNTZType, T.DateType)


@dataclass(frozen=True)
class Lookup:
    """One feature table of a model's feature spec."""

    table: str
    join_keys: tuple[str, ...]
    timestamp_key: str
    columns: tuple[str, ...]

    @classmethod
    def from_spec(cls, item: dict) -> Lookup:
        """From one ``lookups`` entry of the feature spec stored with the model."""
        return cls(item["table"], tuple(item["join_keys"]), item["timestamp_key"], tuple(item["columns"]))


def check_lookup_schema(schema: T.StructType, lookup: Lookup, where: str) -> None:
    """The feature table must have the join keys, a timestamp key and numeric feature columns.

    Raises:
        SchemaMismatchError: one line naming ``where`` and each offending column.
    """
    have = {f.name: f.dataType for f in schema.fields}
    problems = [f"missing column {c}" for c in (*lookup.join_keys, lookup.timestamp_key, *lookup.columns) if c not in have]
    if lookup.timestamp_key in have and not isinstance(have[lookup.timestamp_key], TIMESTAMPS):
        problems.append(f"column {lookup.timestamp_key} is {have[lookup.timestamp_key].simpleString()}, expected a timestamp")
    problems += [
        f"column {c} is {have[c].simpleString()}, the model expects a number"
        for c in lookup.columns
        if c in have and not isinstance(have[c], NUMERIC)
    ]
    if problems:
        raise SchemaMismatchError(f"{where} does not match the model signature: " + "; ".join(problems))


def check_entities_schema(schema: T.StructType, entity_keys: Sequence[str], provided_features: Sequence[str], where: str) -> None:
    """Entities need every entity key; feature columns they carry must be numeric.

    Raises:
        SchemaMismatchError: naming ``where`` and the columns.
    """
    have = {f.name: f.dataType for f in schema.fields}
    problems = [f"missing entity key {k}" for k in entity_keys if k not in have]
    problems += [
        f"column {c} is {have[c].simpleString()}, the model expects a number" for c in provided_features if not isinstance(have[c], NUMERIC)
    ]
    if problems:
        raise SchemaMismatchError(f"{where}: " + "; ".join(problems))


def latest_as_of(features: DataFrame, lookup: Lookup, as_of: dt.datetime) -> DataFrame:
    """For each key, the feature row with the latest ``timestamp_key <= as_of``.

    Rows stamped after ``as_of`` are invisible, so scoring never sees the future.

    Returns:
        join keys + ``lookup.columns`` (one row per key).
    """
    ts = lookup.timestamp_key
    # max over a struct led by the timestamp picks the latest row; the other fields break ties deterministically.
    latest = F.max(F.struct(F.col(ts).alias("_ts"), *[F.col(c) for c in lookup.columns])).alias("_latest")
    return (
        features.where(F.col(ts) <= F.lit(as_of))
        .groupBy(*lookup.join_keys)
        .agg(latest)
        .select(*lookup.join_keys, *[F.col(f"_latest.{c}").alias(c) for c in lookup.columns])
    )


def lookup_features(
    entities: DataFrame, lookups: Sequence[tuple[Lookup, DataFrame]], as_of: dt.datetime, feature_names: Sequence[str]
) -> DataFrame:
    """Add every model feature to ``entities`` as of ``as_of``.

    Feature columns the entities already carry are used as given (as in Databricks'
    ``score_batch``); the others are looked up. Entities without a feature row get nulls.

    Returns:
        the entities' columns + every name in ``feature_names`` as double, in that order.
    """
    out = entities
    for lookup, frame in lookups:
        wanted = [c for c in lookup.columns if c not in entities.columns]
        if not wanted:
            continue
        narrowed = Lookup(lookup.table, lookup.join_keys, lookup.timestamp_key, tuple(wanted))
        out = out.join(latest_as_of(frame, narrowed, as_of), on=list(lookup.join_keys), how="left")
    extra = [c for c in entities.columns if c not in feature_names]
    return out.select(*extra, *[F.col(c).cast("double").alias(c) for c in feature_names])


def missing_reason(feature_names: Sequence[str]) -> Column:
    """``missing features: a, b`` naming the null features of a row, or null when none is null."""
    names = F.array_compact(F.array(*[F.when(F.col(c).isNull() | F.isnan(c), F.lit(c)) for c in feature_names]))
    return F.when(F.size(names) > 0, F.concat(F.lit("missing features: "), F.array_join(names, ", ")))


def split_missing(df: DataFrame, feature_names: Sequence[str], allow_nan: bool) -> tuple[DataFrame, DataFrame | None]:
    """Rows to score and rows to reject for missing features.

    Models that accept NaN (HistGradientBoosting, RandomForest in scikit-learn >= 1.4)
    score every row, missing values as NaN; the others cannot, so those rows are
    rejected with a reason naming the missing features.

    Returns:
        (scorable rows, rejected rows with ``reason`` or ``None`` when nothing can be rejected).
    """
    if allow_nan:
        return df, None
    flagged = df.withColumn("_reason", missing_reason(feature_names))
    return flagged.where(F.col("_reason").isNull()).drop("_reason"), flagged.where(F.col("_reason").isNotNull())


def prediction_columns(
    scored: DataFrame, entity_keys: Sequence[str], model_name: str, version: int, run_id: str, scored_at: dt.datetime, run_date: dt.date
) -> DataFrame:
    """The ``ml.predictions_<model>`` contract.

    Returns:
        entity keys, prediction double, probability double, model_name, model_version int,
        run_id, scored_at timestamp, run_date date.
    """
    return scored.select(
        *entity_keys,
        F.col(PREDICTION).cast("double").alias("prediction"),
        F.col(PROBABILITY).cast("double").alias("probability"),
        F.lit(model_name).alias("model_name"),
        F.lit(int(version)).cast("int").alias("model_version"),
        F.lit(run_id).alias("run_id"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
        F.lit(run_date).cast("date").alias("run_date"),
    )


REJECTS_SCHEMA = T.StructType(
    [
        T.StructField("model_name", T.StringType(), False, {"comment": "model that could not score the row"}),
        T.StructField("model_version", T.IntegerType(), False, {"comment": "its version"}),
        T.StructField("run_id", T.StringType(), True, {"comment": "MLflow run of that version"}),
        T.StructField("entity", T.StringType(), True, {"comment": "entity keys as JSON"}),
        T.StructField("reason", T.StringType(), False, {"comment": "why the row was not scored"}),
        T.StructField("scored_at", T.TimestampType(), False, {"comment": "when scoring ran (UTC)"}),
        T.StructField("run_date", T.DateType(), False, {"comment": "logical date of the scoring run"}),
    ]
)


def reject_columns(
    rejected: DataFrame, entity_keys: Sequence[str], model_name: str, version: int, run_id: str, scored_at: dt.datetime, run_date: dt.date
) -> DataFrame:
    """The ``ml.scoring_rejects`` contract (see :data:`REJECTS_SCHEMA`)."""
    return rejected.select(
        F.lit(model_name).alias("model_name"),
        F.lit(int(version)).cast("int").alias("model_version"),
        F.lit(run_id).alias("run_id"),
        F.to_json(F.struct(*entity_keys)).alias("entity"),
        F.col("_reason").alias("reason"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
        F.lit(run_date).cast("date").alias("run_date"),
    )


def feature_spec_summary(spec: dict) -> str:
    """One-line JSON of the feature spec, for logs."""
    return json.dumps({"features": spec.get("feature_names"), "tables": [lk["table"] for lk in spec.get("lookups", [])]})
