"""Source definitions: one YAML file per source under ``conf/sources/<name>.yaml``.

Each file has a ``kind`` that selects its model: ``files`` (:class:`FileSource`,
raw Parquet files in a landing folder, local or ``s3a://``) or ``kafka``
(:class:`~mlops_spark.ingest.kafka_spec.KafkaSource`, topics of JSON messages).
:data:`Source` is the discriminated union of the kinds and :func:`load_source`
reads and validates one file, raising :class:`ConfigError` naming the file and field.

Example ``conf/sources/online_retail.yaml``::

    kind: files
    landing_path: online_retail        # under settings.landing_root, or s3a://...
    table: online_retail               # bronze.online_retail
    event_time_column: InvoiceDate
    local_time_zone: Europe/London     # TIMESTAMP_NTZ values are London wall clock
    columns:
      InvoiceNo: string
      Quantity: {type: long, nullable: true}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator
from pyspark.sql import types as T

from mlops_spark.config.base import Section
from mlops_spark.config.settings import Settings, is_remote, join_path
from mlops_spark.errors import ConfigError
from mlops_spark.ingest.kafka_spec import KafkaSource

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")

_SIMPLE_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "long": T.LongType(),
    "bigint": T.LongType(),
    "int": T.IntegerType(),
    "integer": T.IntegerType(),
    "short": T.ShortType(),
    "smallint": T.ShortType(),
    "byte": T.ByteType(),
    "tinyint": T.ByteType(),
    "double": T.DoubleType(),
    "float": T.FloatType(),
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
    "timestamp_ntz": T.TimestampNTZType(),
    "binary": T.BinaryType(),
}


def parse_type(name: str) -> T.DataType:
    """A Spark type from its SQL name (``long``, ``timestamp``, ``decimal(10,2)``).

    Raises:
        ValueError: an unknown type name (the message lists the known ones).
    """
    text = name.strip().lower()
    if text in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[text]
    match = _DECIMAL.match(text)
    if match:
        return T.DecimalType(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"unknown type '{name}' (one of {', '.join(_SIMPLE_TYPES)}, decimal(p,s))")


class ColumnSpec(Section):
    type: str
    """Spark SQL type of the column in bronze (``string``, ``long``, ``timestamp``, ``decimal(10,2)``)."""

    nullable: bool = True
    """``false``: a file with a null in this column is quarantined whole."""

    comment: str | None = None
    """Column comment shown by ``DESCRIBE TABLE`` on the bronze table."""

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        parse_type(value)
        return value

    def spark_type(self) -> T.DataType:
        """The column's Spark type."""
        return parse_type(self.type)


