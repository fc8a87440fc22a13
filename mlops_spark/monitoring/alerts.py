"""Monitoring results and alerts: the ``ml.monitoring_metrics`` table (long format),
thresholds, the alert (log line, JSON file, optional webhook) and the k-of-n
retraining rule.

Order matters for "a failed webhook loses no metrics": the pipeline writes the
metrics table first, then the report and the alert file, and only then tries the
webhook, whose failure is logged and reported but never raised.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.log import fields
from mlops_spark.monitoring.drift import FeatureDrift
from mlops_spark.spark import delta

log = logging.getLogger(__name__)

METRICS_SCHEMA = T.StructType(
    [
        T.StructField("run_date", T.DateType(), False, {"comment": "logical date of the monitoring run"}),
        T.StructField("model", T.StringType(), False, {"comment": "registered model name"}),
        T.StructField("model_version", T.LongType(), True, {"comment": "model version monitored (the champion then)"}),
        T.StructField("feature", T.StringType(), False, {"comment": "feature name; __prediction__ or __model__ for model-level metrics"}),
        T.StructField("metric", T.StringType(), False, {"comment": "psi, ks_statistic, ks_pvalue, js_distance, wasserstein, ..."}),
        T.StructField("value", T.DoubleType(), True, {"comment": "metric value; NaN when undefined"}),
        T.StructField("threshold", T.DoubleType(), True, {"comment": "configured threshold; null when none"}),
        T.StructField("breached", T.BooleanType(), False, {"comment": "value > threshold"}),
        T.StructField("computed_at", T.TimestampType(), False, {"comment": "when the run computed it (UTC)"}),
    ]
)

_RAW_SCHEMA = T.StructType([METRICS_SCHEMA[n] for n in ("feature", "metric", "value")])


@dataclass(frozen=True)
class Alert:
    """One monitoring run's breaches, as logged, written and posted."""

    model: str
    model_version: int | None
    run_date: dt.date
    breaches: list[dict[str, Any]]
    retrain: bool
    report_path: str | None

    def payload(self) -> dict[str, Any]:
        """JSON-ready body (``text`` makes it readable in Slack-style webhooks)."""
        names = ", ".join(f"{b['feature']}.{b['metric']}={b['value']:.4g}>{b['threshold']:.4g}" for b in self.breaches[:10])
        return {
            "text": f"mlops-spark monitor: {self.model} v{self.model_version} {self.run_date}: {len(self.breaches)} breach(es): {names}",
            "model": self.model,
            "model_version": self.model_version,
            "run_date": self.run_date.isoformat(),
            "breaches": self.breaches,
            "retrain": self.retrain,
            "report": self.report_path,
        }


def drift_frame(spark: SparkSession, drifts: Iterable[FeatureDrift]) -> DataFrame:
    """Long rows ``feature, metric, value`` from drift results (small: one row per metric)."""
    rows = [(d.feature, m, float(v)) for d in drifts for m, v in d.metrics.items()]
    return spark.createDataFrame(rows, _RAW_SCHEMA)


def with_thresholds(
    metrics: DataFrame, thresholds: Mapping[str, float], model: str, model_version: int | None, run_date: dt.date, computed_at: dt.datetime
) -> DataFrame:
    """Add the run's identity, each metric's threshold and whether it breached.

    Input columns: ``feature``, ``metric``, ``value``. Output: :data:`METRICS_SCHEMA`.
    A NaN or null value never breaches (nothing to compare).
    """
    if thresholds:
        lookup = F.create_map(*[x for k, v in thresholds.items() for x in (F.lit(k), F.lit(float(v)))])[F.col("metric")]
    else:
        lookup = F.lit(None).cast(T.DoubleType())
    value = F.col("value")
    breached = F.coalesce(value.isNotNull() & ~F.isnan(value) & (value > F.col("threshold")), F.lit(False))
    return metrics.withColumn("threshold", lookup.cast(T.DoubleType())).select(
        F.lit(run_date).cast(T.DateType()).alias("run_date"),
        F.lit(model).alias("model"),
        F.lit(model_version).cast(T.LongType()).alias("model_version"),
        "feature",
        "metric",
        F.col("value").cast(T.DoubleType()).alias("value"),
        "threshold",
        breached.alias("breached"),
        F.lit(computed_at).cast(T.TimestampType()).alias("computed_at"),
    )


def metrics_table(settings: Any) -> str:
    """``ml.monitoring_metrics``."""
    return str(settings.table("ml", "monitoring_metrics"))


def write_metrics(spark: SparkSession, table: str, metrics: DataFrame, model: str, run_date: dt.date) -> None:
    """Replace this model's rows of ``run_date`` (idempotent re-runs), creating the table on first use."""
    delta.create_table(spark, table, METRICS_SCHEMA, partition_by=["run_date"], comment="monitoring metrics, long format")
    condition = f"{delta.quote_column('run_date')} = DATE {delta.sql_literal(run_date.isoformat())} AND {delta.col_eq('model', model)}"
    delta.overwrite_where(metrics.select(*METRICS_SCHEMA.names), table, condition)


def retrain_rule(breached_runs: Sequence[bool], k: int, n: int) -> bool:
    """True when at least ``k`` of the last ``n`` runs breached, the latest included.

    Args:
        breached_runs: one flag per monitoring run, oldest first.
    """
    last = list(breached_runs)[-n:]
    return bool(last) and last[-1] and sum(last) >= k


def run_breaches(spark: SparkSession, table: str, model: str, up_to: dt.date, n: int) -> list[bool]:
    """Whether each of the model's last ``n`` runs up to ``up_to`` breached, oldest first."""
    if not delta.table_exists(spark, table):
        return []
    per_run = (
        spark.table(table)
        .where((F.col("model") == F.lit(model)) & (F.col("run_date") <= F.lit(up_to)))
        .groupBy("run_date")
        .agg(F.max(F.col("breached").cast("int")).alias("breached"))
    )
    # One row per run date: a top-n sort (an unpartitioned window would log a warning on every run).
    latest = per_run.orderBy(F.col("run_date").desc()).limit(n).collect()
    return [bool(r["breached"]) for r in sorted(latest, key=lambda r: r["run_date"])]


def write_alert_file(reports_root: str, alert: Alert) -> Path:
    """``<reports_root>/alerts/<model>/<run_date>.json`` (overwritten on re-runs)."""
    path = Path(reports_root) / "alerts" / alert.model / f"{alert.run_date.isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(alert.payload(), indent=2, default=str))
    return path


def post_webhook(url: str, payload: Mapping[str, Any], timeout: float, retries: int, backoff: float) -> bool:
    """POST ``payload`` as JSON; retry on errors and 5xx with exponential back-off.

    Returns:
        True when a 2xx answer arrived; False after the last failed attempt (logged, never raised).
    """
    body = json.dumps(payload, default=str).encode()
    delay = backoff
    for attempt in range(1, retries + 2):
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                if 200 <= resp.status < 300:
                    log.info("webhook delivered", extra=fields(url=url, attempt=attempt, status=resp.status))
                    return True
                error = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                # A client error will not heal by retrying.
                log.warning("webhook rejected", extra=fields(url=url, attempt=attempt, error=error))
                return False
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        log.warning("webhook attempt failed", extra=fields(url=url, attempt=attempt, error=error))
        if attempt <= retries:
            time.sleep(delay)
            delay *= 2
    return False
