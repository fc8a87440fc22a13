"""The ``monitor`` step: the only reader and writer of monitoring.

For the champion of a model: reference = its training set, found through MLflow
lineage (the run's dataset input: Delta table + version, read by time travel);
current = the rows of its feature tables in the window ending on the run date (or
a DataFrame given by the caller). Computes drift (``drift.py``), prediction drift
on ``ml.predictions_<model>``, performance with delayed labels
(``performance.py``), writes ``ml.monitoring_metrics``, the HTML report (also an
artifact of the model's monitoring run in MLflow), the alert file, the webhook,
and decides retraining by the k-of-n rule.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark.config.settings import Settings
from mlops_spark.errors import ModelNotFoundError, UsageError
from mlops_spark.log import fields
from mlops_spark.monitoring import alerts, drift, performance, report
from mlops_spark.spark import delta

log = logging.getLogger(__name__)

PREDICTION_FEATURE = "__prediction__"
TRAINING_CONTEXT = "training"


@dataclass(frozen=True)
class Champion:
    """The monitored model version and its lineage."""

    name: str
    version: int
    run_id: str
    training_table: str
    training_version: int | None
    feature_spec: dict[str, Any]
    baseline: dict[str, float]


@dataclass(frozen=True)
class MonitorResult:
    """What a monitoring run produced."""

    model: str
    model_version: int
    run_date: dt.date
    metrics: int
    breaches: list[dict[str, Any]]
    retrain: bool
    report_path: Path
    alert_path: Path | None
    webhook_delivered: bool | None


def _lineage(run: Any) -> tuple[str, int | None]:
    """Training table and Delta version from a run's dataset inputs (params as fallback)."""
    for di in run.inputs.dataset_inputs if run.inputs else []:
        contexts = {t.value for t in di.tags if t.key == "mlflow.data.context"}
        if contexts and TRAINING_CONTEXT not in contexts:
            continue
        try:
            source = json.loads(di.dataset.source)
        except (TypeError, ValueError):
            continue
        table = source.get("delta_table_name") or source.get("table_name")
        if table:
            version = source.get("delta_table_version")
            return str(table).removeprefix("spark_catalog."), (int(version) if version is not None else None)
    params = run.data.params
    if "training_set" in params:
        version = params.get("training_set_version")
        return params["training_set"], (int(version) if version not in (None, "") else None)
    raise ModelNotFoundError(f"run {run.info.run_id} has no training dataset input (no lineage to a training set)")


def find_champion(settings: Settings, model: str) -> Champion:
    """The ``@champion`` version of ``model`` with its training-set lineage and validation metrics.

    Raises:
        ModelNotFoundError: no such model, no champion, or no lineage on its run.
    """
    from mlflow.tracking import MlflowClient

    from mlops_spark.training import registry

    registry.configure_mlflow(settings)
    client = MlflowClient()
    mv = registry.resolve_version(client, model, registry.CHAMPION, None)
    run = client.get_run(mv.run_id)  # type: ignore[attr-defined]
    table, version = _lineage(run)
    spec = json.loads(run.data.tags.get("feature_spec", "{}"))
    baseline = {k.removeprefix("validation_"): float(v) for k, v in run.data.metrics.items() if k.startswith("validation_")}
    return Champion(model, int(mv.version), run.info.run_id, table, version, spec, baseline)  # type: ignore[attr-defined]


def reference_from_champion(spark: SparkSession, champion: Champion) -> DataFrame:
    """The champion's training set as it was when trained (Delta time travel).

    Raises:
        UsageError: the training-set table no longer exists.
    """
    if not delta.table_exists(spark, champion.training_table):
        raise UsageError(f"training set '{champion.training_table}' of {champion.name} v{champion.version} does not exist")
    return delta.read_version(spark, champion.training_table, champion.training_version)


