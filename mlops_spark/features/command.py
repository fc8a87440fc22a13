"""``mlops-spark features``: compute feature sets from their YAML definitions into Delta tables."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from mlops_spark.config import Settings
from mlops_spark.errors import ConfigError, UsageError
from mlops_spark.features.spec import FeatureSet, load_feature_set


def definitions_dir(settings: Settings) -> Path:
    """``settings.features.definitions_dir``, else ``features/`` beside the settings files."""
    if settings.features.definitions_dir:
        return Path(settings.features.definitions_dir).expanduser()
    from mlops_spark.config.loader import default_conf_dir

    return default_conf_dir() / "features"


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date in YYYY-MM-DD form") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlops-spark features``."""
    parser.add_argument(
        "--feature-set",
        action="append",
        default=[],
        metavar="NAME",
        help="feature set to compute: <definitions dir>/NAME.yaml (repeatable; default: every definition in the folder)",
    )
    parser.add_argument(
        "--definition",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a feature-set YAML file to compute (repeatable; instead of --feature-set)",
    )
    parser.add_argument(
        "--definitions-dir",
        type=Path,
        help="folder of feature-set definitions (default: settings features.definitions_dir, else conf/features)",
    )
    parser.add_argument(
        "--backfill",
        nargs=2,
        type=_date,
        metavar=("START", "END"),
        help="compute every feature date from START to END inclusive instead of --run-date only",
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="recreate the feature tables (needed after a definition change; combine with --backfill)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="recompute even when the last run for the same dates read the same source version with the same definition "
        "and the table is unchanged since (by default such a run is skipped and writes nothing)",
    )


def _select(args: argparse.Namespace, settings: Settings) -> list[FeatureSet]:
    if args.definition:
        return [load_feature_set(p) for p in args.definition]
    folder = args.definitions_dir or definitions_dir(settings)
    known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    names = args.feature_set or known
    if not names:
        raise ConfigError(f"no feature-set definitions in {folder}")
    specs = []
    for name in names:
        if name not in known:
            defined = ", ".join(known) or "none"
            raise ConfigError(f"unknown feature set '{name}': {folder / (name + '.yaml')} not found (defined: {defined})")
        spec = load_feature_set(folder / f"{name}.yaml")
        if spec.name != name:
            raise ConfigError(f"feature set file {folder / (name + '.yaml')} names itself '{spec.name}'; the file stem must match")
        specs.append(spec)
    return specs


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Compute the selected feature sets for the run date or the backfill range."""
    from mlops_spark.features import pipeline
    from mlops_spark.spark.session import get_spark

    start, end = (args.backfill[0], args.backfill[1]) if args.backfill else (args.run_date, args.run_date)
    if end < start:
        raise UsageError(f"--backfill END {end} is before START {start}")
    specs = _select(args, settings)
    spark = get_spark(settings, app_name=f"mlops-spark features {start}..{end}")
    for spec in specs:
        for result in pipeline.run(spark, settings, spec, start, end, rebuild=args.rebuild, force=args.force):
            skipped = "; skipped: already computed from this source version and definition, nothing written" if result.skipped else ""
            print(
                f"{result.table}: {result.rows_written} rows for {result.start}..{result.end} "
                f"(source {spec.source} version {result.source_version}{skipped})"
            )
    return 0
