"""Parsing Kafka JSON values: every message is either a typed bronze row or a quarantine row
with its reason, checked case by case and against a plain-Python reference on random messages."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark.errors import ConfigError
from mlops_spark.ingest import kafka_parse as kp
from mlops_spark.ingest.kafka_spec import KafkaSource

KAFKA_SCHEMA = T.StructType(
    [
        T.StructField("key", T.BinaryType()),
        T.StructField("value", T.BinaryType()),
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
        T.StructField("timestamp", T.TimestampType()),
    ]
)
TS = dt.datetime(2024, 3, 1, 12, 0, 0)

SOURCE = KafkaSource(
    kind="kafka",
    name="orders",
    topics=["orders"],
    table="orders",
    event_time_column="event_ts",
    columns={
        "order_id": {"type": "string", "required": True},
        "qty": {"type": "int", "required": True},
        "amount": "double",
        "customer_id": "long",
        "event_ts": "timestamp",
    },
)


def kafka_rows(spark, values: list[bytes | None]):
    rows = [(b"k%d" % i, v, "orders", 0, i, TS) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def parse(spark, values: list[bytes | None], source: KafkaSource = SOURCE):
    return kafka_rows(spark, values).transform(kp.parse_messages, source.value_schema(), source.required(), source.event_time_column)


def test_valid_message_becomes_typed_row_with_kafka_metadata(spark):
    value = b'{"order_id": "A1", "qty": 3, "amount": 2.5, "customer_id": 7, "event_ts": "2024-02-29T23:30:00Z", "extra": 1}'
    got = parse(spark, [value]).drop("_kafka_key")
    expected = spark.createDataFrame(
        [("A1", 3, 2.5, 7, dt.datetime(2024, 2, 29, 23, 30), value, "orders", 0, 0, TS, dt.date(2024, 2, 29), None)],
        "order_id string, qty int, amount double, customer_id bigint, event_ts timestamp, _raw_value binary, "
        "_kafka_topic string, _kafka_partition int, _kafka_offset bigint, _kafka_timestamp timestamp, _event_date date, _error string",
    )
    assertDataFrameEqual(got, expected)


MALFORMED = [
    (b"not json at all", "not a JSON object"),
    (b"", "not a JSON object"),
    (b'[{"order_id": "A1", "qty": 1}]', "not a JSON object"),
    (b"42", "not a JSON object"),
    (b"null", "not a JSON object"),
    (None, "null value (tombstone): no JSON document"),
    (b'{"order_id": "A\xff", "qty": 1}', "value is not valid UTF-8"),
    (b'{"order_id": "A1", "qty": "three"}', "wrong type: qty (expected int)"),
    (b'{"order_id": "A1", "qty": 1.5}', "wrong type: qty (expected int)"),
    (b'{"order_id": "A1", "qty": 1, "event_ts": "yesterday"}', "wrong type: event_ts (expected timestamp)"),
    (
        b'{"qty": 1, "amount": "x", "customer_id": true}',
        "wrong type: amount (expected double), customer_id (expected bigint); missing required field: order_id",
    ),
    (b'{"order_id": "A1"}', "missing required field: qty"),
    (b'{"order_id": null, "qty": null}', "missing required field: order_id, qty"),
]


def test_each_kind_of_malformed_message_gets_its_reason_and_keeps_raw_bytes(spark):
    got = parse(spark, [v for v, _ in MALFORMED]).select("_raw_value", "_kafka_offset", "_error")
    expected = spark.createDataFrame(
        [(v, i, reason) for i, (v, reason) in enumerate(MALFORMED)], "_raw_value binary, _kafka_offset bigint, _error string"
    )
    assertDataFrameEqual(got, expected)


def test_bronze_and_quarantine_rows_partition_the_batch(spark):
    values = [b'{"order_id": "A", "qty": 1}', b"oops", b'{"order_id": "B", "qty": 2}', None]
    parsed = parse(spark, values)
    bronze = kp.bronze_rows(parsed, SOURCE.value_schema(), batch_id=7)
    quarantine = kp.quarantine_rows(parsed, "orders", batch_id=7)
    assert bronze.schema.simpleString() == kp.bronze_schema(SOURCE.value_schema()).simpleString()
    assert [f.name for f in quarantine.schema] == [f.name for f in kp.QUARANTINE_SCHEMA]
    assertDataFrameEqual(
        bronze.select("order_id", "_kafka_key", "_kafka_offset", "_batch_id", "event_date"),
        spark.createDataFrame(
            [("A", "k0", 0, 7, TS.date()), ("B", "k2", 2, 7, TS.date())],
            "order_id string, _kafka_key string, _kafka_offset bigint, _batch_id bigint, event_date date",
        ),
    )
    assertDataFrameEqual(
        quarantine.select("_source", "_kafka_key", "_raw_value", "_kafka_offset", "_error"),
        spark.createDataFrame(
            [("orders", b"k1", b"oops", 1, "not a JSON object"), ("orders", b"k3", None, 3, "null value (tombstone): no JSON document")],
            "_source string, _kafka_key binary, _raw_value binary, _kafka_offset bigint, _error string",
        ),
    )


# --- plain-Python reference ---------------------------------------------------------

REF_COLUMNS = {"name": ("string", True), "n": ("int", True), "big": ("long", False), "x": ("double", False)}
REF_SOURCE = KafkaSource(
    kind="kafka",
    name="ref",
    topics=["t"],
    table="ref",
    columns={k: {"type": t, "required": r} for k, (t, r) in REF_COLUMNS.items()},
)
SPARK_NAMES = {"string": "string", "int": "int", "long": "bigint", "double": "double"}


def _fits(value: object, kind: str) -> bool:
    """Does a JSON value (not null) convert to the declared type, by Spark's JSON rules?"""
    if kind == "string":
        return True  # numbers, booleans, objects are kept as their JSON text
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int) and -(2**31) <= value < 2**31
    if kind == "long":
        return isinstance(value, int) and -(2**63) <= value < 2**63
    return isinstance(value, (int, float))  # double


