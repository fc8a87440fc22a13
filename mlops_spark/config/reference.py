"""Generate the configuration reference ``docs/configuration.md`` from the settings models.

Every key of :class:`~mlops_spark.config.settings.Settings` (and of the definition files:
feature sets, sources, training sets, models) is listed with its dotted path, type,
default, environment variable and docstring, so the reference cannot drift from the code::

    python -m mlops_spark.config.reference            # (re)write docs/configuration.md
    python -m mlops_spark.config.reference --check    # exit 1 when the committed file is stale

Exit codes: 0 ok (or up to date), 1 stale file, 2 bad usage or an undocumented field.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from mlops_spark.errors import ConfigError

REFERENCE_PATH = Path("docs") / "configuration.md"
ENV_PREFIX = "MLOPS_"
ENV_DELIMITER = "__"


@dataclass(frozen=True)
class Entry:
    """One documented key."""

    path: str
    """Dotted key; ``<name>`` stands for a mapping key, ``[]`` for a list item."""

    type: str
    default: str
    env: str | None
    """Environment variable that sets the key; ``None`` inside lists, mappings and definition files."""

    description: str


@dataclass(frozen=True)
class DefinitionFile:
    """A kind of YAML definition file documented after the settings."""

    title: str
    location: str
    model: type[BaseModel]
    intro: str


def definition_files() -> list[DefinitionFile]:
    """The definition-file models, imported here so importing this module stays light."""
    from mlops_spark.features.spec import FeatureSet
    from mlops_spark.ingest.kafka_spec import KafkaSource
    from mlops_spark.ingest.sources import FileSource
    from mlops_spark.training.definition import TrainingSetDefinition
    from mlops_spark.training.model_spec import ModelSpec

    return [
        DefinitionFile(
            "Feature sets",
            "conf/features/<name>.yaml",
            FeatureSet,
            "Computed by `mlops-spark features` into `features.<name>`; feature columns are named `<column>_<function>_<window>`.",
        ),
        DefinitionFile(
            "File sources",
            "conf/sources/<name>.yaml",
            FileSource,
            "With `kind: files`: raw Parquet files landed by `mlops-spark ingest --source <name>` into `bronze.<table>`.",
        ),
        DefinitionFile(
            "Kafka sources",
            "conf/sources/<name>.yaml",
            KafkaSource,
            "With `kind: kafka`: topics of JSON messages landed by `mlops-spark ingest --source <name>` into `bronze.<table>`.",
        ),
        DefinitionFile(
            "Training sets",
            "conf/training_sets/<name>.yaml",
            TrainingSetDefinition,
            "Or inline under `training_sets.definitions.<name>` in the settings. "
            "Built by `mlops-spark training-set --definition <name>` into `ml.training_set_<name>`.",
        ),
        DefinitionFile(
            "Models",
            "conf/models/<name>.yaml",
            ModelSpec,
            "Trained by `mlops-spark train --model <name>`, registered in MLflow as `<name>`.",
        ),
    ]


# --- rendering of types, defaults and descriptions ----------------------------------------


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_name(annotation: Any) -> str:
    """A YAML-minded name of a type: ``str | null``, ``list[str]``, ``"derby" | "jdbc"``."""
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if annotation is SecretStr:
        return "secret"
    if annotation is dt.datetime:
        return "datetime"
    if _is_model(annotation):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        if type(None) in args:
            names.append("null")
        return " | ".join(names)
    if origin in (list, tuple, dict, set):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field: FieldInfo) -> str:
    marks = []
    for meta in field.metadata:
        for cls, sign, attr in (
            (annotated_types.Ge, ">=", "ge"),
            (annotated_types.Gt, ">", "gt"),
            (annotated_types.Le, "<=", "le"),
            (annotated_types.Lt, "<", "lt"),
            (annotated_types.MinLen, "length >=", "min_length"),
            (annotated_types.MaxLen, "length <=", "max_length"),
        ):
            if isinstance(meta, cls):
                marks.append(f"{sign} {getattr(meta, attr)}")
        pattern = getattr(meta, "pattern", None)
        if isinstance(pattern, str):
            marks.append(f"matches {pattern}")
    return ", ".join(marks)


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, default=str, ensure_ascii=False)


_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+)`")


def _description(field: FieldInfo) -> str:
    text = " ".join((field.description or "").split())
    text = _ROLE.sub(r"`\1`", text)  # :meth:`Settings.resolve_paths` -> `resolve_paths`
    # YAML spells Python's None as null.
    return text.replace("``", "`").replace("`None`", "`null`")


def _unwrap(annotation: Any) -> Any:
    """Drop ``Annotated`` and ``| None``: the type a key holds when set."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return annotation


def _env_name(parts: list[str]) -> str:
    return ENV_PREFIX + ENV_DELIMITER.join(parts).upper()


