"""Batch scoring: a HistGradientBoostingClassifier over N rows x 9 features, Delta to Delta.

Data (``--rows`` N, default 2,000,000): ``customer_id`` + 9 double features drawn in
Spark (seeded), written once to the Delta table ``ml.bench_score_entities``. A model
is trained on 50,000 other rows through the project's ``train`` step (SQLite MLflow
under the temporary lake) and registered as ``bench_score@champion``; training is
not timed.

Contenders:
  ``project``            :func:`mlops_spark.scoring.pipeline.run`: resolve the alias, read the
                         Delta table, score with the Arrow model UDF (one model per Python
                         worker, 1 OpenMP thread per worker, 50k-row Arrow batches), write
                         ``ml.predictions_bench_score`` (prediction + probability + lineage
                         columns) with replaceWhere on the run date
  ``pyfunc_inprocess``   ``mlflow.pyfunc.load_model(...).predict(pdf)`` on a pandas frame already
                         in memory (no Spark, no I/O; HistGradientBoosting uses every core)
  ``spark_udf_default``  ``mlflow.pyfunc.spark_udf(spark, uri)`` with default settings, the same
                         Delta table in and a Delta table out (prediction only)
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from typing import Any

from benchmarks import harness

DEFAULT_ROWS = 2_000_000
FEATURES = [f"x{i}" for i in range(9)]
MODEL = "bench_score"
RUN_DATE = dt.date(2024, 6, 1)


def _frame(spark: Any, rows: int, seed: int) -> Any:
    """customer_id + 9 features; a label that depends non-linearly on some of them."""
    from pyspark.sql import functions as F

    df = spark.range(rows).withColumnRenamed("id", "customer_id")
    for i, name in enumerate(FEATURES):
        df = df.withColumn(name, F.randn(seed + i) if i % 2 else F.rand(seed + i) * 100)
    logit = F.col("x1") - 0.5 * F.col("x3") + (F.col("x0") / 50 - 1) * F.col("x5") + F.randn(seed + 99)
    return df.withColumn("label", (logit > 0).cast("int"))


def _model_yaml(training_table: str) -> str:
    return f"""
name: {MODEL}
estimator:
  class: sklearn.ensemble.HistGradientBoostingClassifier
  params: {{max_iter: 100, early_stopping: false, random_state: 0}}
training_set: {training_table}
label: label
entity_keys: [customer_id]
label_timestamp: label_ts
features:
  - table: bench_unused
    join_keys: [customer_id]
    columns: [{", ".join(FEATURES)}]
promotion: {{metric: roc_auc, min_rows: 1000}}
"""


def run(rows: int | None) -> dict[str, Any]:
    """Time the three contenders on the same Delta table in one process."""
    from pyspark.sql import functions as F

    from mlops_spark.training import train
    from mlops_spark.training.model_spec import load_model_spec

    n = rows or DEFAULT_ROWS
    # Only the MLflow baselines load through MLflow's own loader, which requires this flag
    # (set before the JVM starts so Python workers inherit it). The project's loader
    # never reads it: it loads skops with its own trusted-types list.
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    with harness.bench_tmpdir("mlops-bench-scoring-") as tmp:
        spark = harness.bench_spark(tmp, app_name="bench-scoring", shuffle_partitions=4)
        settings = harness.bench_settings(tmp, shuffle_partitions=4)
        training_table, entities = "ml.bench_score_training", "ml.bench_score_entities"
        _frame(spark, 50_000, seed=1).withColumn("label_ts", F.timestamp_seconds(F.col("customer_id") * 60)).write.format(
            "delta"
        ).saveAsTable(training_table)
        _frame(spark, n, seed=1000).drop("label").repartition(2).write.format("delta").saveAsTable(entities)
        spec_file = tmp / "bench_score.yaml"
        spec_file.write_text(_model_yaml(training_table))
        train.run(spark, settings, load_model_spec(spec_file), RUN_DATE)
        spark.table(entities).count()  # warm the JVM and the Delta snapshot for every contender alike

        seconds = {
            "project": _project(spark, settings, entities),
            "pyfunc_inprocess": _pyfunc_inprocess(spark, settings, entities),
            "spark_udf_default": _spark_udf_default(spark, settings, entities),
        }
        written = spark.table(settings.table("ml", f"predictions_{MODEL}")).count()
        if written != n:
            raise RuntimeError(f"project wrote {written} predictions for {n} rows")
        res = harness.result("scoring", n, seconds, harness.peak_rss_mb(spark))
        load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
        harness.print_table(res, extra={k: {"rows/s": n / v} for k, v in seconds.items()})
        print(f"machine load: {load}")
        spark.stop()
    return res


def _project(spark: Any, settings: Any, entities: str) -> float:
    from mlops_spark.scoring import pipeline

    result, seconds = harness.timed(lambda: pipeline.run(spark, settings, f"{MODEL}@champion", entities, RUN_DATE))
    if result.rows_scored != result.rows_in:
        raise RuntimeError(f"project scored {result.rows_scored} of {result.rows_in} rows")
    return seconds


def _pyfunc_inprocess(spark: Any, settings: Any, entities: str) -> float:
    import mlflow

    from mlops_spark.training.registry import configure_mlflow

    configure_mlflow(settings)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    pdf = spark.table(entities).select(*FEATURES).toPandas()
    _, seconds = harness.timed(lambda: model.predict(pdf))
    return seconds


def _spark_udf_default(spark: Any, settings: Any, entities: str) -> float:
    import mlflow

    def go() -> None:
        udf = mlflow.pyfunc.spark_udf(spark, f"models:/{MODEL}@champion")
        df = spark.table(entities)
        df.select("customer_id", udf(*FEATURES).alias("prediction")).write.format("delta").mode("overwrite").saveAsTable(
            "ml.bench_score_spark_udf"
        )

    return harness.timed(go)[1]
