"""``mlops-spark score``: batch-score entities with a registered model (by alias)
into ``ml.predictions_<model>``; re-running a run date replaces its rows."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from mlops_spark.config.settings import Settings


def _timestamp(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an ISO timestamp (2024-05-01 or 2024-05-01T12:00:00)") from None
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlops-spark score``."""
    parser.add_argument("--model", required=True, help="registered model: NAME@ALIAS (churn@champion), NAME/VERSION, or NAME (= @champion)")
    parser.add_argument(
        "--entities",
        required=True,
        help="entities to score: a table (db.table) or a Parquet path with the entity keys; feature columns present are used as given",
    )
    parser.add_argument("--as-of", type=_timestamp, help="look features up as of this UTC time (default: now)")
    parser.add_argument(
        "--threads-per-worker", type=int, default=1, help="OpenMP/BLAS threads per Python worker (default 1: one task per core)"
    )
    parser.add_argument("--arrow-batch-size", type=int, default=50_000, help="rows per Arrow batch sent to the model (default 50000)")


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Score and print one JSON summary line (rows in, scored, rejected)."""
    from mlops_spark.scoring import pipeline
    from mlops_spark.spark.session import get_spark

    spark = get_spark(settings, app_name="mlops-spark-score")
    result = pipeline.run(
        spark,
        settings,
        args.model,
        args.entities,
        args.run_date,
        as_of=args.as_of,
        threads_per_worker=args.threads_per_worker,
        arrow_batch_size=args.arrow_batch_size,
    )
    print(json.dumps(result.__dict__))
    return 0
