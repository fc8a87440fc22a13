"""Training-set definitions: YAML under ``conf/training_sets/`` mirrored by typed models.

Example (``conf/training_sets/customer_churn.yaml``)::

    name: customer_churn
    labels:
      table: ml.churn_labels          # a Delta table (its version is recorded)
      entity_keys: [customer_id]
      timestamp: label_ts             # the label's cut-off time
      label: churned
    features:
      - table: features.customer_daily
        timestamp: feature_ts
        features: [spend_30d, orders_90d]   # default: every other column
        renames: {spend_30d: spend_30d_at_label}
        ttl: 35d                      # older rows give nulls; omit for no limit
    split:
      train_until: 2011-09-01         # label_ts <  train_until        -> train
      validation_until: 2011-11-01    # label_ts <  validation_until   -> validation, else test
      keep_entity_together: true      # an entity goes to the split of its first label

Durations are ``<int><us|ms|s|m|h|d|w>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from mlops_spark.config.base import Section
from mlops_spark.errors import ConfigError
from mlops_spark.features.spec import FeatureSet, load_feature_set, parse_feature_set

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_DURATION = re.compile(r"^(\d+)(us|ms|s|m|h|d|w)$")
_UNIT_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}


def parse_duration(text: str) -> dt.timedelta:
    """``"30d"`` -> ``timedelta(days=30)``.

    Raises:
        ValueError: not ``<positive int><us|ms|s|m|h|d|w>``.
    """
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a duration like 30d, 12h, 90m, 1w")
    return dt.timedelta(microseconds=int(match.group(1)) * _UNIT_US[match.group(2)])


def _identifiers(values: list[str], what: str) -> list[str]:
    for value in values:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"{what} '{value}' is not an identifier (letters, digits, underscore)")
    return values


class LabelSource(Section):
    table: str
    """Delta table of labels (``ml.churn_labels``); its version is recorded for rebuilds."""

    entity_keys: list[str] = Field(min_length=1)
    """Entity key column(s) of the label table."""

    timestamp: str = "label_ts"
    """Label time column (timestamp, timestamp_ntz or date): features are taken as of it."""

    label: str = "label"
    """The label (target) column."""

    columns: list[str] | None = None
    """Extra label-table columns to keep; default every column."""

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not _TABLE.match(value):
            raise ValueError(f"'{value}' is not a table name like database.table")
        return value

    @field_validator("entity_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        return _identifiers(value, "entity key")


class FeatureLookup(Section):
    table: str
    """Feature table (``features.customer_daily``): entity key(s), a timestamp, feature columns."""

    name: str | None = None
    """Short name of the lookup; default the table name without database. The matched
    row's time is output as ``<name>_feature_ts``."""

    join_keys: dict[str, str] | None = None
    """Label key column -> feature-table column; default the same names as the label keys."""

    timestamp: str | None = None
    """Feature timestamp column of the table; default its ``mlops.timestamp_column`` table
    property (set by the features step), else ``feature_ts``."""

    features: list[str] | None = None
    """Feature columns to take; default every column except the join keys, the timestamp and
    the columns of the table's ``mlops.primary_key`` property (e.g. ``feature_date``)."""

    renames: dict[str, str] = Field(default_factory=dict)
    """Feature column -> output column name (to avoid clashes between tables)."""

    ttl: str | None = None
    """Maximum age of a feature row at label time (``30d``); older rows give nulls. ``None``: no limit."""

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not _TABLE.match(value):
            raise ValueError(f"'{value}' is not a table name like database.table")
        return value

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def lookup_name(self) -> str:
        return self.name or self.table.split(".")[-1]

    @property
    def ttl_delta(self) -> dt.timedelta | None:
        return None if self.ttl is None else parse_duration(self.ttl)


class ExactWindowLookup(Section):
    feature_set: str | dict[str, Any]
    """A feature set (``conf/features/<name>.yaml``) whose windows are computed exactly at each
    label's time from its event table. A name is replaced by the feature set's definition when
    the training set is built, so the recorded definition is self-contained."""

    table: str | None = None
    """Event table to aggregate; default the feature set's ``source``."""

    features: list[str] | None = None
    """Feature names to take; default every feature of the set."""

    renames: dict[str, str] = Field(default_factory=dict)
    """Feature name -> output column name."""

    def spec(self) -> FeatureSet:
        """The parsed feature set.

        Raises:
            ConfigError: the feature set is still a name (not inlined) or is invalid.
        """
        if isinstance(self.feature_set, str):
            raise ConfigError(f"exact windows: feature set '{self.feature_set}' must be inlined (the CLI loads it from conf/features)")
        return parse_feature_set(self.feature_set, "training set exact_windows")

    def events_table(self) -> str:
        return self.table or self.spec().source


