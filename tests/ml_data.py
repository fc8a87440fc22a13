"""Small deterministic training sets and feature tables for train and score tests."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

FEATURES = ("f_amount", "f_count", "f_recency")
START = dt.datetime(2024, 1, 1)

TRAINING_SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.LongType(), False),
        T.StructField("label_ts", T.TimestampType(), False),
        T.StructField("label", T.IntegerType(), False),
        *[T.StructField(f, T.DoubleType(), True) for f in FEATURES],
        T.StructField("training_set_id", T.StringType(), False),
    ]
)

FEATURE_TABLE_SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.LongType(), False),
        T.StructField("feature_ts", T.TimestampType(), False),
        *[T.StructField(f, T.DoubleType(), True) for f in FEATURES],
    ]
)


def training_pandas(rows: int, seed: int = 7, noise: float = 1.0) -> pd.DataFrame:
    """``rows`` labelled rows; the label depends on all three features plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    logit = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.8 * x[:, 2] * x[:, 0] + rng.normal(scale=noise, size=rows)
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows, dtype="int64"),
            "label_ts": [START + dt.timedelta(hours=int(h)) for h in rng.integers(0, 24 * 90, size=rows)],
            "label": (logit > 0).astype("int32"),
            **{f: x[:, i] for i, f in enumerate(FEATURES)},
            "training_set_id": "ts-test",
        }
    )


def write_training_set(spark: SparkSession, table: str, pdf: pd.DataFrame) -> None:
    """Overwrite ``table`` (Delta) with ``pdf``."""
    spark.createDataFrame(pdf, TRAINING_SCHEMA).write.format("delta").mode("overwrite").saveAsTable(table)


def feature_rows(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """A feature table frame from (customer_id, feature_ts, f_amount, f_count, f_recency) tuples."""
    return spark.createDataFrame(rows, FEATURE_TABLE_SCHEMA)


def model_yaml(
    name: str,
    training_set: str,
    feature_table: str,
    estimator: str = "sklearn.ensemble.HistGradientBoostingClassifier",
    params: str = "{max_iter: 30}",
    features: tuple[str, ...] = FEATURES,
    threshold: float = 0.02,
    floor: float | None = None,
    min_rows: int = 50,
) -> str:
    """A model definition YAML for the generated data."""
    floor_line = f"\n  metric_floor: {floor}" if floor is not None else ""
    return f"""
name: {name}
estimator:
  class: {estimator}
  params: {params}
training_set: {training_set}
label: label
entity_keys: [customer_id]
label_timestamp: label_ts
features:
  - table: {feature_table}
    join_keys: [customer_id]
    timestamp_key: feature_ts
    columns: [{", ".join(features)}]
promotion:
  metric: roc_auc
  min_relative_improvement: {threshold}
  min_rows: {min_rows}{floor_line}
"""


# Feature times of the scoring tests: T1 < T2 (the as-of time) < T3.
T1, T2, T3 = dt.datetime(2024, 6, 1), dt.datetime(2024, 6, 2), dt.datetime(2024, 6, 3)
