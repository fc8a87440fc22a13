"""Expectation suites as data: ``conf/expectations/<name>.yaml`` parsed into typed models.

A suite has four parts:

``columns``
    the columns the bronze table must have and their Spark types; each becomes a
    Great Expectations ``expect_column_to_exist`` and ``expect_column_values_to_be_of_type``
    (action ``fail``: a wrong schema stops the step).
``expectations``
    batch expectations run by Great Expectations on the whole batch, each
    ``{type: expect_..., kwargs: {...}, action: warn|fail}``.
``batch_rules``
    batch checks GX has no direct expectation for (``freshness``), with the same
    result shape in ``ml.dq_results``.
``rules``
    row rules, each ``{name, kind, action: warn|quarantine|fail, ...}`` evaluated per row
    (see :mod:`mlops_spark.validate.rules`).

Unknown keys, unknown rule kinds and unknown expectation types are :class:`ConfigError`
naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops_spark.errors import ConfigError, UsageError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SUITE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

# Spark type names a suite may use, and the DataType class name GX reports for them.
SPARK_TYPES: dict[str, str] = {
    "string": "StringType",
    "long": "LongType",
    "bigint": "LongType",
    "int": "IntegerType",
    "integer": "IntegerType",
    "short": "ShortType",
    "double": "DoubleType",
    "float": "FloatType",
    "boolean": "BooleanType",
    "date": "DateType",
    "timestamp": "TimestampType",
    "timestamp_ntz": "TimestampNTZType",
    "binary": "BinaryType",
}

Action = Literal["warn", "quarantine", "fail"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RuleBase(_Model):
    name: str
    """Rule name: recorded in ``_failed_rules`` of quarantined rows and in ``ml.dq_results``."""

    action: Action
    """``warn``: keep the row, count and flag it; ``quarantine``: move it to the quarantine
    table; ``fail``: stop the step before anything is written to silver."""

    description: str = ""
    """Why the rule exists (shown in ``ml.dq_results``)."""

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"rule name '{value}' is not an identifier (letters, digits, underscore)")
        return value


class NotNullRule(_RuleBase):
    kind: Literal["not_null"]
    column: str
    """Column that must not be null."""


class RangeRule(_RuleBase):
    kind: Literal["range"]
    column: str
    """Numeric, date or timestamp column."""
    min: float | str | None = None
    """Lowest allowed value (inclusive unless ``strict_min``); dates and timestamps as ISO text."""
    max: float | str | None = None
    """Highest allowed value (inclusive unless ``strict_max``)."""
    strict_min: bool = False
    """Exclude ``min`` itself (``amount > 0`` rather than ``>= 0``)."""
    strict_max: bool = False
    """Exclude ``max`` itself."""

    @model_validator(mode="after")
    def _bounded(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError(f"range rule '{self.name}' needs min or max")
        return self


class InSetRule(_RuleBase):
    kind: Literal["in_set"]
    column: str
    """Column whose values must be one of ``values``."""
    values: list[Any] = Field(min_length=1)
    """Allowed values."""


class RegexRule(_RuleBase):
    kind: Literal["regex"]
    column: str
    """String column."""
    pattern: str
    """Java regular expression, searched anywhere in the value (anchor it with ``^...$``)."""
    must_match: bool = True
    """``true``: a valid value matches; ``false``: a valid value does not match."""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern '{value}' is not a regular expression: {exc}") from None
        return value


class UniqueRule(_RuleBase):
    kind: Literal["unique"]
    columns: list[str] = Field(min_length=1)
    """Key columns; rows sharing a non-null key after the first are failures."""
    order_by: list[str] = Field(default_factory=list)
    """Which occurrence is first (ascending); ties are broken by every other column so the
    choice is deterministic."""


class ExpressionRule(_RuleBase):
    kind: Literal["expression"]
    sql: str
    """Spark SQL boolean expression a valid row satisfies (from the versioned suite file,
    never from data)."""


RowRule = Annotated[NotNullRule | RangeRule | InSetRule | RegexRule | UniqueRule | ExpressionRule, Field(discriminator="kind")]


class ExpectationSpec(_Model):
    type: str
    """Great Expectations expectation type in snake case, e.g. ``expect_column_values_to_not_be_null``."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the expectation (``column``, ``min_value``, ``value_set`` ...)."""
    action: Literal["warn", "fail"] = "warn"
    """``fail`` stops the step when the expectation fails; ``warn`` only records it."""