def reference(value: bytes | None) -> tuple[str | None, tuple]:
    """(error, typed values) for one message, computed with json.loads and loops."""
    if value is None:
        return "null value (tombstone): no JSON document", (None,) * 4
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "value is not valid UTF-8", (None,) * 4
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return "not a JSON object", (None,) * 4
    wrong = [f"{k} (expected {SPARK_NAMES[t]})" for k, (t, _) in REF_COLUMNS.items() if doc.get(k) is not None and not _fits(doc[k], t)]
    missing = [k for k, (_, req) in REF_COLUMNS.items() if req and doc.get(k) is None]
    parts = ([f"wrong type: {', '.join(wrong)}"] if wrong else []) + ([f"missing required field: {', '.join(missing)}"] if missing else [])
    if parts:
        return "; ".join(parts), (None,) * 4

    def typed(k: str, t: str) -> object:
        v = doc.get(k)
        if v is None:
            return None
        if t == "string":
            return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        return float(v) if t == "double" else v

    return None, tuple(typed(k, t) for k, (t, _) in REF_COLUMNS.items())


def random_messages(rng: random.Random, n: int) -> list[bytes | None]:
    pool = ["abc", "3", 3, -7, 2**31, 2**40, 1.5, 0.0, True, None, {"x": 1}, [1, 2]]
    out: list[bytes | None] = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.04:
            out.append(None)
        elif roll < 0.08:
            out.append(rng.choice([b"{oops", b"[1, 2]", b"7", b'"text"', b"\xff\xfe{}"]))
        else:
            doc = {k: rng.choice(pool) for k in REF_COLUMNS if rng.random() < 0.9}
            if rng.random() < 0.5:  # mostly well-typed rows, so good rows are well represented
                doc.update({"name": f"n{rng.randrange(99)}", "n": rng.randrange(-5, 5), "x": rng.uniform(-1, 1)})
            out.append(json.dumps(doc).encode())
    return out


def test_classification_and_values_match_python_reference_on_random_messages(spark):
    values = random_messages(random.Random(20240301), 400)
    got = (
        kafka_rows(spark, values)
        .transform(kp.parse_messages, REF_SOURCE.value_schema(), REF_SOURCE.required())
        # Bad rows keep only their raw bytes (quarantine), so typed values are compared for good rows.
        .select("_kafka_offset", "_error", *[F.when(F.col("_error").isNull(), F.col(c)).alias(c) for c in REF_COLUMNS])
    )
    rows = []
    for offset, value in enumerate(values):
        error, typed = reference(value)
        rows.append((offset, error, *typed))
    expected = spark.createDataFrame(rows, "_kafka_offset bigint, _error string, name string, n int, big bigint, x double")
    assert 0 < expected.where(F.col("_error").isNull()).count() < len(values)
    assertDataFrameEqual(got, expected)


# --- the source model ---------------------------------------------------------------


def _load(spark_free_data: dict, tmp_path, settings):
    import yaml

    from mlops_spark.ingest.sources import load_source

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spark_free_data))
    return load_source("s", settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"sources_dir": str(tmp_path)})}))


BASE = {"kind": "kafka", "topics": ["t"], "table": "t", "columns": {"id": {"type": "string", "required": True}}}


def test_kafka_kind_loads_through_the_source_union(tmp_path, settings):
    source = _load(BASE, tmp_path, settings)
    assert isinstance(source, KafkaSource)
    assert (source.name, source.quarantine_table, source.required()) == ("s", "t_messages", ["id"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"columns": {"id": "varchar"}}, "columns.id.type: unsupported type 'varchar'"),
        ({"columns": {"_kafka_offset": "long"}}, "columns: _kafka_offset is reserved for ingestion metadata"),
        ({"topics": []}, "topics: List should have at least 1 item"),
        ({"event_time_column": "id"}, "event_time_column: 'id' must name a declared timestamp column"),
        ({"trigger_interval": "soon"}, "trigger_interval: 'soon' is not an interval"),
        ({"max_offsets_per_trigger": 0}, "max_offsets_per_trigger: Input should be greater than or equal to 1"),
    ],
)
def test_bad_kafka_source_is_a_config_error_naming_the_field(tmp_path, settings, change, message):
    with pytest.raises(ConfigError, match="^" + str(tmp_path / "s.yaml").replace(".", r"\.") + ": .*") as err:
        _load({**BASE, **change}, tmp_path, settings)
    assert message in str(err.value)


def test_shipped_transactions_stream_definition_loads(settings):
    from mlops_spark.ingest.sources import load_source
    from tests.support import REPO_ROOT

    folder = str(REPO_ROOT / "conf" / "sources")
    shipped = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"sources_dir": folder})})
    source = load_source("transactions_stream", shipped)
    assert isinstance(source, KafkaSource)
    assert (source.table, source.quarantine_table, source.required()) == (
        "transactions_stream",
        "transactions_stream_messages",
        ["transaction_id", "event_ts", "amount"],
    )
