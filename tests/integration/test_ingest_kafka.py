"""Kafka -> bronze Delta against a real broker: every produced message lands exactly once,
in bronze or in quarantine with its raw bytes and reason, across re-runs and a SIGKILL."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark.config import Settings
from mlops_spark.errors import ConfigError, SchemaMismatchError, UsageError
from mlops_spark.ingest.kafka import BatchWriter, KafkaRunResult, ensure_tables, run_kafka
from mlops_spark.ingest.kafka_spec import KafkaSource
from mlops_spark.spark import delta
from tests.fixtures.kafka import Produced, create_topic, produce
from tests.servers import ManagedProcess, free_port, wait_until
from tests.support import REPO_ROOT

COLUMNS = {
    "order_id": {"type": "string", "required": True},
    "qty": {"type": "int", "required": True},
    "amount": "double",
    "event_ts": "timestamp",
}


def order(i: int) -> bytes:
    return json.dumps({"order_id": f"o{i}", "qty": i % 7, "amount": i / 4, "event_ts": f"2024-03-{1 + i % 3:02d}T10:00:00Z"}).encode()


BAD = [b"{not json", b'{"order_id": "x", "qty": "many"}', b'{"qty": 1}']
BAD_REASONS = ["not a JSON object", "wrong type: qty (expected int)", "missing required field: order_id"]


def source_for(name: str, topics: list[str], **kw: object) -> KafkaSource:
    return KafkaSource(kind="kafka", name=name, topics=topics, table=name, columns=COLUMNS, event_time_column="event_ts", **kw)


def with_broker(settings: Settings, bootstrap: str) -> Settings:
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})})


def positions(messages: list[Produced]) -> list[tuple[str, int, int]]:
    return [(m.topic, m.partition, m.offset) for m in messages]


def expected_bronze(spark, messages: list[Produced]):
    rows = [
        (json.loads(m.value)["order_id"], m.key.decode() if m.key else None, m.topic, m.partition, m.offset)  # type: ignore[arg-type]
        for m in messages
    ]
    return spark.createDataFrame(
        rows, "order_id string, _kafka_key string, _kafka_topic string, _kafka_partition int, _kafka_offset bigint"
    )


BRONZE_COLS = ["order_id", "_kafka_key", "_kafka_topic", "_kafka_partition", "_kafka_offset"]


def test_available_now_ingests_every_produced_message_once(spark, settings, kafka_broker, unique_name):
    create_topic(kafka_broker, unique_name, partitions=2)
    produced = produce(kafka_broker, unique_name, [(f"k{i}".encode(), order(i)) for i in range(60)])
    source = source_for(unique_name, [unique_name], max_offsets_per_trigger=25)

    result = run_kafka(spark, with_broker(settings, kafka_broker), source, "available-now")

    bronze = spark.table(f"bronze.{unique_name}")
    assertDataFrameEqual(bronze.select(*BRONZE_COLS), expected_bronze(spark, produced))
    # 60 messages at most 25 per trigger: the backlog is split into several batches.
    assert (result.rows_bronze, result.rows_quarantined) == (60, 0) and result.batches >= 3
    assert bronze.select("_batch_id").distinct().count() == result.batches


def test_rerun_with_nothing_new_adds_nothing(spark, settings, kafka_broker, unique_name):
    create_topic(kafka_broker, unique_name)
    produce(kafka_broker, unique_name, [(None, order(i)) for i in range(20)] + [(None, BAD[0])])
    source, s = source_for(unique_name, [unique_name]), with_broker(settings, kafka_broker)
    run_kafka(spark, s, source, "available-now")
    versions = (delta.current_version(spark, f"bronze.{unique_name}"), delta.current_version(spark, f"quarantine.{unique_name}_messages"))
    before = spark.table(f"bronze.{unique_name}").collect()

    again = run_kafka(spark, s, source, "available-now")

    assert again.rows_read == 0
    after = (delta.current_version(spark, f"bronze.{unique_name}"), delta.current_version(spark, f"quarantine.{unique_name}_messages"))
    assert after == versions
    assertDataFrameEqual(spark.table(f"bronze.{unique_name}"), before)


def test_malformed_messages_land_in_quarantine_with_raw_bytes_and_reason(spark, settings, kafka_broker, unique_name):
    create_topic(kafka_broker, unique_name)
    good = produce(kafka_broker, unique_name, [(None, order(i)) for i in range(5)])
    bad = produce(kafka_broker, unique_name, [(b"bad-key", v) for v in BAD])
    source = source_for(unique_name, [unique_name], quarantine_table=f"{unique_name}_rejects")

    result = run_kafka(spark, with_broker(settings, kafka_broker), source, "available-now")

    quarantine = spark.table(f"quarantine.{unique_name}_rejects")
    expected = spark.createDataFrame(
        [(unique_name, b"bad-key", m.value, m.topic, m.partition, m.offset, reason) for m, reason in zip(bad, BAD_REASONS, strict=True)],
        "_source string, _kafka_key binary, _raw_value binary, _kafka_topic string, _kafka_partition int, _kafka_offset bigint, "
        "_error string",
    )
    assertDataFrameEqual(quarantine.drop("_kafka_timestamp", "_ingested_at", "_batch_id"), expected)
    assertDataFrameEqual(spark.table(f"bronze.{unique_name}").select(*BRONZE_COLS), expected_bronze(spark, good))
    assert (result.rows_bronze, result.rows_quarantined) == (len(good), len(bad))


def test_multiple_topics_land_in_one_bronze_table(spark, settings, kafka_broker, unique_name):
    topics = [f"{unique_name}_a", f"{unique_name}_b"]
    for t in topics:
        create_topic(kafka_broker, t)
    produced = produce(kafka_broker, topics[0], [(None, order(i)) for i in range(4)])
    produced += produce(kafka_broker, topics[1], [(None, order(i)) for i in range(100, 103)])

    run_kafka(spark, with_broker(settings, kafka_broker), source_for(unique_name, topics), "available-now")

    assertDataFrameEqual(spark.table(f"bronze.{unique_name}").select(*BRONZE_COLS), expected_bronze(spark, produced))


def test_batch_replayed_after_a_crash_between_its_two_writes_lands_once(spark, settings, unique_name, tmp_path):
    source = source_for(unique_name, ["unused"])
    locations = ensure_tables(spark, settings, source)
    checkpoint = Path(str(settings.checkpoint_root)) / unique_name
    checkpoint.mkdir(parents=True)
    (checkpoint / "metadata").write_text(json.dumps({"id": "5a3c1f4e-0000-4000-8000-000000000001"}))
    batch = spark.createDataFrame(
        [(None, order(1), "t", 0, 10, None), (None, order(2), "t", 0, 11, None), (None, BAD[0], "t", 0, 12, None)],
        "key binary, value binary, topic string, partition int, offset bigint, timestamp timestamp",
    )
    not_a_table = tmp_path / "plain-file"
    not_a_table.write_text("the quarantine write fails here, after bronze committed")
    crashing = BatchWriter(settings, source, (locations[0], str(not_a_table)), KafkaRunResult(unique_name, "b", "q"))
    with pytest.raises(Exception):  # noqa: B017 - any failure of the second write plays the crash
        crashing(batch, 0)
    assert spark.table(f"bronze.{unique_name}").count() == 2

    writer = BatchWriter(settings, source, locations, KafkaRunResult(unique_name, "b", "q"))
    writer(batch, 0)  # the replay after restart
    writer(batch, 0)  # and once more: still skipped

    assert sorted(r.order_id for r in spark.table(f"bronze.{unique_name}").collect()) == ["o1", "o2"]
    assert [r._kafka_offset for r in spark.table(f"quarantine.{unique_name}_messages").collect()] == [12]


def test_existing_bronze_table_with_other_columns_is_a_schema_error(spark, settings, unique_name):
    ensure_tables(spark, settings, source_for(unique_name, ["t"]))
    changed = KafkaSource(kind="kafka", name=unique_name, topics=["t"], table=unique_name, columns={"order_id": "long"})
    with pytest.raises(SchemaMismatchError, match=rf"^bronze\.{unique_name} .*column order_id is string, expected bigint"):
        ensure_tables(spark, settings, changed)


def test_unknown_mode_is_a_usage_error(spark, settings, unique_name):
    with pytest.raises(UsageError, match="unknown Kafka ingestion mode 'sometimes'"):
        run_kafka(spark, settings, source_for(unique_name, ["t"]), "sometimes")  # type: ignore[arg-type]


def test_missing_topic_is_a_config_error_before_any_table_is_created(spark, settings, kafka_broker, unique_name):
    create_topic(kafka_broker, f"{unique_name}_here")
    source = source_for(unique_name, [f"{unique_name}_here", f"{unique_name}_gone"])
    with pytest.raises(ConfigError, match=rf"^topics: '{unique_name}_gone' not found on {kafka_broker}$"):
        run_kafka(spark, with_broker(settings, kafka_broker), source, "available-now")
    assert not delta.table_exists(spark, f"bronze.{unique_name}")


def test_unreachable_broker_is_a_config_error(spark, settings, unique_name):
    nowhere = f"127.0.0.1:{free_port()}"
    source = source_for(unique_name, ["t"], options={"kafka.default.api.timeout.ms": "3000"})
    with pytest.raises(ConfigError, match=rf"^kafka.bootstrap_servers: cannot list topics on {nowhere} within 3000 ms"):
        run_kafka(spark, with_broker(settings, nowhere), source, "available-now")


# --- exactly once across a SIGKILL --------------------------------------------------


def _cli_job(name: str, conf: Path, source: str, mode: str, logs: Path) -> ManagedProcess:
    """``mlops-spark ingest --source NAME --mode MODE`` in its own process group, as a scheduler would run it."""
    cmd = [
        sys.executable,
        "-m",
        "mlops_spark.cli",
        "ingest",
        "--env",
        "local",
        "--conf-dir",
        str(REPO_ROOT / "conf"),
        "--conf",
        str(conf),
        "--source",
        source,
        "--mode",
        mode,
    ]
    return ManagedProcess(name, cmd, logs, cwd=REPO_ROOT, env={"PYSPARK_PYTHON": sys.executable})


def _job_conf(tmp_path: Path, bootstrap: str, source: KafkaSource) -> Path:
    """A settings file for the child: its own lake (and Derby metastore), the broker, a sources folder."""
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / f"{source.name}.yaml").write_text(yaml.safe_dump(source.model_dump(exclude={"name"})))
    conf = tmp_path / "job.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "lake_root": str(tmp_path / "lake"),
                "spark": {
                    "master": "local[2]",
                    "ui_enabled": False,
                    "shuffle_partitions": 2,
                    "driver_memory": "1g",
                    "conf": {"spark.ui.showConsoleProgress": "false"},
                },
                "kafka": {"bootstrap_servers": bootstrap},
                "ingest": {"sources_dir": str(sources)},
            }
        )
    )
    return conf


def _commits(table_path: Path) -> list[list[dict]]:
    """The actions of every commit in a Delta table's log (read as files: cheap, no Spark job)."""
    log = table_path / "_delta_log"
    files = sorted(log.glob("*.json")) if log.is_dir() else []
    return [[json.loads(line) for line in p.read_text().splitlines() if line.strip()] for p in files]