class FreshnessRule(_Model):
    kind: Literal["freshness"]
    column: str
    """Event-time column."""
    max_age_hours: float = Field(gt=0)
    """The newest event must be at most this many hours before the end of the run date
    (``run_date + 1 day`` at 00:00 in the session time zone)."""
    action: Literal["warn", "fail"] = "warn"
    """``fail`` stops the step when the data is stale."""


BatchRule = Annotated[FreshnessRule, Field(discriminator="kind")]


class Suite(_Model):
    name: str
    """Suite name; also the default silver and quarantine table name."""
    version: int = 1
    """Bumped whenever rules change; recorded with every result."""
    description: str = ""
    """What the suite guards."""
    date_column: str
    """Event-date partition column of the bronze table: a run validates one date (or all),
    and silver/quarantine are replaced per date so re-runs never duplicate."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Required columns and their Spark types (``string``, ``long``, ``timestamp`` ...)."""
    expectations: list[ExpectationSpec] = Field(default_factory=list)
    """Batch expectations run by Great Expectations."""
    batch_rules: list[BatchRule] = Field(default_factory=list)
    """Batch checks without a GX expectation (freshness)."""
    rules: list[RowRule] = Field(default_factory=list)
    """Row rules, evaluated together in one pass."""
    source: str = ""
    """File the suite was read from (set by the loader)."""

    @field_validator("columns")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        for column, type_name in value.items():
            if type_name not in SPARK_TYPES:
                raise ValueError(f"column {column}: unknown type '{type_name}' (one of {', '.join(SPARK_TYPES)})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Suite:
        names = [r.name for r in self.rules]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"rule names used twice: {', '.join(duplicated)}")
        if self.columns:
            known = set(self.columns)
            for rule in self.rules:
                used = list(getattr(rule, "columns", [])) + list(getattr(rule, "order_by", []))
                used += [rule.column] if hasattr(rule, "column") else []
                missing = [c for c in used if c not in known]
                if missing:
                    raise ValueError(f"rule '{rule.name}' uses columns not declared under columns: {', '.join(missing)}")
        return self


def suites_dir(configured: str | None) -> Path:
    """The suites folder: the configured one, else ``expectations/`` beside the settings files."""
    if configured:
        return Path(configured).expanduser()
    from mlops_spark.config.loader import default_conf_dir

    return default_conf_dir() / "expectations"


def resolve_suite_path(name: str, folder: Path) -> Path:
    """``NAME`` -> ``<folder>/NAME.yaml``; a value ending in ``.yaml``/``.yml`` is a file path.

    Raises:
        UsageError: no such suite (the message lists the available ones).
    """
    if name.endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
    else:
        if not _SUITE_NAME.match(name):
            raise UsageError(f"'{name}' is not a suite name")
        path = folder / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise UsageError(f"suite '{name}' not found at {path} (available: {', '.join(available) or 'none'})")
    return path


def load_suite(path: Path) -> Suite:
    """Read and validate one suite file.

    Raises:
        ConfigError: the file is not YAML, not a mapping, or breaks the schema (unknown key,
            unknown rule kind, bad value); the message names the file and the field.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite must be a mapping with name, date_column, rules ...")
    try:
        suite = Suite.model_validate({**data, "source": str(path)})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None
    from mlops_spark.validate.expectations import check_expectation_specs

    check_expectation_specs(suite)
    return suite


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx", {})
        message = f"unknown kind '{ctx.get('tag')}' (one of {ctx.get('expected_tags')})"
    return f"{where}: {message}" if where else message
