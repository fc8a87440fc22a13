"""The local broker restarts on a kept data folder as the same cluster, with its messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_spark.local.kafka_broker import create_topic, existing_cluster_id, start_broker, topic_end_offsets
from tests.fixtures.kafka import produce

pytestmark = pytest.mark.integration


def test_a_kept_log_dir_restarts_as_the_same_cluster_with_its_messages(tmp_path):
    with start_broker(log_dir=tmp_path, heap="256m") as broker:
        assert create_topic(broker.bootstrap_servers, "kept", partitions=2) is True
        assert create_topic(broker.bootstrap_servers, "kept", partitions=2) is False  # exists: nothing to do
        produce(broker.bootstrap_servers, "kept", [(b"k", b"v%d" % i) for i in range(5)], partition=1)
        first = _jvm_options(broker.popen.pid)  # a short-lived broker: C1 only by default
    first_id = existing_cluster_id(tmp_path)
    assert first_id
    with start_broker(log_dir=tmp_path, heap="256m", jit="tiered") as broker:
        assert topic_end_offsets(broker.bootstrap_servers, "kept") == {0: 0, 1: 5}
        restarted = _jvm_options(broker.popen.pid)
    assert existing_cluster_id(tmp_path) == first_id
    assert "-XX:TieredStopAtLevel=1" in first and "-XX:TieredStopAtLevel=1" not in restarted


def _jvm_options(pid: int) -> list[str]:
    """The broker JVM's command line up to its main class."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return argv[: argv.index("kafka.Kafka")]
