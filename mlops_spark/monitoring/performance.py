"""Model performance with delayed ground truth.

Labels arrive days after the predictions. Each label row (entity keys, label
timestamp, label) is matched to the latest prediction of the same entity scored at
or before the label's timestamp and at most ``label_max_delay_days`` before it.
Metrics are computed per prediction day and over the whole look-back
(``label_max_delay_days`` days ending on the run date), and compared with the
validation baseline stored with the model: ``<metric>_drop`` is the degradation
(baseline - current for accuracy, current - baseline for rmse/mae), so one
"above threshold" rule fits all (default ``accuracy_drop`` > 0.05 = 5 points).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.config.settings import Settings
from mlops_spark.errors import SchemaMismatchError, UsageError
from mlops_spark.spark import delta

MODEL_FEATURE = "__model__"
# Metric -> True when higher is better.
_DIRECTION = {"accuracy": True, "rmse": False, "mae": False}


def read_labels(spark: SparkSession, settings: Settings) -> DataFrame | None:
    """The configured labels table, or ``None`` when none is configured.

    Raises:
        UsageError: the configured table does not exist.
    """
    name = settings.monitoring.labels_table
    if not name:
        return None
    if not delta.table_exists(spark, name):
        raise UsageError(f"labels table '{name}' (monitoring.labels_table) does not exist")
    return spark.table(name)


def match_labels(
    predictions: DataFrame, labels: DataFrame, entity_keys: Sequence[str], label_ts: str, label: str, max_delay_days: int
) -> DataFrame:
    """Each label with the latest prediction of its entity scored in ``[label_ts - max_delay, label_ts]``.

    Input columns: predictions: entity keys, ``prediction``, ``scored_at``, ``run_date``;
    labels: entity keys, ``label_ts``, ``label``.
    Output columns: entity keys, ``label_ts``, ``label`` double, ``prediction`` double, ``prediction_day`` date.
    Labels without a prediction are dropped here; their count is the ``unmatched_labels`` metric.

    Raises:
        SchemaMismatchError: a required column is missing.
    """
    for where, df, cols in (
        ("predictions", predictions, [*entity_keys, "prediction", "scored_at", "run_date"]),
        ("labels", labels, [*entity_keys, label_ts, label]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise SchemaMismatchError(f"{where}: missing column(s) {', '.join(missing)}")
    lab = labels.select(*entity_keys, F.col(label_ts).cast(T.TimestampType()).alias("label_ts"), F.col(label).cast("double").alias("label"))
    lab = lab.withColumn("__label_id", F.monotonically_increasing_id())
    pred = predictions.select(*[F.col(k).alias(f"__p_{k}") for k in entity_keys], "prediction", "scored_at", "run_date")
    on = [F.col(k) == F.col(f"__p_{k}") for k in entity_keys]
    on += [
        F.col("scored_at") <= F.col("label_ts"),
        F.col("scored_at") >= F.col("label_ts") - F.expr(f"INTERVAL {int(max_delay_days)} DAYS"),
    ]
    joined = lab.join(pred, on=on, how="inner")
    latest = joined.groupBy("__label_id", *entity_keys, "label_ts", "label").agg(
        F.max_by(F.struct("prediction", "run_date"), "scored_at").alias("p")
    )
    return latest.select(
        *entity_keys,
        "label_ts",
        "label",
        F.col("p.prediction").cast("double").alias("prediction"),
        F.col("p.run_date").alias("prediction_day"),
    )


def daily_metrics(matched: DataFrame, kind: str) -> DataFrame:
    """Metrics per prediction day (and ``prediction_day`` null = all days).

    Input columns: ``label``, ``prediction``, ``prediction_day``.
    Output columns: ``prediction_day`` date (null for the total), ``metric`` string, ``value`` double.
    """
    err = F.col("prediction") - F.col("label")
    if kind == "regressor":
        aggs = [F.sqrt(F.avg(err * err)).alias("rmse"), F.avg(F.abs(err)).alias("mae")]
    else:
        aggs = [F.avg((F.col("prediction") == F.col("label")).cast("double")).alias("accuracy")]
    aggs.append(F.count(F.lit(1)).cast("double").alias("labeled_rows"))
    names = [a for a in ("rmse", "mae") if kind == "regressor"] or ["accuracy"]
    per_day = matched.groupBy("prediction_day").agg(*aggs)
    total = matched.agg(*aggs).select(F.lit(None).cast(T.DateType()).alias("prediction_day"), "*")
    both = per_day.unionByName(total)
    pairs = [F.struct(F.lit(n).alias("metric"), F.col(n).cast("double").alias("value")) for n in [*names, "labeled_rows"]]
    return both.select("prediction_day", F.inline(F.array(*pairs))).select("prediction_day", "metric", "value")


def performance_metrics(
    spark: SparkSession,
    settings: Settings,
    model: str,
    version: int,
    baseline: Mapping[str, float],
    labels: DataFrame,
    run_date: dt.date,
    kind: str = "classifier",
    entity_keys: Sequence[str] | None = None,
) -> DataFrame:
    """Long rows (``feature, metric, value``) of the model's performance for the monitoring run.

    ``feature`` is ``__model__`` for the look-back total (with ``<metric>_drop`` against
    ``baseline``) and ``__model__:<YYYY-MM-DD>`` per prediction day.
    """
    m = settings.monitoring
    table = settings.table("ml", f"predictions_{model}")
    if not delta.table_exists(spark, table):
        raise UsageError(f"predictions table '{table}' does not exist: score before monitoring performance")
    preds = spark.table(table).where(F.col("model_version") == F.lit(version))
    keys = list(entity_keys) if entity_keys else [c for c in labels.columns if c in preds.columns and c not in {"run_date", "prediction"}]
    start = run_date - dt.timedelta(days=m.label_max_delay_days)
    lab = labels.where(F.col(m.label_timestamp_column) < F.lit(dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time())))
    lab = lab.where(F.col(m.label_timestamp_column) >= F.lit(dt.datetime.combine(start, dt.time())))
    matched = match_labels(preds, lab, keys, m.label_timestamp_column, m.label_column, m.label_max_delay_days)
    daily = daily_metrics(matched, kind)
    feature = F.when(F.col("prediction_day").isNull(), F.lit(MODEL_FEATURE)).otherwise(
        F.concat(F.lit(MODEL_FEATURE + ":"), F.date_format("prediction_day", "yyyy-MM-dd"))
    )
    rows = daily.select(feature.alias("feature"), "metric", "value")
    # Labels that found no prediction are counted, never silently dropped.
    lost = spark.createDataFrame(
        [(MODEL_FEATURE, "unmatched_labels", float(lab.count() - matched.count()))], "feature string, metric string, value double"
    )
    rows = rows.unionByName(lost)
    drops = []
    for metric, higher in _DIRECTION.items():
        if metric in baseline:
            sign = 1.0 if higher else -1.0
            drops.append((metric, float(baseline[metric]), sign))
    if drops:
        base = spark.createDataFrame(drops, "metric string, baseline double, sign double")
        drop_rows = (
            rows.where(F.col("feature") == MODEL_FEATURE)
            .join(F.broadcast(base), on="metric", how="inner")
            .select(
                "feature",
                F.concat("metric", F.lit("_drop")).alias("metric"),
                ((F.col("baseline") - F.col("value")) * F.col("sign")).alias("value"),
            )
        )
        rows = rows.unionByName(drop_rows)
    return rows.select("feature", "metric", F.col("value").cast("double").alias("value"))
