"""The ``kind: kafka`` source definition (``conf/sources/<name>.yaml``).

Example ``conf/sources/orders_stream.yaml``::

    kind: kafka
    topics: [orders]
    table: orders_stream                  # bronze.orders_stream
    quarantine_table: orders_stream_rejects   # default <table>_messages
    event_time_column: event_ts           # its UTC date partitions bronze
    columns:
      order_id: {type: string, required: true}
      customer_id: {type: long, required: true}
      event_ts: {type: timestamp, required: true}
      amount: double
    trigger_interval: 10 seconds
    max_offsets_per_trigger: 100000

Kept apart from the streaming code so :mod:`mlops_spark.ingest.sources` can put the model
in its discriminated union without importing Structured Streaming machinery.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pyspark.sql import types as T

from mlops_spark.config.base import Section
from mlops_spark.ingest.kafka_parse import RESERVED_COLUMNS, spark_type

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INTERVAL = re.compile(r"^\d+(\.\d+)?\s*(millisecond|second|minute|hour)s?$")


class KafkaColumn(Section):
    """One declared field of the JSON message value."""

    type: str = "string"
    """Spark type: string, int, long, double, float, boolean, timestamp, date or decimal(p,s).
    Timestamps accept ISO-8601 text or epoch seconds; numbers are accepted for string fields."""

    required: bool = False
    """A message without this field (or with JSON ``null`` in it) goes to quarantine."""

    comment: str | None = None
    """Column comment in the bronze table."""

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        spark_type(value)
        return value


class KafkaSource(Section):
    """A Kafka source: topics of JSON messages landed in one bronze table."""

    kind: Literal["kafka"]
    """Topics of JSON messages."""

    name: str
    """Source name: the file name ``<name>.yaml`` (set by the loader); names the checkpoint
    folder ``<checkpoint_root>/<name>``."""

    topics: list[str] = Field(min_length=1)
    """Topics to subscribe to; all carry the same JSON value schema."""

    columns: dict[str, KafkaColumn]
    """Declared fields of the JSON value, in bronze column order: name -> type (a type name,
    or a mapping with ``type``, ``required``, ``comment``). Undeclared fields are ignored."""

    table: str
    """Bronze table name (in the bronze database) for valid messages."""

    quarantine_table: str | None = None
    """Table in the quarantine database for rejected messages; default ``<table>_messages``."""

    event_time_column: str | None = None
    """Declared timestamp column whose UTC date is the partition column; default the Kafka timestamp."""

    partition_column: str = "event_date"
    """Name of the bronze partition column (a date)."""

    starting_offsets: Literal["earliest", "latest"] = "earliest"
    """Where a new checkpoint starts reading; later runs resume from the checkpoint."""

    trigger_interval: str = "30 seconds"
    """Processing-time trigger of continuous mode (``10 seconds``, ``1 minute``)."""

    max_offsets_per_trigger: int | None = Field(default=500_000, ge=1)
    """Upper bound of messages per micro-batch (both modes), which bounds a batch's memory;
    ``None``: no bound (availableNow then reads the whole backlog in one batch)."""

    options: dict[str, str] = Field(default_factory=dict)
    """Extra Spark Kafka source options for this source (``minPartitions``, ``kafka.security.protocol``, ...)."""

    @field_validator("columns", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `name: long` is shorthand for `name: {type: long}`, as in file sources.
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("table", "quarantine_table", "name", "partition_column")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not _IDENT.match(value):
            raise ValueError(f"'{value}' is not an identifier (letters, digits, underscore)")
        return value

    @field_validator("trigger_interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        if not _INTERVAL.match(value.strip()):
            raise ValueError(f"'{value}' is not an interval like '10 seconds' or '1 minute'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSource:
        if not self.columns:
            raise ValueError("columns: declare at least one column")
        bad = [n for n in self.columns if not _IDENT.match(n)]
        if bad:
            raise ValueError(f"columns: '{bad[0]}' is not a column name (letters, digits, underscore)")
        clash = sorted((set(RESERVED_COLUMNS) | {self.partition_column}) & set(self.columns))
        if clash:
            raise ValueError(f"columns: {', '.join(clash)} is reserved for ingestion metadata")
        if self.event_time_column is not None:
            col = self.columns.get(self.event_time_column)
            if col is None or spark_type(col.type) != T.TimestampType():
                raise ValueError(f"event_time_column: '{self.event_time_column}' must name a declared timestamp column")
        self.quarantine_table = self.quarantine_table or f"{self.table}_messages"
        return self

    def value_schema(self) -> T.StructType:
        """The declared columns as a Spark schema (all nullable: requiredness is checked per message)."""
        return T.StructType(
            [T.StructField(n, spark_type(c.type), True, {"comment": c.comment} if c.comment else {}) for n, c in self.columns.items()]
        )

    def required(self) -> list[str]:
        """Names of the required columns, in declaration order."""
        return [n for n, c in self.columns.items() if c.required]
