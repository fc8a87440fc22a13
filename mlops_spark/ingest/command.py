"""``mlops-spark ingest``: land a source's new raw files (or Kafka messages) in bronze."""

from __future__ import annotations

import argparse
import json
import logging

from mlops_spark.config.settings import Settings
from mlops_spark.ingest.sources import load_source
from mlops_spark.log import fields

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlops-spark ingest``."""
    parser.add_argument(
        "--source",
        required=True,
        metavar="NAME",
        help="source to ingest: the definition conf/sources/NAME.yaml (kind files or kafka)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit with code 1 at the end when any file or message was quarantined (the rest is still ingested)",
    )
    parser.add_argument(
        "--mode",
        choices=["available-now", "continuous"],
        default=None,
        help="kafka sources: available-now (default; process what is there, then stop) or continuous "
        "(long-running, processing-time trigger); file sources always run one incremental batch",
    )


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Load the source first (a bad name fails before Spark starts), then run one batch."""
    source = load_source(args.source, settings)
    from mlops_spark.ingest.pipeline import run
    from mlops_spark.spark.session import get_spark

    spark = get_spark(settings, app_name=f"mlops-spark-ingest-{source.name}")
    result = run(spark, settings, source, args.run_date, strict=args.strict, mode=args.mode)
    summary = result.summary() if hasattr(result, "summary") else {"source": source.name}
    log.info("ingest finished", extra=fields(**summary))
    print(json.dumps(summary))
    return 0
