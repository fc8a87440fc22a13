"""Pure transforms of the Kafka ingestion: raw Kafka records -> parsed rows with an error column.

Nothing here reads or writes; :func:`mlops_spark.ingest.kafka.run_kafka` calls these on
each micro-batch. Kept apart so unit tests can feed inline rows shaped like Kafka's.

Kafka source rows (input of :func:`parse_messages`): ``key`` binary, ``value`` binary,
``topic`` string, ``partition`` int, ``offset`` long, ``timestamp`` timestamp (plus
``timestampType`` and ``headers``, ignored).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

CORRUPT = "_corrupt_record"
ERROR = "_error"

_SIMPLE_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "int": T.IntegerType(),
    "integer": T.IntegerType(),
    "long": T.LongType(),
    "bigint": T.LongType(),
    "double": T.DoubleType(),
    "float": T.FloatType(),
    "boolean": T.BooleanType(),
    "timestamp": T.TimestampType(),
    "date": T.DateType(),
}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")

# Metadata columns kept next to the declared value columns (names start with "_" so
# they never collide with payload fields, which the source model forbids to start so).
KAFKA_META: tuple[T.StructField, ...] = (
    T.StructField("_kafka_topic", T.StringType(), False, {"comment": "Kafka topic the message was read from"}),
    T.StructField("_kafka_partition", T.IntegerType(), False, {"comment": "Kafka partition of the message"}),
    T.StructField("_kafka_offset", T.LongType(), False, {"comment": "offset of the message in its partition"}),
    T.StructField("_kafka_timestamp", T.TimestampType(), True, {"comment": "Kafka record timestamp (UTC)"}),
)
BRONZE_TAIL: tuple[T.StructField, ...] = (
    T.StructField("_kafka_key", T.StringType(), True, {"comment": "message key decoded as UTF-8 (null when absent)"}),
    *KAFKA_META,
    T.StructField("_ingested_at", T.TimestampType(), False, {"comment": "when the micro-batch wrote the row"}),
    T.StructField("_batch_id", T.LongType(), False, {"comment": "Structured Streaming micro-batch id"}),
)
# Names the parser uses internally or writes next to the payload: never payload columns.
RESERVED_COLUMNS: tuple[str, ...] = (
    "_kafka_key",
    "_raw_value",
    *(f.name for f in BRONZE_TAIL),
    "_error",
    "_source",
    "_event_date",
    "_parsed",
    "_corrupt_record",
)
QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("_source", T.StringType(), False, {"comment": "name of the source definition"}),
        T.StructField("_kafka_key", T.BinaryType(), True, {"comment": "raw message key bytes"}),
        T.StructField("_raw_value", T.BinaryType(), True, {"comment": "raw message value bytes, exactly as produced"}),
        *KAFKA_META,
        T.StructField(ERROR, T.StringType(), False, {"comment": "why the message was rejected"}),
        T.StructField("_ingested_at", T.TimestampType(), False, {"comment": "when the micro-batch wrote the row"}),
        T.StructField("_batch_id", T.LongType(), False, {"comment": "Structured Streaming micro-batch id"}),
    ]
)


def spark_type(name: str) -> T.DataType:
    """The Spark type of a declared column type (``string``, ``int``, ``decimal(10,2)``, ...).

    Raises:
        ValueError: the type is not one of the supported names.
    """
    key = name.strip().lower()
    if key in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[key]
    match = _DECIMAL.match(key)
    if match and 1 <= int(match.group(1)) <= 38 and int(match.group(2)) <= int(match.group(1)):
        return T.DecimalType(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"unsupported type '{name}' (use one of {', '.join(sorted(_SIMPLE_TYPES))} or decimal(p,s))")


def bronze_schema(value_schema: T.StructType, partition_column: str = "event_date") -> T.StructType:
    """The bronze table's schema: the declared value columns, the Kafka metadata columns, the date partition."""
    day = T.StructField(
        partition_column, T.DateType(), True, {"comment": "partition: UTC date of the event time column, else of the Kafka timestamp"}
    )
    return T.StructType([*value_schema.fields, *BRONZE_TAIL, day])


def _json_options() -> dict[str, str]:
    return {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}


