"""Kafka topics -> bronze Delta, exactly once, bad messages to quarantine with their raw bytes.

A :class:`KafkaSource` (``kind: kafka`` in ``conf/sources/<name>.yaml``) declares the topics,
the JSON value's columns and which are required. :func:`run_kafka` runs a Structured
Streaming query from the topics; each micro-batch is parsed once
(:func:`mlops_spark.ingest.kafka_parse.parse_messages`) and written to two Delta tables:
good rows to ``bronze.<table>``, bad ones to ``quarantine.<quarantine_table>``.

Exactly once: both writes carry Delta's idempotent-write options ``txnAppId`` (the
streaming query's id, stable across restarts because it lives in the checkpoint) and
``txnVersion`` (the micro-batch id). After a crash, Spark replays the last planned batch
with the same id and the same offsets; each table skips the write if it already
committed that batch, so a crash between the two writes neither duplicates nor loses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark.config.settings import Settings, join_path
from mlops_spark.errors import ConfigError, UsageError
from mlops_spark.ingest import kafka_parse as kp
from mlops_spark.ingest.kafka_spec import KafkaSource
from mlops_spark.log import fields, redact
from mlops_spark.spark import delta
from mlops_spark.spark.schemas import check_schema

log = logging.getLogger(__name__)

Mode = Literal["available-now", "continuous"]
MODES: tuple[str, ...] = ("available-now", "continuous")


@dataclass
class KafkaRunResult:
    """What one :func:`run_kafka` call did.

    Attributes:
        batches: micro-batches this run processed (a batch replayed after a crash counts even
            when Delta skipped its writes as already committed).
        rows_bronze: valid messages in those batches.
        rows_quarantined: rejected messages in those batches.
        source: the source's name.
        bronze_table / quarantine_table: qualified table names.
    """

    source: str
    bronze_table: str
    quarantine_table: str
    batches: int = 0
    rows_bronze: int = 0
    rows_quarantined: int = 0
    batch_ids: list[int] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        """Messages read: always ``rows_bronze + rows_quarantined`` (nothing is dropped)."""
        return self.rows_bronze + self.rows_quarantined

    def summary(self) -> dict[str, object]:
        """The counters as a dict (for logs and the CLI's JSON line)."""
        return {
            "source": self.source,
            "bronze_table": self.bronze_table,
            "quarantine_table": self.quarantine_table,
            "batches": self.batches,
            "rows_read": self.rows_read,
            "rows_written": self.rows_bronze,
            "rows_quarantined": self.rows_quarantined,
        }


def checkpoint_path(settings: Settings, source: KafkaSource) -> str:
    """``<checkpoint_root>/<source name>``: offsets and the query id of the source's stream."""
    return join_path(str(settings.checkpoint_root), source.name)


def reader_options(settings: Settings, source: KafkaSource) -> dict[str, str]:
    """Options of the Spark Kafka source (pure): bootstrap servers, topics, offsets, bounds."""
    options = {
        "kafka.bootstrap.servers": settings.kafka.bootstrap_servers,
        "subscribe": ",".join(source.topics),
        "startingOffsets": source.starting_offsets,
        # Lost offsets (retention passed while the job was down) must stop the job, not skip data.
        "failOnDataLoss": "true",
        "includeHeaders": "false",
    }
    if source.max_offsets_per_trigger is not None:
        options["maxOffsetsPerTrigger"] = str(source.max_offsets_per_trigger)
    options.update(settings.kafka.options)
    options.update(source.options)
    return options


def ensure_tables(spark: SparkSession, settings: Settings, source: KafkaSource) -> tuple[str, str]:
    """Create the bronze and quarantine tables if missing; check an existing one's schema.

    Returns:
        The storage locations of the bronze and quarantine tables.

    Raises:
        SchemaMismatchError: an existing table's columns differ from the declared ones.
    """
    bronze = settings.table("bronze", source.table)
    quarantine = settings.table("quarantine", str(source.quarantine_table))
    expected_bronze = kp.bronze_schema(source.value_schema(), source.partition_column)
    delta.create_table(
        spark,
        bronze,
        expected_bronze,
        partition_by=[source.partition_column],
        comment=f"Kafka source '{source.name}' (topics {', '.join(source.topics)}): valid JSON messages, one row per message",
    )
    delta.create_table(
        spark,
        quarantine,
        kp.QUARANTINE_SCHEMA,
        comment=f"Kafka source '{source.name}': rejected messages with their raw bytes and reason",
    )
    check_schema(spark.table(bronze), expected_bronze, f"{bronze} (source '{source.name}')")
    check_schema(spark.table(quarantine), kp.QUARANTINE_SCHEMA, quarantine)
    return _location(spark, bronze), _location(spark, quarantine)


def check_topics(spark: SparkSession, options: dict[str, str], topics: list[str]) -> None:
    """Fail fast when the brokers cannot be reached or a topic does not exist.

    Without this a stream on an unreachable broker retries forever, and one on a missing
    topic finishes "successfully" with nothing read. Uses the Kafka admin client on the
    JVM classpath with the source's ``kafka.*`` options (security settings included);
    ``kafka.default.api.timeout.ms`` (default 20 s) bounds the wait.

    Raises:
        ConfigError: brokers unreachable in time, or topics missing (named).
    """
    jvm = spark.sparkContext._jvm
    timeout_ms = int(options.get("kafka.default.api.timeout.ms", "20000"))
    props = jvm.java.util.Properties()  # type: ignore[union-attr]
    for key, value in options.items():
        if key.startswith("kafka."):
            props.setProperty(key.removeprefix("kafka."), value)
    props.setProperty("default.api.timeout.ms", str(timeout_ms))
    props.setProperty("request.timeout.ms", str(timeout_ms))
    servers = options["kafka.bootstrap.servers"]
    admin = jvm.org.apache.kafka.clients.admin.Admin.create(props)  # type: ignore[union-attr]
    try:
        names = admin.listTopics().names().get(timeout_ms, jvm.java.util.concurrent.TimeUnit.MILLISECONDS)  # type: ignore[union-attr]
        existing = {str(n) for n in names}
    except Py4JJavaError as exc:
        cause = str(exc.java_exception.toString()).splitlines()[0]
        raise ConfigError(f"kafka.bootstrap_servers: cannot list topics on {servers} within {timeout_ms} ms ({cause})") from None
    finally:
        admin.close()
    missing = [t for t in topics if t not in existing]
    if missing:
        raise ConfigError(f"topics: {', '.join(repr(t) for t in missing)} not found on {servers}")


def _location(spark: SparkSession, table: str) -> str:
    return str(spark.sql(f"DESCRIBE DETAIL {delta.quote_table(table)}").first()["location"])  # type: ignore[index]


class BatchWriter:
    """The foreachBatch function: parse once, write bronze and quarantine idempotently."""

    def __init__(self, settings: Settings, source: KafkaSource, locations: tuple[str, str], result: KafkaRunResult):
        self.source = source
        self.checkpoint = checkpoint_path(settings, source)
        self.bronze_path, self.quarantine_path = locations
        self.result = result
        self._app_id: str | None = None

    def app_id(self, spark: SparkSession) -> str:
        # The query id is written to <checkpoint>/metadata before the first batch runs and
        # survives restarts; a new checkpoint gets a new id, so its batch ids (from 0) are
        # not mistaken for ones the tables already saw.
        if self._app_id is None:
            text = spark.read.text(join_path(self.checkpoint, "metadata")).first()[0]  # type: ignore[index]
            self._app_id = f"mlops-spark:{self.source.name}:{json.loads(text)['id']}"
        return self._app_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        app_id = self.app_id(spark)
        src = self.source
        parsed = batch.transform(kp.parse_messages, src.value_schema(), src.required(), src.event_time_column)
        parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            counts = parsed.agg(
                F.count_if(F.col(kp.ERROR).isNull()).alias("good"), F.count_if(F.col(kp.ERROR).isNotNull()).alias("bad")
            ).first()
            good, bad = int(counts["good"]), int(counts["bad"])  # type: ignore[index]
            for n, rows, path in (
                (good, kp.bronze_rows(parsed, src.value_schema(), batch_id, src.partition_column), self.bronze_path),
                (bad, kp.quarantine_rows(parsed, src.name, batch_id), self.quarantine_path),
            ):
                if n == 0:
                    # A replay reads the same offsets, so it is empty too: no commit is needed
                    # to remember that this batch wrote nothing here.
                    continue
                rows.write.format("delta").mode("append").option("txnAppId", app_id).option("txnVersion", batch_id).save(path)
        finally:
            parsed.unpersist()
        self.result.batches += 1
        self.result.rows_bronze += good
        self.result.rows_quarantined += bad
        self.result.batch_ids.append(batch_id)
        log.info("kafka batch written", extra=fields(source=src.name, batch_id=batch_id, rows_bronze=good, rows_quarantined=bad))


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM/SIGINT while inside (main thread only), so a service stops cleanly."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_kafka(
    spark: SparkSession,
    settings: Settings,
    source: KafkaSource,
    mode: Mode = "available-now",
    timeout: float | None = None,
) -> KafkaRunResult:
    """Stream the source's topics into its bronze and quarantine tables.

    Args:
        spark: the session (from :func:`mlops_spark.spark.session.get_spark`).
        settings: supplies the Kafka bootstrap servers and the checkpoint root.
        source: the Kafka source definition.
        mode: ``available-now`` reads everything up to the offsets current at start, in batches of
            at most ``max_offsets_per_trigger``, then returns (scheduled jobs); ``continuous`` runs a
            processing-time trigger every ``trigger_interval`` until SIGTERM/SIGINT or ``timeout``.
        timeout: seconds after which a continuous run stops cleanly; ``None`` runs until signalled.

    Returns:
        Counts of what this run wrote (``rows_bronze + rows_quarantined`` = messages read).

    Raises:
        UsageError: unknown mode.
        ConfigError: the brokers cannot be reached, or a topic does not exist.
        SchemaMismatchError: an existing table does not have the declared schema.
        pyspark.errors.StreamingQueryException: the query failed (broker unreachable, lost offsets).
    """
    if mode not in MODES:
        raise UsageError(f"unknown Kafka ingestion mode '{mode}' (use one of: {', '.join(MODES)})")
    result = KafkaRunResult(source.name, settings.table("bronze", source.table), settings.table("quarantine", str(source.quarantine_table)))
    options = reader_options(settings, source)
    check_topics(spark, options, source.topics)
    locations = ensure_tables(spark, settings, source)
    log.info("kafka ingestion starting", extra=fields(source=source.name, mode=mode, options=redact(options)))
    stream = spark.readStream.format("kafka").options(**options).load()
    writer = (
        stream.writeStream.queryName(f"ingest_kafka_{source.name}")
        .option("checkpointLocation", checkpoint_path(settings, source))
        .foreachBatch(BatchWriter(settings, source, locations, result))
    )
    writer = writer.trigger(availableNow=True) if mode == "available-now" else writer.trigger(processingTime=source.trigger_interval)
    started = time.monotonic()
    with _stop_on_signals() as stop:
        query = writer.start()
        try:
            # Short waits so a signal or the timeout is noticed promptly.
            while query.isActive and not stop.is_set():
                if timeout is not None and time.monotonic() - started >= timeout:
                    break
                query.awaitTermination(1)
        finally:
            if query.isActive:
                query.stop()
    if query.exception() is not None:
        raise query.exception()  # type: ignore[misc]
    log.info(
        "kafka ingestion finished",
        extra=fields(
            source=source.name,
            mode=mode,
            batches=result.batches,
            rows_bronze=result.rows_bronze,
            rows_quarantined=result.rows_quarantined,
            seconds=round(time.monotonic() - started, 2),
        ),
    )
    return result
