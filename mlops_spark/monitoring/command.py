"""``mlops-spark monitor``: drift and performance of a model's champion for a run date.

Exit codes: 0 nothing breached, 3 a threshold breached (the alert file, log line and
webhook have been produced and the metrics written), 2 bad usage or unknown model.
"""

from __future__ import annotations

import argparse

from mlops_spark.config.settings import Settings
from mlops_spark.errors import MonitoringAlert, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``monitor``."""
    parser.add_argument("--model", help="registered model whose @champion to monitor (default: monitoring.model)")
    parser.add_argument("--window-days", type=int, help="days in the current window ending on --run-date (default: monitoring.window_days)")
    parser.add_argument("--labels-table", help="table of delayed labels (entity keys, label_ts, label) (default: monitoring.labels_table)")
    parser.add_argument("--webhook-url", help="POST the alert as JSON to this URL (default: monitoring.webhook_url)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report to an MLflow monitoring run")
    parser.add_argument(
        "--task-values",
        action="store_true",
        help="Databricks jobs: publish task values 'breached' and 'retrain' (true/false) for a condition task "
        "and exit 0 on breaches instead of 3",
    )


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the step; raises :class:`MonitoringAlert` (exit 3) on breaches."""
    from mlops_spark.monitoring import pipeline
    from mlops_spark.spark.session import get_spark

    model = args.model or settings.monitoring.model
    if not model:
        raise UsageError("no model to monitor: pass --model NAME or set monitoring.model")
    updates = {
        k: v
        for k, v in {"window_days": args.window_days, "labels_table": args.labels_table, "webhook_url": args.webhook_url}.items()
        if v is not None
    }
    if args.window_days is not None and args.window_days < 1:
        raise UsageError(f"--window-days must be at least 1, got {args.window_days}")
    if updates:
        settings = settings.model_copy(update={"monitoring": settings.monitoring.model_copy(update=updates)})
    spark = get_spark(settings, app_name=f"mlops-spark-monitor-{model}")
    result = pipeline.run(spark, settings, model, args.run_date, log_to_mlflow=not args.no_mlflow)
    print(
        f"monitor {model} v{result.model_version} {result.run_date}: {result.metrics} metrics, {len(result.breaches)} breach(es), "
        f"retrain={'yes' if result.retrain else 'no'}, report {result.report_path}"
    )
    if args.task_values:
        publish_task_values({"breached": str(bool(result.breaches)).lower(), "retrain": str(result.retrain).lower()})
        return 0
    if result.breaches:
        raise MonitoringAlert(
            f"{len(result.breaches)} threshold breach(es) for {model} v{result.model_version} on {result.run_date}"
            f" (retrain {'due' if result.retrain else 'not due'}); alert {result.alert_path}"
        )
    return 0


def publish_task_values(values: dict[str, str]) -> None:
    """Set Databricks job task values (``{{tasks.monitor.values.retrain}}``).

    Raises:
        UsageError: not running as a Databricks job task (no ``dbutils``).
    """
    try:
        from databricks.sdk.runtime import dbutils
    except ImportError:
        raise UsageError("--task-values needs a Databricks job task (databricks.sdk.runtime.dbutils is not available)") from None
    for key, value in values.items():
        dbutils.jobs.taskValues.set(key=key, value=value)
