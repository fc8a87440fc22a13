"""The ``mlops-spark`` command: one argument parser, one subcommand per step.

Each step lives in a module with ``add_arguments(parser)`` and
``run_command(args, settings) -> int``; this file only maps names to modules,
loads the settings and turns typed errors into one line and an exit code.
``jobs/<step>.py`` call :func:`main` so spark-submit runs exactly the same code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from mlops_spark import __version__
from mlops_spark.errors import MlopsError, NotImplementedStep

log = logging.getLogger("mlops_spark.cli")


@dataclass(frozen=True)
class Step:
    """A subcommand: its name, one-line summary and implementing module (``None``: not built yet)."""

    name: str
    summary: str
    module: str | None


STEPS: tuple[Step, ...] = (
    Step("ingest", "land raw Parquet files (local or s3a) and Kafka topics in bronze Delta tables", "mlops_spark.ingest.command"),
    Step("validate", "run a GX suite and row rules; valid rows to silver, bad rows to quarantine", "mlops_spark.validate.command"),
    Step("features", "compute declarative windowed-aggregate features into features.* Delta tables", "mlops_spark.features.command"),
    Step("labels", "churn labels at monthly cut-offs from an event table into a label table", "mlops_spark.training.labels_command"),
    Step("training-set", "build a point-in-time correct training set from labels and feature tables", "mlops_spark.training.command"),
    Step("train", "fit a model with MLflow tracking and lineage, register it, promote by rule", "mlops_spark.training.train_command"),
    Step("score", "batch-score entities with a registered model into ml.predictions_<model>", "mlops_spark.scoring.command"),
    Step("monitor", "compute drift and performance metrics, write the report, raise alerts", "mlops_spark.monitoring.command"),
    Step("retrain", "run the whole loop (ingest .. score) when monitoring or a schedule says so", "mlops_spark.retrain"),
    Step("demo", "generate a retail data set and run every step end to end on the embedded default", "mlops_spark.demo"),
    Step("sql-server", "serve the lake's tables over JDBC/ODBC with the Spark Thrift Server", "mlops_spark.sqlserver"),
    Step("datagen", "generate deterministic synthetic retail transactions (Parquet files or a Delta table)", "mlops_spark.datagen_command"),
    Step("config", "show the resolved settings of an environment, secrets masked", "mlops_spark.config.command"),
)


def _run_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date in YYYY-MM-DD form") from None


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand shares, accepted before or after the subcommand name."""
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = common.add_argument_group("common options")
    group.add_argument("--env", help="environment whose conf/<env>.yaml to load (default: $MLOPS_ENV or local)")
    group.add_argument("--conf", type=Path, help="extra YAML settings file applied over conf/<env>.yaml")
    group.add_argument("--conf-dir", type=Path, help="folder of base.yaml and <env>.yaml (default: $MLOPS_CONF_DIR or ./conf)")
    group.add_argument(
        "--run-date",
        type=_run_date,
        default=None,
        help="logical date of the run, YYYY-MM-DD (default: today in UTC); re-running a date is idempotent",
    )
    group.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")
    group.add_argument("--plain-logs", action="store_true", help="human-readable log lines instead of JSON")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The full parser: every step with its own options and the common ones."""
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="mlops-spark",
        allow_abbrev=False,
        description="Spark-based batch feature engineering and inference: "
        "ingest -> validate -> features -> training-set -> train -> score -> monitor.",
        epilog="Settings: conf/base.yaml < conf/<env>.yaml < --conf FILE < MLOPS_* variables "
        "(MLOPS_SPARK__MASTER=local[2]). Exit codes: 0 ok, 1 data-quality failure, "
        "2 bad config or usage, 3 monitoring alert.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mlops-spark {__version__}")
    sub = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    for step in STEPS:
        help_text = step.summary if step.module else f"{step.summary} (not implemented yet)"
        p = sub.add_parser(step.name, parents=[common], help=help_text, description=help_text.capitalize() + ".", allow_abbrev=False)
        if step.module:
            module = importlib.import_module(step.module)
            module.add_arguments(p)
        p.set_defaults(_step=step)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (also used by ``jobs/*.py``)."""
    from mlops_spark import log as logsetup
    from mlops_spark.config import load_settings

    parser = build_parser()
    args = parser.parse_args(argv)
    logsetup.configure(args.log_level, json_logs=not args.plain_logs)
    step: Step = args._step
    args.run_date = args.run_date or dt.datetime.now(dt.timezone.utc).date()
    try:
        if step.module is None:
            raise NotImplementedStep(f"'{step.name}' is not implemented yet")
        settings = load_settings(env=args.env, conf_dir=args.conf_dir, conf_file=args.conf)
        module = importlib.import_module(step.module)
        return int(module.run_command(args, settings) or 0)
    except MlopsError as exc:
        print(f"mlops-spark {step.name}: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mlops-spark {step.name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
