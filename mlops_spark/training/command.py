"""``mlops-spark training-set``: build a training set from a definition, or rebuild a recorded one."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlops_spark.config.loader import default_conf_dir
from mlops_spark.config.settings import Settings
from mlops_spark.errors import UsageError
from mlops_spark.training.definition import TrainingSetDefinition, TrainingSetSettings, inline_feature_sets, load_definition


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``training-set`` step."""
    group = parser.add_argument_group("training-set options")
    group.add_argument(
        "--definition",
        metavar="NAME_OR_FILE",
        help="training set to build: a name defined inline under training_sets.definitions in the settings "
        "(e.g. in the --conf file), a name of <conf dir>/training_sets/<NAME>.yaml, or a path to a YAML file; "
        "may be omitted when the settings define exactly one",
    )
    group.add_argument(
        "--rebuild",
        metavar="ID",
        help="rebuild the recorded training set ID from its recorded definition and input Delta versions (time travel)",
    )


def _section(settings: Settings) -> TrainingSetSettings:
    return getattr(settings, "training_sets", None) or TrainingSetSettings()


def resolve_definition(value: str | None, settings: Settings, conf_dir: Path | None) -> TrainingSetDefinition:
    """The definition ``--definition`` names, with its exact-window feature sets inlined.

    Raises:
        UsageError: nothing names a definition, or the name is unknown.
        ConfigError: the definition or a feature set it names is invalid.
    """
    definition = _find_definition(value, settings, conf_dir)
    features = getattr(settings, "features", None)
    custom = getattr(features, "definitions_dir", None)
    folder = Path(custom) if custom else (conf_dir or default_conf_dir()) / "features"
    return inline_feature_sets(definition, folder)


def _find_definition(value: str | None, settings: Settings, conf_dir: Path | None) -> TrainingSetDefinition:
    """The definition ``--definition`` names (see its help).

    Raises:
        UsageError: nothing names a definition, or the name is unknown.
        ConfigError: the definition file is invalid.
    """
    section = _section(settings)
    if value is None:
        if len(section.definitions) == 1:
            return next(iter(section.definitions.values()))
        raise UsageError(
            "give --definition NAME (or --rebuild ID); the settings define " + f"{len(section.definitions)} training sets inline"
        )
    if value in section.definitions:
        return section.definitions[value]
    path = Path(value)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_definition(path)
    folder = Path(section.definitions_dir) if section.definitions_dir else (conf_dir or default_conf_dir()) / "training_sets"
    candidate = folder / f"{value}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml")) + sorted(section.definitions)
        raise UsageError(f"training set definition '{value}' not found in {folder} or the settings (known: {', '.join(known) or 'none'})")
    return load_definition(candidate)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Build (or rebuild) the set and print its id, rows table and row count."""
    from mlops_spark.spark.session import get_spark
    from mlops_spark.training import training_set

    if args.rebuild and args.definition:
        raise UsageError("give either --definition or --rebuild, not both")
    if args.rebuild:
        result = training_set.rebuild(get_spark(settings, app_name="mlops-spark training-set"), settings, args.rebuild)
        action = "rebuilt"
    else:
        # Resolve the definition before starting Spark: a wrong name fails in a second.
        definition = resolve_definition(args.definition, settings, args.conf_dir)
        spark = get_spark(settings, app_name="mlops-spark training-set")
        result = training_set.run(spark, settings, definition, run_date=args.run_date)
        action = "built" if result.written else "already built"
    inputs = ", ".join(f"{t}@v{v}" for t, v in result.inputs.items())
    print(f"training set {result.training_set_id} {action}: {result.row_count} rows in {result.rows_table} (inputs {inputs})")
    return 0
