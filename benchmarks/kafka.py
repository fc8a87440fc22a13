"""Kafka -> Delta sustained throughput (records/s), availableNow, on a local single-node broker.

N synthetic transactions (``mlops_spark.datagen``) are produced as JSON messages, 0.1%
of them malformed, to a topic with two partitions (one per core) by Spark's Kafka sink
(not timed). Then each contender drains the same topic from the earliest offset with
a fresh checkpoint, in micro-batches of at most ``MAX_OFFSETS`` messages:

- ``project``: :func:`mlops_spark.ingest.kafka.run_kafka` -- JSON parsed against the
  declared schema, per-message reasons, bronze + quarantine Delta tables written with
  idempotent (exactly-once) writes;
- ``spark_kafka_to_parquet``: the topic's raw records (key, value bytes, position)
  written by the plain streaming Parquet sink, no parsing at all -- the floor;
- ``spark_kafka_json_to_delta``: ``from_json`` into the streaming Delta sink, no
  validation and no quarantine -- what a minimal parsing pipeline costs.

A 20k-message warm-up of every contender runs first (JIT, Kafka consumers, Python workers).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks import harness
from mlops_spark.datagen import generate_transactions
from mlops_spark.ingest.kafka import run_kafka
from mlops_spark.ingest.kafka_spec import KafkaSource
from mlops_spark.local.kafka_broker import start_broker

DEFAULT_ROWS = 1_000_000
WARMUP_ROWS = 20_000
MAX_OFFSETS = 500_000
PARTITIONS = 2

COLUMNS = {
    "transaction_id": {"type": "string", "required": True},
    "customer_id": {"type": "long"},
    "event_ts": {"type": "timestamp", "required": True},
    "amount": {"type": "double", "required": True},
    "quantity": {"type": "int"},
    "category": {"type": "string"},
    "country": {"type": "string"},
    "channel": {"type": "string"},
}


def _create_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        admin.close()


def produce(spark: SparkSession, bootstrap: str, topic: str, rows: int) -> None:
    """Write ``rows`` JSON transactions (0.1% malformed) to ``topic`` with Spark's Kafka sink."""
    _create_topic(bootstrap, topic)
    tx = generate_transactions(spark, rows, max(100, rows // 100), seed=7, start=dt.date(2024, 1, 1), days=365)
    value = F.to_json(F.struct(*[c for c in COLUMNS]))
    broken = F.concat(F.lit("{truncated "), F.col("transaction_id"))
    (
        tx.select(F.col("transaction_id").alias("key"), F.when(F.rand(11) < 0.001, broken).otherwise(value).alias("value"))
        .write.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("topic", topic)
        .option("kafka.linger.ms", "20")
        .option("kafka.batch.size", "262144")
        .save()
    )


def _stream(spark: SparkSession, bootstrap: str, topic: str) -> DataFrame:
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", str(MAX_OFFSETS))
        .load()
    )


def to_parquet(spark: SparkSession, bootstrap: str, topic: str, out: str) -> None:
    """Baseline: raw Kafka records to Parquet with the streaming file sink (availableNow)."""
    raw = _stream(spark, bootstrap, topic).select("key", "value", "topic", "partition", "offset", "timestamp")
    query = raw.writeStream.format("parquet").option("checkpointLocation", out + "_cp").trigger(availableNow=True).start(out)
    query.awaitTermination()


def json_to_delta(spark: SparkSession, bootstrap: str, topic: str, out: str, source: KafkaSource) -> None:
    """Baseline: ``from_json`` into the streaming Delta sink, nothing validated (availableNow)."""
    parsed = (
        _stream(spark, bootstrap, topic)
        .select(F.from_json(F.col("value").cast("string"), source.value_schema()).alias("v"), "topic", "partition", "offset", "timestamp")
        .select("v.*", "topic", "partition", "offset", "timestamp")
    )
    query = parsed.writeStream.format("delta").option("checkpointLocation", out + "_cp").trigger(availableNow=True).start(out)
    query.awaitTermination()


def run(rows: int | None = None) -> dict[str, Any]:
    """Produce ``rows`` (default 1M) messages, then time each contender draining the topic."""
    rows = rows or DEFAULT_ROWS
    with harness.bench_tmpdir("mlops-bench-kafka-") as tmp:
        broker = start_broker(log_dir=tmp / "broker", heap="512m", jit="tiered")
        spark = harness.bench_spark(tmp, app_name="bench-kafka")
        try:
            settings = harness.bench_settings(tmp).model_copy(
                update={"kafka": harness.bench_settings(tmp).kafka.model_copy(update={"bootstrap_servers": broker.bootstrap_servers})}
            )
            bootstrap = broker.bootstrap_servers
            produce(spark, bootstrap, "warmup", WARMUP_ROWS)
            produce(spark, bootstrap, "transactions", rows)

            def source(name: str, topic: str) -> KafkaSource:
                return KafkaSource(
                    kind="kafka",
                    name=name,
                    topics=[topic],
                    table=name,
                    columns=COLUMNS,
                    event_time_column="event_ts",
                    max_offsets_per_trigger=MAX_OFFSETS,
                )

            out = str(tmp / "out")
            run_kafka(spark, settings, source("warm_project", "warmup"), "available-now")
            to_parquet(spark, bootstrap, "warmup", out + "/warm_parquet")
            json_to_delta(spark, bootstrap, "warmup", out + "/warm_delta", source("x", "warmup"))

            result, project_s = harness.timed(lambda: run_kafka(spark, settings, source("bench", "transactions"), "available-now"))
            seconds = {
                "project": project_s,
                "spark_kafka_to_parquet": harness.timed(lambda: to_parquet(spark, bootstrap, "transactions", out + "/parquet"))[1],
                "spark_kafka_json_to_delta": harness.timed(
                    lambda: json_to_delta(spark, bootstrap, "transactions", out + "/delta", source("x", "transactions"))
                )[1],
            }
            counts = {
                "project": result.rows_read,
                "bronze+quarantine": spark.table("bronze.bench").count() + spark.table("quarantine.bench_messages").count(),
                "spark_kafka_to_parquet": spark.read.parquet(out + "/parquet").count(),
                "spark_kafka_json_to_delta": spark.read.format("delta").load(out + "/delta").count(),
            }
            if set(counts.values()) != {rows}:
                raise RuntimeError(f"expected {rows} messages in every output, found {counts}")
            res = harness.result("kafka", rows, seconds, harness.peak_rss_mb(spark))
            quarantined = result.rows_quarantined
        finally:
            spark.stop()
            broker.stop()
    harness.print_table(res, {who: {"records/s": rows / s} for who, s in res["seconds"].items()})
    print(f"project: {rows - quarantined:,} rows to bronze, {quarantined:,} to quarantine")
    return res