def walk(model: type[BaseModel], prefix: list[str], env: bool, linked: dict[type, str] | None = None) -> Iterator[Entry]:
    """Every key of ``model`` depth-first, in declaration order.

    Nested sections are walked into; models inside lists and mappings are listed with
    ``[]`` / ``<name>`` in the path (and no environment variable), except models in
    ``linked`` (model -> anchor), which are referred to instead of repeated.
    """
    linked = linked or {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        parts = [*prefix, key]
        path = ".".join(parts)
        annotation = _unwrap(field.annotation)
        if _is_model(annotation) and annotation not in linked and field.default_factory is not None and env:
            yield from walk(annotation, parts, env, linked)  # a settings section: its keys, not itself
            continue
        type_name = _type_name(field.annotation)
        constraints = _constraints(field)
        if constraints:
            type_name += f" ({constraints})"
        description = _description(field)
        inner, marker = _container_item(annotation)
        if inner is not None and inner in linked:
            description += f" Each item: see [{inner.__name__}](#{linked[inner]})."
        yield Entry(path, type_name, _default(field), _env_name(parts) if env else None, description)
        if inner is not None and inner not in linked:
            yield from walk(inner, [*prefix, key + marker], env=False, linked=linked)
        elif _is_model(annotation) and annotation not in linked:
            yield from walk(annotation, parts, env=False, linked=linked)


def _container_item(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The model held by a list or mapping, with its path marker (``[]`` or ``.<name>``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and args and _is_model(_unwrap(args[0])):
        return _unwrap(args[0]), "[]"
    if origin is dict and len(args) == 2 and _is_model(_unwrap(args[1])):
        return _unwrap(args[1]), ".<name>"
    return None, ""


def undocumented(entries: list[Entry]) -> list[str]:
    """Paths of the entries without a description."""
    return [e.path for e in entries if not e.description]


# --- the Markdown document -----------------------------------------------------------------

HEADER = """\
# Configuration reference

<!-- Generated by `python -m mlops_spark.config.reference` (`make docs`) from the settings
models; do not edit by hand. A unit test fails when this file is stale. -->

Settings are typed and layered, lowest precedence first:

1. `conf/base.yaml`
2. `conf/<env>.yaml` (`--env`, default `$MLOPS_ENV` or `local`)
3. the file given with `--conf FILE`
4. `MLOPS_*` environment variables, with `__` between levels: `MLOPS_SPARK__MASTER=local[2]`.
   Lists and mappings take JSON: `MLOPS_SPARK__CONF='{"spark.sql.adaptive.enabled": "false"}'`.

Unknown keys are errors, and so are values of the wrong type: the command stops with one
line naming the key and the file or variable it came from, and exit code 2. A default of
`null` on a path is filled from `lake_root` when the settings load (see the description);
`mlops-spark config show` prints the resolved values with secrets masked.

In the tables, `<name>` in a path stands for a key of your choice in a mapping and `[]`
for each item of a list; keys inside lists and mappings have no environment variable of
their own (set the whole list or mapping as JSON).
"""

DEFINITIONS_INTRO = """\
## Definition files

Definitions are YAML files versioned with the code beside the settings, one per file;
the same rules apply: unknown keys are errors naming the file and the key. Expectation
suites (`conf/expectations/<name>.yaml`) are described by the examples in that folder.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else " "


def _table(entries: list[Entry], with_env: bool) -> list[str]:
    if with_env:
        lines = ["| key | type | default | environment variable | description |", "| --- | --- | --- | --- | --- |"]
    else:
        lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for e in entries:
        cells = [f"`{e.path}`", f"`{e.type}`", f"`{e.default}`" if e.default not in ("required", "(section)") else e.default]
        if with_env:
            cells.append(f"`{e.env}`" if e.env else "-")
        cells.append(e.description)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def settings_entries() -> list[Entry]:
    """Every settings key (definition-file models are linked, not repeated)."""
    from mlops_spark.config.settings import Settings

    linked = {d.model: _anchor(d.title) for d in definition_files()}
    return list(walk(Settings, [], env=True, linked=linked))


def generate() -> str:
    """The whole reference document.

    Raises:
        ConfigError: a field has no description (its docstring is missing).
    """
    from mlops_spark.config.settings import Settings

    definitions = definition_files()
    linked = {d.model: _anchor(d.title) for d in definitions}
    entries = settings_entries()
    lines = [HEADER, "## Settings", ""]
    top = [e for e in entries if "." not in e.path]
    if top:
        lines += ["### Top level", "", *_table(top, with_env=True), ""]
    for name, field in Settings.model_fields.items():
        section = [e for e in entries if e.path.split(".")[0] == name and "." in e.path]
        if not section:
            continue
        lines += [f"### {name}", "", _description(field), "", *_table(section, with_env=True), ""]
    missing = undocumented(entries)
    lines += [DEFINITIONS_INTRO]
    for d in definitions:
        rows = list(walk(d.model, [], env=False, linked={m: a for m, a in linked.items() if m is not d.model}))
        missing += [f"{d.location}: {p}" for p in undocumented(rows)]
        lines += [f"### {d.title}", "", f"`{d.location}`. {d.intro}", "", *_table(rows, with_env=False), ""]
    if missing:
        raise ConfigError(f"settings field without a docstring: {missing[0]} (and {len(missing) - 1} more)")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the reference, or with ``--check`` compare it with the file; returns the exit code."""
    from mlops_spark.spark.jars import project_root

    parser = argparse.ArgumentParser(prog="python -m mlops_spark.config.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from the generated reference")
    parser.add_argument("--output", type=Path, default=None, help=f"the reference file (default: {REFERENCE_PATH} in the checkout)")
    args = parser.parse_args(argv)
    output: Path = args.output or project_root() / REFERENCE_PATH
    try:
        text = generate()
    except ConfigError as exc:
        print(f"reference: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = output.read_text(encoding="utf-8") if output.is_file() else None
        if current != text:
            state = "missing" if current is None else "stale"
            print(f"reference: {output} is {state}: run `make docs` (python -m mlops_spark.config.reference)", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    if not output.is_file() or output.read_text(encoding="utf-8") != text:
        output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
