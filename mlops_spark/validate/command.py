"""``mlops-spark validate``: run a suite on a bronze table; valid rows to silver, bad rows to quarantine."""

from __future__ import annotations

import argparse

from mlops_spark.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``validate`` step."""
    parser.add_argument("--table", required=True, help="bronze table to validate, database.table (e.g. bronze.transactions)")
    parser.add_argument(
        "--suite",
        help="suite name under the suites folder (conf/expectations/NAME.yaml) or a path to a .yaml file (default: the table's name)",
    )
    parser.add_argument(
        "--all-dates",
        action="store_true",
        help="validate every row of the table and replace silver/quarantine whole, instead of the run date's rows",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="validate even when the last passed run read the same bronze version with the same suite "
        "and silver/quarantine are unchanged since (by default such a run is skipped and writes nothing)",
    )


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Validate, print one summary line (the earlier run's counts, marked skipped, when nothing
    changed since); a broken ``fail`` rule raises DataQualityError (exit 1)."""
    from mlops_spark.spark.session import get_spark
    from mlops_spark.validate.pipeline import load_suite_for, run

    load_suite_for(settings, args.table, args.suite)  # a bad suite is reported before Spark starts
    spark = get_spark(settings, app_name="mlops-spark validate")
    outcome = run(spark, settings, args.table, args.run_date, suite_name=args.suite, all_dates=args.all_dates, force=args.force)
    skipped = f"; skipped: already validated at bronze version {outcome.source_version}, nothing written" if outcome.skipped else ""
    print(
        f"validated {args.table} for {args.run_date}: {outcome.rows_in} rows in, {outcome.rows_silver} to {outcome.silver_table}, "
        f"{outcome.rows_quarantined} to {outcome.quarantine_table}, {outcome.rows_warned} warned (run {outcome.run_id}{skipped})"
    )
    return 0
