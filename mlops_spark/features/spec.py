"""Feature-set definitions: YAML under ``conf/features/`` mirrored by typed models.

A feature set names its source table, entity key(s), event-time column, an optional
filter, derived input columns (SQL expressions), and aggregations (column x functions
x windows), plus optional ratios between features. Feature columns are named
``<column>_<function>_<window>`` (``amount_sum_7d``, ``category_distinct_count_lifetime``).

Window boundary convention (identical for per-event features, snapshots and query
points): a window of length ``W`` ending at ``t`` holds the events with
``t - W < event_ts <= t`` (left edge exclusive, right edge inclusive), at microsecond
resolution. ``lifetime`` holds every event with ``event_ts <= t``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pyspark.sql import types as T

from mlops_spark.errors import ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WINDOW = re.compile(r"^(\d+)(us|ms|s|m|h|d|w)$")
_UNIT_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}

LIFETIME = "lifetime"
Function = Literal["count", "count_events", "sum", "avg", "min", "max", "stddev", "distinct_count", "last"]
FUNCTIONS: tuple[str, ...] = ("count", "count_events", "sum", "avg", "min", "max", "stddev", "distinct_count", "last")
NUMERIC_FUNCTIONS = frozenset({"sum", "avg", "min", "max", "stddev"})
COUNT_FUNCTIONS = frozenset({"count", "count_events", "distinct_count"})

FUNCTION_DOCS = {
    "count": "number of events with a non-null value",
    "count_events": "number of events (nulls included)",
    "sum": "sum of non-null values",
    "avg": "mean of non-null values",
    "min": "smallest non-null value",
    "max": "largest non-null value",
    "stddev": "sample standard deviation of non-null values (null below 2 values)",
    "distinct_count": "exact number of distinct non-null values",
    "last": "value of the latest event with a non-null value (ties on time: the largest such value)",
}


def window_micros(text: str) -> int | None:
    """Length of a window string in microseconds; ``None`` for ``lifetime``.

    Raises:
        ValueError: not ``<positive int><us|ms|s|m|h|d|w>`` nor ``lifetime``.
    """
    if text == LIFETIME:
        return None
    match = _WINDOW.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"bad window '{text}': expected e.g. 1d, 7d, 12h, 30m or 'lifetime'")
    return int(match.group(1)) * _UNIT_US[match.group(2)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class Aggregation(_Model):
    """One input column aggregated by several functions over several windows."""

    column: str
    """Input column (a source column or a derived column of the feature set)."""

    functions: list[Function] = Field(min_length=1)
    """Aggregate functions: count, count_events, sum, avg, min, max, stddev, distinct_count, last."""

    windows: list[str] = Field(min_length=1)
    """Trailing windows ending at the feature time: ``<n><us|ms|s|m|h|d|w>`` or ``lifetime``."""

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for w in value:
            window_micros(w)
        if len(set(value)) != len(value):
            raise ValueError("windows repeat")
        return value

    @field_validator("functions")
    @classmethod
    def _functions(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("functions repeat")
        return value


class Ratio(_Model):
    """A derived feature ``numerator / denominator`` (null when the denominator is 0 or null)."""

    name: str
    """Name of the derived feature column."""

    numerator: str
    """Feature column name of the numerator (e.g. ``amount_sum_7d``)."""

    denominator: str
    """Feature column name of the denominator (e.g. ``amount_sum_30d``)."""

    description: str = ""
    """What the ratio means, for the column comment."""


class Snapshot(_Model):
    """Snapshot table options: one row per (entity, period) for entities active in the look-back."""

    granularity: str = "1d"
    """Period length; windows end at the inclusive end of each period (23:59:59.999999 for days)."""

    lookback: str | None = None
    """An entity gets a snapshot row for a period when it has an event in this trailing window;
    default the longest finite window of the feature set."""

    @field_validator("granularity", "lookback")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None and window_micros(value) is None:
            raise ValueError("must be a finite window, not 'lifetime'")
        return value


class FeatureSet(_Model):
    """A declarative feature set: what to read, how to key it and what to aggregate."""

    name: str
    """Feature set name; the snapshot table is ``features.<name>``, per-event ``features.<name>_events``."""

    description: str = ""
    """What the feature set is for (table comment)."""

    source: str
    """Source table, ``database.table`` (e.g. ``silver.transactions``)."""

    entity: list[str] = Field(min_length=1)
    """Entity key column(s)."""

    timestamp: str
    """Event-time column (timestamp)."""

    event_id: str | None = None
    """Optional event identifier carried into the per-event table (part of its key)."""

    filter: str | None = None
    """Optional Spark SQL predicate; only matching source rows are aggregated."""

    columns: dict[str, str] = Field(default_factory=dict)
    """Derived input columns: name -> Spark SQL expression over source columns."""

    aggregations: list[Aggregation] = Field(min_length=1)
    """Column x functions x windows."""

    ratios: list[Ratio] = Field(default_factory=list)
    """Derived ratios between features."""

    snapshot: Snapshot = Field(default_factory=Snapshot)
    """Snapshot table options."""

    per_event: bool = False
    """Also write the per-event rolling features to ``features.<name>_events``."""

    @field_validator("entity")
    @classmethod
    def _entity(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("entity columns repeat")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"'{value}' is not an identifier (letters, digits, underscore)")
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _IDENTIFIER.match(name):
                raise ValueError(f"derived column '{name}' is not an identifier")
        return value

    @model_validator(mode="after")
    def _names(self) -> FeatureSet:
        names = self.feature_names()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature names repeat: {', '.join(dupes)}")
        known = set(names)
        for i, r in enumerate(self.ratios):
            for side in ("numerator", "denominator"):
                if getattr(r, side) not in known:
                    raise ValueError(f"ratios[{i}].{side}: unknown feature '{getattr(r, side)}' (known: {', '.join(sorted(known))})")
        clash = known & {*self.entity, self.timestamp, *(x for x in [self.event_id] if x)}
        if clash:
            raise ValueError(f"feature names clash with key columns: {', '.join(sorted(clash))}")
        return self

    # --- derived views -------------------------------------------------------------

    def aggregate_features(self) -> list[tuple[str, str, str, str]]:
        """``(feature name, column, function, window)`` for every aggregate, in definition order."""
        return [(f"{a.column}_{fn}_{w}", a.column, fn, w) for a in self.aggregations for fn in a.functions for w in a.windows]

    def feature_names(self) -> list[str]:
        """Every output feature column (aggregates, then ratios)."""
        return [f[0] for f in self.aggregate_features()] + [r.name for r in self.ratios]

    def value_columns(self) -> list[str]:
        """Input columns the aggregations read, without repeats."""
        return list(dict.fromkeys(a.column for a in self.aggregations))

    def windows_micros(self) -> list[int | None]:
        """Distinct windows in microseconds (``None``: lifetime)."""
        return list(dict.fromkeys(window_micros(w) for a in self.aggregations for w in a.windows))

    def max_window_micros(self) -> int | None:
        """The longest window in microseconds, ``None`` when a lifetime window needs all history."""
        ws = self.windows_micros()
        return None if None in ws else max(w for w in ws if w is not None)

    def lookback_micros(self) -> int:
        """Activity look-back of snapshots in microseconds."""
        if self.snapshot.lookback:
            return int(window_micros(self.snapshot.lookback))  # type: ignore[arg-type]
        finite = [w for w in self.windows_micros() if w is not None]
        return max(finite) if finite else int(window_micros(self.snapshot.granularity))  # type: ignore[arg-type]

    def definition_hash(self) -> str:
        """SHA-256 of the canonical JSON of the definition (lineage: which definition made a row)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def describe_feature(self, name: str) -> str:
        """Column comment of a feature: description, function, window, source."""
        for fname, column, fn, window in self.aggregate_features():
            if fname == name:
                span = (
                    "all events up to the feature time"
                    if window == LIFETIME
                    else f"events in the {window} ending at the feature time (left edge exclusive)"
                )
                return f"{FUNCTION_DOCS[fn]} of {column} over {span}; function={fn}; window={window}; source={self.source}"
        for r in self.ratios:
            if r.name == name:
                text = r.description or f"{r.numerator} / {r.denominator}"
                return f"{text}; function=ratio({r.numerator}, {r.denominator}); source={self.source}"
        raise KeyError(name)

    def check_columns(self, schema: T.StructType) -> None:
        """Check the definition against the schema of the source (after derived columns).

        Raises:
            ConfigError: an unknown column, or a numeric function on a non-numeric column,
                naming the feature set and the field.
        """
        types = {f.name: f.dataType for f in schema.fields}
        where = f"feature set '{self.name}'"

        def need(field: str, column: str) -> None:
            if column not in types:
                raise ConfigError(f"{where}: {field}: unknown column '{column}' in {self.source} (have: {', '.join(types)})")

        for i, key in enumerate(self.entity):
            need(f"entity[{i}]", key)
        need("timestamp", self.timestamp)
        if not isinstance(types[self.timestamp], (T.TimestampType, T.TimestampNTZType)):
            raise ConfigError(f"{where}: timestamp: column '{self.timestamp}' is {types[self.timestamp].simpleString()}, not a timestamp")
        if self.event_id:
            need("event_id", self.event_id)
        for i, agg in enumerate(self.aggregations):
            need(f"aggregations[{i}].column", agg.column)
            numeric = isinstance(types[agg.column], T.NumericType)
            bad = [fn for fn in agg.functions if fn in NUMERIC_FUNCTIONS and not numeric]
            if bad:
                raise ConfigError(
                    f"{where}: aggregations[{i}].functions: {', '.join(bad)} need a numeric column, "
                    f"'{agg.column}' is {types[agg.column].simpleString()}"
                )


def parse_feature_set(data: object, origin: str = "<dict>") -> FeatureSet:
    """Validate a parsed definition.

    Raises:
        ConfigError: one line naming the feature set, the origin and the failing field(s).
    """
    name = data.get("name", "?") if isinstance(data, dict) else "?"
    try:
        return FeatureSet.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'definition'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise ConfigError(f"feature set '{name}' ({origin}): {problems}") from None


def load_feature_set(path: str | Path) -> FeatureSet:
    """Load and validate a YAML feature-set definition.

    Raises:
        ConfigError: the file is missing, not YAML, or fails validation.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"feature definition file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"feature definition {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_feature_set(data, origin=str(path))