class SplitSpec(Section):
    train_until: dt.datetime | None = None
    """Labels before this time are ``train`` (with ``validation_until``)."""

    validation_until: dt.datetime | None = None
    """Labels from ``train_until`` to before this time are ``validation``; later ones ``test``."""

    fractions: tuple[float, float, float] | None = None
    """Instead of times: train/validation/test fractions of the label times (cut points are
    exact percentiles of the label timestamps, so later labels are always later splits)."""

    keep_entity_together: bool = False
    """Put all rows of an entity in one split: the split of the entity's first label time."""

    @model_validator(mode="after")
    def _one_way(self) -> SplitSpec:
        times = self.train_until is not None and self.validation_until is not None
        if times == (self.fractions is not None):
            raise ValueError("give either train_until + validation_until or fractions")
        if times and self.validation_until < self.train_until:  # type: ignore[operator]
            raise ValueError("validation_until is before train_until")
        if self.fractions is not None and (abs(sum(self.fractions) - 1) > 1e-9 or min(self.fractions) < 0):
            raise ValueError("fractions must be three non-negative numbers summing to 1")
        return self


class TrainingSetDefinition(Section):
    name: str
    """Name of the training set; rows go to ``ml.training_set_<name>``."""

    description: str = ""
    """What the set is for (stored with it)."""

    labels: LabelSource
    """Where the labels come from."""

    features: list[FeatureLookup] = Field(default_factory=list)
    """Feature lookups, joined as of each label's time."""

    exact_windows: list[ExactWindowLookup] = Field(default_factory=list)
    """Feature sets computed exactly at each label's time from their event tables."""

    split: SplitSpec | None = None
    """Optional time-based train/validation/test split, written as column ``split``."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _identifiers([value], "training set name")[0]

    @model_validator(mode="after")
    def _unique_lookups(self) -> TrainingSetDefinition:
        if not self.features and not self.exact_windows:
            raise ValueError("give at least one feature lookup (features) or exact_windows")
        names = [f.lookup_name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"feature lookups share the name {duplicates}; set 'name' on each")
        return self

    def canonical_json(self) -> str:
        """The definition as sorted-key JSON (stored with the set, hashed into its id)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def definition_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def parse_definition(data: object, origin: str = "<dict>") -> TrainingSetDefinition:
    """Validate a definition mapping.

    Raises:
        ConfigError: one line naming ``origin``, the key and the problem.
    """
    try:
        return TrainingSetDefinition.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "definition"
        raise ConfigError(f"{origin}: {where}: {err['msg']}") from None


def load_definition(path: Path) -> TrainingSetDefinition:
    """Read and validate a definition YAML file.

    Raises:
        ConfigError: missing file, bad YAML or invalid definition.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: training set definition not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_definition(data, str(path))


def inline_feature_sets(definition: TrainingSetDefinition, folder: Path) -> TrainingSetDefinition:
    """Replace feature-set names in ``exact_windows`` by their definitions from ``folder/<name>.yaml``.

    Raises:
        ConfigError: a named feature set is missing or invalid.
    """
    windows = []
    for lookup in definition.exact_windows:
        if isinstance(lookup.feature_set, str):
            spec = load_feature_set(folder / f"{lookup.feature_set}.yaml")
            lookup = lookup.model_copy(update={"feature_set": spec.model_dump(mode="json")})
        windows.append(lookup)
    return definition.model_copy(update={"exact_windows": windows})


class TrainingSetSettings(Section):
    definitions_dir: str | None = None
    """Folder of ``<name>.yaml`` training-set definitions; default ``<conf dir>/training_sets``."""

    definitions: dict[str, TrainingSetDefinition] = Field(default_factory=dict)
    """Definitions given inline in settings (e.g. in a ``--conf`` file), by name."""

    partitions: int | None = Field(default=None, ge=1)
    """Shuffle partitions of the as-of merge; default ``spark.shuffle_partitions``."""
