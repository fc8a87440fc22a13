"""``mlops-spark retrain``: run the loop ingest -> validate -> features -> training-set
-> train (evaluate and promote by rule) -> score, in that order.

The loop is data (``monitoring.retrain_steps``): each entry names a step and its
command-line options, and runs through the step's own ``run_command`` (which calls its
``pipeline.run``), exactly as ``mlops-spark <step>`` would, with this run's date.
Every step is idempotent for a date, so a failed retrain is re-run from the start.
With ``--when-due`` it first applies the k-of-n rule to ``ml.monitoring_metrics`` and
does nothing when retraining is not due. Promotion stays the train step's decision:
a new champion only when it beats the old one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
from dataclasses import dataclass, field

from pyspark.sql import SparkSession

from mlops_spark.config.settings import Settings
from mlops_spark.errors import ConfigError, MlopsError, UsageError
from mlops_spark.log import fields
from mlops_spark.monitoring import alerts
from mlops_spark.monitoring.settings import RETRAIN_ORDER, RetrainStep

log = logging.getLogger(__name__)


class StepFailed(MlopsError):
    """A step of the loop returned a non-zero exit code; its own exit code is kept."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RetrainResult:
    """What a retrain run did."""

    due: bool
    steps_run: list[str] = field(default_factory=list)
    champion_before: int | None = None
    champion_after: int | None = None

    @property
    def promoted(self) -> bool:
        """True when the champion changed."""
        return self.champion_after is not None and self.champion_after != self.champion_before


def check_order(steps: list[RetrainStep]) -> None:
    """The loop must follow the flow order (a step may repeat).

    Raises:
        ConfigError: a step comes after a later stage of the flow, or the loop is empty.
    """
    if not steps:
        raise ConfigError("monitoring.retrain_steps is empty: list the steps of the loop (see conf/examples/monitoring.yaml)")
    ranks = [RETRAIN_ORDER.index(s.step) for s in steps]
    for before, after, step in zip(ranks, ranks[1:], steps[1:], strict=False):
        if after < before:
            raise ConfigError(
                f"monitoring.retrain_steps: '{step.step}' comes after '{RETRAIN_ORDER[before]}'; order is {' -> '.join(RETRAIN_ORDER)}"
            )


def is_due(spark: SparkSession, settings: Settings, model: str, run_date: dt.date) -> bool:
    """The k-of-n rule over the model's monitoring runs up to ``run_date``."""
    m = settings.monitoring
    runs = alerts.run_breaches(spark, alerts.metrics_table(settings), model, run_date, m.retrain_n)
    return alerts.retrain_rule(runs, m.retrain_k, m.retrain_n)


def _champion(settings: Settings, model: str | None) -> int | None:
    if not model:
        return None
    from mlflow.tracking import MlflowClient

    from mlops_spark.training import registry

    registry.configure_mlflow(settings)
    return registry.champion_version(MlflowClient(), model)


def run_step(settings: Settings, step: RetrainStep, run_date: dt.date) -> None:
    """Run one step through its command module, as the CLI would.

    Raises:
        UsageError: the step is not available or its options are wrong.
        StepFailed: it returned a non-zero exit code.
        MlopsError: whatever the step raises (data quality, schema, model not found ...).
    """
    from mlops_spark import cli

    entry = next(s for s in cli.STEPS if s.name == step.step)
    if entry.module is None:
        raise UsageError(f"retrain: step '{step.step}' is not implemented in this installation")
    module = importlib.import_module(entry.module)
    # Only this step's parser: the same options as `mlops-spark <step>`, without importing every other step.
    parser = argparse.ArgumentParser(prog=f"mlops-spark {step.step}", parents=[cli.common_options()], allow_abbrev=False)
    module.add_arguments(parser)
    try:
        args = parser.parse_args([*step.args, "--run-date", run_date.isoformat()])
    except SystemExit:
        raise UsageError(f"retrain: bad options for step '{step.step}': {' '.join(step.args)}") from None
    args.run_date = run_date
    log.info("retrain step", extra=fields(step=step.step, args=step.args, run_date=run_date.isoformat()))
    code = int(module.run_command(args, settings) or 0)
    if code != 0:
        raise StepFailed(f"retrain: step '{step.step}' exited with {code}; fix it and re-run retrain for {run_date}", code)


def run(spark: SparkSession, settings: Settings, run_date: dt.date, model: str | None = None, when_due: bool = False) -> RetrainResult:
    """Run the retraining loop for ``run_date``.

    Args:
        model: the model whose champion is reported before/after (and whose monitoring
            runs ``when_due`` looks at).
        when_due: run only when the k-of-n rule says so.

    Raises:
        UsageError: ``when_due`` without a model.
        ConfigError: the loop is empty or out of order.
    """
    steps = settings.monitoring.retrain_steps
    check_order(steps)
    if when_due:
        if not model:
            raise UsageError("retrain --when-due needs --model (whose monitoring runs decide)")
        if not is_due(spark, settings, model, run_date):
            log.info("retrain not due", extra=fields(model=model, run_date=run_date.isoformat()))
            return RetrainResult(due=False)
    result = RetrainResult(due=True, champion_before=_champion(settings, model))
    for step in steps:
        run_step(settings, step, run_date)
        result.steps_run.append(step.step)
    result.champion_after = _champion(settings, model)
    log.info(
        "retrained",
        extra=fields(model=model, steps=result.steps_run, champion_before=result.champion_before, champion_after=result.champion_after),
    )
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``retrain``."""
    parser.add_argument("--model", help="model whose champion is compared before/after (default: monitoring.model)")
    parser.add_argument(
        "--when-due", action="store_true", help="run only when k of the last n monitoring runs breached, the latest included"
    )


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the step; prints what ran and whether the champion changed."""
    from mlops_spark.spark.session import get_spark

    model = args.model or settings.monitoring.model
    spark = get_spark(settings, app_name="mlops-spark-retrain")
    result = run(spark, settings, args.run_date, model=model, when_due=args.when_due)
    if not result.due:
        print(f"retrain {args.run_date}: not due for {model}; nothing ran")
        return 0
    outcome = f"new champion v{result.champion_after}" if result.promoted else f"champion unchanged (v{result.champion_after})"
    print(f"retrain {args.run_date}: ran {' -> '.join(result.steps_run)}; {outcome}")
    return 0