def _committed_batches(table_path: Path) -> int:
    """Streaming batches committed to a Delta table: commits carrying an idempotent-write txn."""
    return sum(any("txn" in action for action in commit) for commit in _commits(table_path))


def _committed_rows(table_path: Path) -> int:
    """Rows appended by all commits, from the commits' operation metrics."""
    infos = [a["commitInfo"] for commit in _commits(table_path) for a in commit if "commitInfo" in a]
    return sum(int(info.get("operationMetrics", {}).get("numOutputRows", 0)) for info in infos)


@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_lands_every_message_exactly_once(spark, kafka_broker, unique_name, tmp_path):
    topic = unique_name
    create_topic(kafka_broker, topic, partitions=2)
    lake = tmp_path / "lake"
    source = source_for(unique_name, [topic], trigger_interval="1 second", max_offsets_per_trigger=30)

    def batch(start: int, n: int) -> list[tuple[bytes | None, bytes | None]]:
        # Every tenth message is malformed, so both tables take part in every batch.
        return [(f"k{i}".encode(), BAD[i % 3] if i % 10 == 9 else order(i)) for i in range(start, start + n)]

    produced = produce(kafka_broker, topic, batch(0, 60))
    conf = _job_conf(tmp_path, kafka_broker, source)
    job = _cli_job("kafka-continuous", conf, unique_name, "continuous", tmp_path)
    bronze_path = lake / "bronze" / unique_name
    try:
        wait_until(lambda: _committed_batches(bronze_path) >= 1, 600, "first committed micro-batch", job)
        produced += produce(kafka_broker, topic, batch(60, 60))
        time.sleep(1.5)  # let the next micro-batch start, then crash it
        job.kill(signal.SIGKILL)
        job.popen.wait(30)
    finally:
        job.stop()
    committed_before_restart = _committed_rows(bronze_path)
    produced += produce(kafka_broker, topic, batch(120, 30))

    restart = _cli_job("kafka-restart", conf, unique_name, "available-now", tmp_path)
    try:
        wait_until(lambda: restart.popen.poll() is not None, 600, "available-now restart to finish", None)
    finally:
        restart.stop()
    assert restart.popen.returncode == 0, restart.tail()

    good = [m for m in produced if m.value not in BAD]
    bad = [m for m in produced if m.value in BAD]
    assert 0 < committed_before_restart < len(good)
    bronze = spark.read.format("delta").load(str(bronze_path))
    quarantine = spark.read.format("delta").load(str(lake / "quarantine" / f"{unique_name}_messages"))
    assert bronze.groupBy("_kafka_topic", "_kafka_partition", "_kafka_offset").count().where(F.col("count") > 1).count() == 0
    assertDataFrameEqual(bronze.select(*BRONZE_COLS), expected_bronze(spark, good))
    assertDataFrameEqual(
        quarantine.select("_kafka_topic", "_kafka_partition", "_kafka_offset", "_raw_value"),
        spark.createDataFrame(
            [(*p, m.value) for p, m in zip(positions(bad), bad, strict=True)],
            "_kafka_topic string, _kafka_partition int, _kafka_offset bigint, _raw_value binary",
        ),
    )