def _error_text(text: Column, parsed: Column, value_schema: T.StructType, required: Sequence[str]) -> Column:
    """Why a message is bad, evaluated only for bad rows (it parses the value once per field)."""
    as_map = F.from_json(text, "map<string,string>")
    wrong = [
        F.when(
            F.from_json(text, T.StructType([f, T.StructField(CORRUPT, T.StringType())]), _json_options())[CORRUPT].isNotNull(),
            F.lit(f"{f.name} (expected {f.dataType.simpleString()})"),
        )
        for f in value_schema.fields
    ]
    missing = [F.when(as_map[name].isNull(), F.lit(name)) for name in required]
    wrong_text = F.concat_ws(", ", *wrong)
    missing_text = F.concat_ws(", ", *missing) if missing else F.lit("")
    details = F.concat_ws(
        "; ",
        F.when(wrong_text != "", F.concat(F.lit("wrong type: "), wrong_text)),
        F.when(missing_text != "", F.concat(F.lit("missing required field: "), missing_text)),
    )
    return (
        F.when(F.col("value").isNull(), F.lit("null value (tombstone): no JSON document"))
        .when(~F.is_valid_utf8(text), F.lit("value is not valid UTF-8"))
        .when(as_map.isNull(), F.lit("not a JSON object"))
        # A corrupt record with no field to blame (cannot happen with the checks above,
        # but the error column must never be empty for a rejected row).
        .when(details == "", F.concat(F.lit("malformed JSON: "), F.coalesce(parsed[CORRUPT], F.lit(""))))
        .otherwise(details)
    )


def parse_messages(
    raw: DataFrame,
    value_schema: T.StructType,
    required: Sequence[str],
    event_time: str | None = None,
) -> DataFrame:
    """Parse Kafka JSON values against ``value_schema`` and flag the bad ones.

    A message is bad when its value is null, not UTF-8, not a JSON object, has a field
    of the wrong type, or lacks a required field (absent or JSON ``null``). Fields not
    declared are ignored; numbers are accepted for string fields (as their text).

    Args:
        raw: Kafka source rows (``key``, ``value``, ``topic``, ``partition``, ``offset``, ``timestamp``).
        value_schema: declared value columns with their types.
        required: names of declared columns that must be present and non-null.
        event_time: declared timestamp column whose date partitions bronze (else the Kafka timestamp's).

    Returns:
        The declared columns, then ``_kafka_key`` (binary), ``_raw_value`` (binary), ``_kafka_topic``,
        ``_kafka_partition``, ``_kafka_offset``, ``_kafka_timestamp``, ``_event_date`` and ``_error``
        (null for good rows, the reason for bad ones).
    """
    text = F.col("value").cast("string")
    parsed = F.from_json(text, T.StructType([*value_schema.fields, T.StructField(CORRUPT, T.StringType())]), _json_options())
    bad = F.col("value").isNull() | ~F.is_valid_utf8(text) | F.col("_parsed").isNull() | F.col(f"_parsed.{CORRUPT}").isNotNull()
    for name in required:
        bad = bad | F.col(f"_parsed.`{name}`").isNull()
    day_source = F.col(f"_parsed.`{event_time}`") if event_time else F.lit(None).cast("timestamp")
    return (
        raw.withColumn("_parsed", parsed)
        .withColumn(ERROR, F.when(bad, _error_text(text, F.col("_parsed"), value_schema, required)))
        .select(
            *[F.col(f"_parsed.`{f.name}`").alias(f.name) for f in value_schema.fields],
            F.col("key").alias("_kafka_key"),
            F.col("value").alias("_raw_value"),
            F.col("topic").alias("_kafka_topic"),
            F.col("partition").alias("_kafka_partition"),
            F.col("offset").alias("_kafka_offset"),
            F.col("timestamp").alias("_kafka_timestamp"),
            F.to_date(F.coalesce(day_source, F.col("timestamp"))).alias("_event_date"),
            F.col(ERROR),
        )
    )


def bronze_rows(parsed: DataFrame, value_schema: T.StructType, batch_id: int, partition_column: str = "event_date") -> DataFrame:
    """The good rows of :func:`parse_messages` in the bronze schema (:func:`bronze_schema`)."""
    return parsed.where(F.col(ERROR).isNull()).select(
        *[F.col(f.name) for f in value_schema.fields],
        F.col("_kafka_key").cast("string").alias("_kafka_key"),
        *[F.col(f.name) for f in KAFKA_META],
        F.current_timestamp().alias("_ingested_at"),
        F.lit(batch_id).cast("long").alias("_batch_id"),
        F.col("_event_date").alias(partition_column),
    )


def quarantine_rows(parsed: DataFrame, source_name: str, batch_id: int) -> DataFrame:
    """The bad rows of :func:`parse_messages` in :data:`QUARANTINE_SCHEMA`: raw bytes, position, reason."""
    return parsed.where(F.col(ERROR).isNotNull()).select(
        F.lit(source_name).alias("_source"),
        F.col("_kafka_key"),
        F.col("_raw_value"),
        *[F.col(f.name) for f in KAFKA_META],
        F.col(ERROR),
        F.current_timestamp().alias("_ingested_at"),
        F.lit(batch_id).cast("long").alias("_batch_id"),
    )