def window_bounds(run_date: dt.date, days: int) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` of the current window: ``days`` whole UTC days ending on ``run_date``."""
    end = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time())
    return end - dt.timedelta(days=days), end


def current_from_features(spark: SparkSession, champion: Champion, run_date: dt.date, days: int) -> list[tuple[DataFrame, list[str]]]:
    """Per feature table of the champion's spec: its rows in the window and the feature columns."""
    start, end = window_bounds(run_date, days)
    frames = []
    for lookup in champion.feature_spec.get("lookups", []):
        ts = F.col(lookup.get("timestamp_key", "feature_ts"))
        df = spark.table(lookup["table"]).where((ts >= F.lit(start)) & (ts < F.lit(end)))
        frames.append((df, list(lookup["columns"])))
    return frames


def feature_drift(reference: DataFrame, current: DataFrame, features: list[str], settings: Settings) -> list[drift.FeatureDrift]:
    """Numeric and categorical drift of ``features`` (types from the reference)."""
    m = settings.monitoring
    numeric, categorical = drift.split_features(reference, features)
    return drift.numeric_drift(reference, current, numeric, m.psi_bins, m.psi_epsilon, m.quantile_accuracy) + drift.categorical_drift(
        reference, current, categorical, m.psi_epsilon
    )


def prediction_drift(spark: SparkSession, settings: Settings, champion: Champion, run_date: dt.date) -> list[drift.FeatureDrift]:
    """Drift of the champion's scores in the window against its scores before the window."""
    table = settings.table("ml", f"predictions_{champion.name}")
    if not delta.table_exists(spark, table):
        return []
    column = "probability" if "probability" in spark.table(table).columns else "prediction"
    start, _ = window_bounds(run_date, settings.monitoring.window_days)
    preds = (
        spark.table(table)
        .where(F.col("model_version") == F.lit(champion.version))
        .select(F.col(column).alias(PREDICTION_FEATURE), "run_date")
    )
    before = preds.where(F.col("run_date") < F.lit(start.date()))
    now = preds.where((F.col("run_date") >= F.lit(start.date())) & (F.col("run_date") <= F.lit(run_date)))
    if before.isEmpty() or now.isEmpty():
        return []
    m = settings.monitoring
    result = drift.numeric_drift(before, now, [PREDICTION_FEATURE], m.psi_bins, m.psi_epsilon, m.quantile_accuracy)
    return [
        drift.FeatureDrift(
            d.feature, d.kind, {f"prediction_{k}": v for k, v in d.metrics.items()}, d.labels, d.reference_share, d.current_share
        )
        for d in result
    ]


def _monitoring_run(settings: Settings, champion: Champion, run_date: dt.date, report_path: Path, summary: dict[str, float]) -> str:
    """Log the report to the model's monitoring run of ``run_date`` (re-used on re-runs)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from mlops_spark.training import registry

    experiment_id = registry.configure_mlflow(settings)
    client = MlflowClient()
    query = f"tags.`mlops.monitoring` = 'true' AND tags.`mlops.model` = '{champion.name}' AND tags.`mlops.run_date` = '{run_date}'"
    existing = client.search_runs([experiment_id], filter_string=query, max_results=1)
    run_id = existing[0].info.run_id if existing else None
    with mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=f"monitor-{champion.name}-{run_date}") as active:
        mlflow.set_tags(
            {
                "mlops.monitoring": "true",
                "mlops.model": champion.name,
                "mlops.run_date": run_date.isoformat(),
                "mlops.model_version": str(champion.version),
                "mlops.model_run_id": champion.run_id,
            }
        )
        mlflow.log_metrics(summary)
        mlflow.log_artifact(str(report_path), artifact_path="monitoring")
        return str(active.info.run_id)


def run(
    spark: SparkSession,
    settings: Settings,
    model: str,
    run_date: dt.date,
    current: DataFrame | None = None,
    reference: DataFrame | None = None,
    features: list[str] | None = None,
    labels: DataFrame | None = None,
    log_to_mlflow: bool = True,
) -> MonitorResult:
    """Monitor ``model``'s champion for ``run_date``.

    Args:
        current: the current window's rows (default: the champion's feature tables in the window).
        reference: reference rows (default: the champion's training set via lineage).
        features: features to compare (default: the champion's feature names).
        labels: delayed ground truth (default: ``monitoring.labels_table`` when set).

    Raises:
        ModelNotFoundError: no champion or no lineage.
        UsageError: the reference or current tables are missing.
        SchemaMismatchError: a feature is missing from the reference or current rows.
    """
    m = settings.monitoring
    champion = find_champion(settings, model)
    ref = reference if reference is not None else reference_from_champion(spark, champion)
    names = features or list(champion.feature_spec.get("feature_names", []))
    if not names:
        raise UsageError(f"{model} v{champion.version}: no feature names in its feature spec; pass features")
    pairs = [(current, names)] if current is not None else current_from_features(spark, champion, run_date, m.window_days)
    drifts: list[drift.FeatureDrift] = []
    for cur, cols in pairs:
        drifts += feature_drift(ref, cur, [c for c in cols if c in names], settings)
    drifts += prediction_drift(spark, settings, champion, run_date)

    metric_frame = alerts.drift_frame(spark, drifts)
    label_frame = labels if labels is not None else performance.read_labels(spark, settings)
    if label_frame is not None:
        metric_frame = metric_frame.unionByName(
            performance.performance_metrics(
                spark,
                settings,
                champion.name,
                champion.version,
                champion.baseline,
                label_frame,
                run_date,
                kind=str(champion.feature_spec.get("kind", "classifier")),
                entity_keys=champion.feature_spec.get("entity_keys"),
            )
        )
    computed_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    table = alerts.metrics_table(settings)
    final = alerts.with_thresholds(metric_frame, m.thresholds, model, champion.version, run_date, computed_at)
    # Metrics land first: whatever happens to the report, alert or webhook, nothing is lost.
    alerts.write_metrics(spark, table, final, model, run_date)
    rows = [r.asDict() for r in spark.table(table).where((F.col("model") == model) & (F.col("run_date") == F.lit(run_date))).collect()]
    breaches = [
        {k: r[k] for k in ("feature", "metric", "value", "threshold")}
        for r in sorted(rows, key=lambda r: (r["feature"], r["metric"]))
        if r["breached"]
    ]
    history = [
        r.asDict()
        for r in spark.table(table)
        .where((F.col("model") == model) & (F.col("run_date") <= F.lit(run_date)))
        .select("run_date", "feature", "metric", "value")
        .collect()
    ]
    retrain = alerts.retrain_rule(alerts.run_breaches(spark, table, model, run_date, m.retrain_n), m.retrain_k, m.retrain_n)
    html = report.render(
        model, champion.version, run_date, drifts, sorted(rows, key=lambda r: (r["feature"], r["metric"])), history, m.thresholds
    )
    report_path = report.write(str(settings.reports_root), model, run_date, html)
    if log_to_mlflow:
        psis = [d.metrics["psi"] for d in drifts if "psi" in d.metrics and d.metrics["psi"] == d.metrics["psi"]]
        summary = {"max_psi": max(psis, default=0.0), "breaches": float(len(breaches)), "retrain": float(retrain)}
        _monitoring_run(settings, champion, run_date, report_path, summary)

    alert_path, delivered = None, None
    if breaches:
        alert = alerts.Alert(model, champion.version, run_date, breaches, retrain, str(report_path))
        alert_path = alerts.write_alert_file(str(settings.reports_root), alert)
        log.warning(
            "monitoring alert", extra=fields(**{k: v for k, v in alert.payload().items() if k != "text"}, alert_file=str(alert_path))
        )
        if m.webhook_url:
            delivered = alerts.post_webhook(
                m.webhook_url, alert.payload(), m.webhook_timeout_seconds, m.webhook_retries, m.webhook_backoff_seconds
            )
    log.info(
        "monitored",
        extra=fields(
            model=model, version=champion.version, run_date=run_date.isoformat(), metrics=len(rows), breaches=len(breaches), retrain=retrain
        ),
    )
    return MonitorResult(model, champion.version, run_date, len(rows), breaches, retrain, report_path, alert_path, delivered)


def registry_experiment(settings: Settings) -> str:
    """Id of the experiment monitoring runs are logged to."""
    from mlops_spark.training import registry

    return registry.configure_mlflow(settings)
