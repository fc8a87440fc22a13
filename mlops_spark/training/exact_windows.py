"""Exact windows at label time: a feature set's windowed aggregates evaluated at each label's timestamp.

Instead of looking up the latest snapshot (which is as old as the snapshot granularity),
the feature set's windows are computed straight from its event table with the label
times merged into the event stream, reusing the one-pass engine
(:func:`mlops_spark.features.windows.compute_windows`). Window convention (the engine's):
a window ``W`` at label time ``t`` aggregates the entity's events with
``t - W < event_ts <= t``; events stamped exactly at ``t`` are included, later ones never.

The engine does not evaluate rows with a null entity key or null time; such label rows are
kept here with null features, so there is still exactly one output row per label row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark.errors import ConfigError
from mlops_spark.features.pipeline import prepare_events
from mlops_spark.features.spec import FeatureSet
from mlops_spark.features.windows import compute_windows, feature_types


def exact_window_features(
    labels: DataFrame,
    keys: Sequence[str],
    label_ts: str,
    events: DataFrame,
    spec: FeatureSet,
    features: Sequence[str] | None = None,
    renames: Mapping[str, str] | None = None,
    partitions: int | None = None,
) -> DataFrame:
    """Add ``spec``'s features evaluated exactly at each row's ``label_ts``.

    Args:
        labels: label rows (any columns) with ``keys`` named like ``spec.entity`` and ``label_ts``.
        keys: the label entity key columns; must equal ``spec.entity``.
        label_ts: label time column (timestamp or timestamp_ntz).
        events: the feature set's source rows (derived columns and filter are applied here).
        spec: the feature set.
        features: feature names to keep (default all of ``spec.feature_names()``).
        renames: feature name -> output column name.
        partitions: shuffle partitions of the engine.

    Returns:
        ``labels``' columns (same order) followed by the chosen features (renamed);
        one row per label row.

    Raises:
        ConfigError: keys differ from the feature set's entity, unknown or clashing feature names.
    """
    if list(keys) != list(spec.entity):
        raise ConfigError(
            f"exact windows of feature set '{spec.name}': label keys {list(keys)} must be named like its entity {spec.entity}"
        )
    chosen = list(features) if features is not None else spec.feature_names()
    unknown = sorted(set(chosen) - set(spec.feature_names()))
    if unknown:
        raise ConfigError(f"exact windows of feature set '{spec.name}': unknown features {unknown}")
    renames = dict(renames or {})
    outputs = [renames.get(f, f) for f in chosen]
    clash = sorted(set(outputs) & set(labels.columns))
    if clash:
        raise ConfigError(f"exact windows of feature set '{spec.name}': output columns {clash} already exist; rename them")
    prepared = prepare_events(events, spec)
    types = feature_types(spec, prepared.schema)
    evaluable = F.col(label_ts).isNotNull()
    for key in keys:
        evaluable = evaluable & F.col(key).isNotNull()
    flagged = labels.withColumn("__mlops_evaluable", evaluable)
    computed = compute_windows(
        prepared, spec, flagged.where("__mlops_evaluable").drop("__mlops_evaluable"), query_timestamp=label_ts, partitions=partitions
    )
    computed = computed.select(*labels.columns, *[F.col(f).alias(o) for f, o in zip(chosen, outputs, strict=True)])
    skipped = flagged.where(~F.col("__mlops_evaluable")).select(
        *labels.columns,
        *[F.lit(None).cast(types.get(f, computed.schema[o].dataType)).alias(o) for f, o in zip(chosen, outputs, strict=True)],
    )
    return computed.unionByName(skipped).select(*labels.columns, *outputs)
