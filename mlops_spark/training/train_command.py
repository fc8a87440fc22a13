"""``mlops-spark train``: fit, log, register and promote a model from its YAML
definition; or, with ``--rollback``, move ``@champion`` back to an earlier version."""

from __future__ import annotations

import argparse
import json

from mlops_spark.config.settings import Settings
from mlops_spark.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlops-spark train``."""
    parser.add_argument("--model", help="model definition: a name under <conf-dir>/models/ (churn) or a YAML path")
    parser.add_argument("--training-set-version", type=int, help="Delta version of the training set to train on (default: latest)")
    parser.add_argument(
        "--training-set-id", help="the built training set to train on (default: the newest in ml.training_sets present in the table)"
    )
    parser.add_argument("--rollback", metavar="NAME", help="instead of training, move @champion of registered model NAME to --to-version")
    parser.add_argument("--to-version", type=int, help="with --rollback: the version that becomes @champion")


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Train (or roll back) and print one JSON summary line."""
    import mlflow

    from mlops_spark.spark.session import get_spark
    from mlops_spark.training import registry, train
    from mlops_spark.training.model_spec import load_model_spec, resolve_model_file

    if args.rollback:
        if args.to_version is None:
            raise UsageError("--rollback needs --to-version N")
        spark = get_spark(settings, app_name="mlops-spark-train")
        registry.configure_mlflow(settings)
        decision = registry.rollback(spark, settings, mlflow.MlflowClient(), args.rollback, args.to_version, args.run_date)
        print(
            json.dumps(
                {
                    "model": decision.model_name,
                    "champion": decision.version,
                    "previous": decision.champion_version,
                    "reason": decision.reason,
                }
            )
        )
        return 0
    if not args.model:
        raise UsageError("give --model NAME|PATH to train, or --rollback NAME --to-version N")
    spec = load_model_spec(resolve_model_file(args.model, args.conf_dir))
    spark = get_spark(settings, app_name=f"mlops-spark-train-{spec.name}")
    result = train.run(spark, settings, spec, args.run_date, args.training_set_version, args.training_set_id)
    d = result.decision
    print(
        json.dumps(
            {
                "model": result.model_name,
                "version": result.version,
                "run_id": result.run_id,
                "outcome": d.outcome,
                "reason": d.reason,
                "metric": d.metric,
                "candidate": d.candidate_metric,
                "champion": d.champion_metric,
                "reused": result.reused,
            }
        )
    )
    return 0