class FileSource(Section):
    kind: Literal["files"]
    """Raw files landing in a folder."""

    name: str
    """Source name; the file name ``<name>.yaml`` (set by the loader)."""

    landing_path: str
    """Folder of raw files: a path relative to ``settings.landing_root``, an absolute
    local path, or a URI (``s3a://bucket/prefix``). Sub-folders are scanned too."""

    format: Literal["parquet"] = "parquet"
    """File format of the raw files (Parquet only for now)."""

    file_pattern: str = "*"
    """Glob on file names that selects input files. Hidden files (``.x``, ``_x``) are always
    skipped, like Spark does; any other matching file that is not valid Parquet is quarantined."""

    columns: dict[str, ColumnSpec]
    """The declared raw schema, in bronze column order: name -> type (a type name, or a
    mapping with ``type``, ``nullable``, ``comment``)."""

    event_time_column: str
    """Timestamp column whose UTC date is the bronze partition column."""

    local_time_zone: str | None = None
    """Time zone of wall-clock timestamps (Parquet ``TIMESTAMP_NTZ``, e.g. written by pandas)
    declared as ``timestamp``: they are converted from this zone to UTC instants.
    ``None`` reads such wall clocks as UTC."""

    table: str
    """Bronze table name (in the bronze database)."""

    partition_column: str = "event_date"
    """Name of the bronze partition column: the UTC date of ``event_time_column``."""

    extra_columns: Literal["quarantine", "drop"] = "quarantine"
    """A file with columns not declared: ``quarantine`` the file (schema drift is visible),
    or ``drop`` the extra columns."""

    options: dict[str, str] = Field(default_factory=dict)
    """Extra Spark Parquet reader options (``mergeSchema`` is not allowed: files are
    checked one schema at a time)."""

    @field_validator("columns", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `name: long` is shorthand for `name: {type: long}`.
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("table", "partition_column")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"'{value}' is not an identifier (letters, digits, underscore)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FileSource:
        if not self.columns:
            raise ValueError("columns: declare at least one column")
        if self.event_time_column not in self.columns:
            raise ValueError(f"event_time_column: '{self.event_time_column}' is not a declared column")
        if not isinstance(self.columns[self.event_time_column].spark_type(), T.TimestampType):
            raise ValueError(f"event_time_column: '{self.event_time_column}' must be declared as timestamp")
        reserved = {"_ingested_at", "_source_file", "_batch_id", self.partition_column}
        clash = sorted(reserved & set(self.columns))
        if clash:
            raise ValueError(f"columns: {', '.join(clash)} is reserved for ingestion metadata")
        if any(k.lower() == "mergeschema" for k in self.options):
            raise ValueError("options: mergeSchema is not allowed")
        return self

    def raw_schema(self) -> T.StructType:
        """The declared columns as a Spark schema (every field nullable: bronze never rejects a row)."""
        return T.StructType(
            [T.StructField(n, c.spark_type(), True, {"comment": c.comment} if c.comment else {}) for n, c in self.columns.items()]
        )

    def landing_uri(self, settings: Settings) -> str:
        """The landing folder as an absolute path or URI."""
        if is_remote(self.landing_path) or Path(self.landing_path).is_absolute():
            return self.landing_path
        return join_path(str(settings.landing_root), self.landing_path)


# The kinds of source, chosen by the file's `kind` (a Literal on each model).
Source = Annotated[FileSource | KafkaSource, Field(discriminator="kind")]

_SOURCE_ADAPTER: TypeAdapter[Any] = TypeAdapter(Source)


def sources_dir(settings: Settings) -> Path:
    """The sources folder: ``settings.ingest.sources_dir``, else ``sources/`` beside the settings files."""
    if settings.ingest.sources_dir:
        return Path(settings.ingest.sources_dir).expanduser()
    from mlops_spark.config.loader import default_conf_dir

    return default_conf_dir() / "sources"


def list_sources(settings: Settings) -> list[str]:
    """Names of the defined sources (file stems), sorted."""
    folder = sources_dir(settings)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_source(name: str, settings: Settings) -> FileSource | KafkaSource:
    """Read and validate ``<sources_dir>/<name>.yaml``.

    Returns:
        A :class:`FileSource` or a :class:`KafkaSource`, chosen by the file's ``kind``.

    Raises:
        ConfigError: unknown source (the message lists the known ones), or a file that is
            not YAML or breaks the model; the message names the file and the field.
    """
    if not _NAME.match(name):
        raise ConfigError(f"'{name}' is not a source name (letters, digits, underscore)")
    path = sources_dir(settings) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_sources(settings)) or "none"
        raise ConfigError(f"unknown source '{name}': {path} not found (defined sources: {known})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a source must be a mapping with kind, columns, ...")
    if "name" in data and data["name"] != name:
        raise ConfigError(f"{path}: name: '{data['name']}' differs from the file name '{name}'")
    try:
        return _SOURCE_ADAPTER.validate_python({**data, "name": name})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    # Drop the union tag pydantic puts first in the location (`files.columns.x` -> `columns.x`).
    loc = [str(p) for p in err["loc"]]
    if loc and err["type"] != "union_tag_invalid" and loc[0] in ("files", "kafka"):
        loc = loc[1:]
    where = ".".join(loc) or "(top level)"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    if err["type"] == "missing":
        return f"{where}: required field is missing"
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return f"kind: {message}"
    return f"{where}: {message}"
