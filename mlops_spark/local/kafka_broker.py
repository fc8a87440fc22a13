"""A single-node KRaft Kafka broker on 127.0.0.1, for tests, benchmarks and the demo.

The broker runs from the jars that ``make jars`` fetches into ``.jars/kafka-broker/``
(the ``kafka-broker`` profile of ``jvm/pom.xml``): no download, no ZooKeeper, no
Docker. One JVM is both controller and broker; its log directory is a temporary
folder, its ports are free ports picked at start, so several brokers can run side
by side on one machine.

Python API::

    with start_broker() as broker:
        produce_to(broker.bootstrap_servers)

Command line (a broker in the foreground until Ctrl-C or SIGTERM; the demo uses the Python API)::

    python -m mlops_spark.local.kafka_broker [--port N] [--log-dir DIR] [--heap SIZE] [--jit {c1,tiered}]

``start_broker`` compiles with C1 only by default (a short-lived broker starts sooner on
less CPU); the command line keeps Java's tiered compilers for a broker that runs a while.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Literal

from mlops_spark.errors import MissingDependencyError
from mlops_spark.log import fields
from mlops_spark.spark.jars import project_root

log = logging.getLogger(__name__)

DEFAULT_JARS_DIR = Path(".jars") / "kafka-broker"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def broker_classpath(jars_dir: Path | None = None) -> str:
    """The ``-cp`` value for the broker JVM: every jar of the kafka-broker folder.

    Raises:
        MissingDependencyError: the folder has no ``kafka_2.13-*.jar`` (``make jars`` fetches it) or
            ``java`` is not on the PATH.
    """
    jars_dir = jars_dir or project_root() / DEFAULT_JARS_DIR
    if not any(jars_dir.glob("kafka_2.13-*.jar")):
        raise MissingDependencyError(f"Kafka broker jars not found in {jars_dir}: run `make jars` (needs Maven and Java 17)")
    if shutil.which("java") is None:
        raise MissingDependencyError("java not found on PATH: install Java 17 to run the local Kafka broker")
    return str(jars_dir / "*")


def server_properties(log_dir: Path, broker_port: int, controller_port: int) -> str:
    """The ``server.properties`` of a combined controller + broker node on loopback (pure)."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static one-voter quorum: formatting needs no --standalone / dynamic-quorum flags.
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir / "data"),
        "num.partitions": "1",
        # One node: internal topics cannot have more replicas than brokers.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        # Tests and benchmarks read everything back: keep it all, whatever the clock says.
        "log.retention.ms": "-1",
        "log.retention.bytes": "-1",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _cluster_id() -> str:
    # It may start with "-": callers pass it as --cluster-id=<id> so it is not read as a flag.
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def existing_cluster_id(log_dir: Path) -> str | None:
    """The cluster id of a log dir formatted before (a kept data folder restarts as the same cluster)."""
    meta = log_dir / "data" / "meta.properties"
    if not meta.is_file():
        return None
    for line in meta.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id" and value.strip():
            return value.strip()
    return None


class KafkaBroker:
    """A running broker process; :meth:`stop` ends it and removes a temporary log dir.

    Attributes:
        bootstrap_servers: ``127.0.0.1:<port>`` for clients.
        log_dir: folder of the broker's data, config and process output.
    """

    def __init__(self, popen: subprocess.Popen[bytes], port: int, log_dir: Path, owns_dir: bool, output: Path):
        self.popen = popen
        self.port = port
        self.bootstrap_servers = f"127.0.0.1:{port}"
        self.log_dir = log_dir
        self._owns_dir = owns_dir
        self._output = output

    def tail(self, lines: int = 30) -> str:
        """The last lines of the broker's console output (for error messages)."""
        try:
            return "\n".join(self._output.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def running(self) -> bool:
        """True while the broker process is alive."""
        return self.popen.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the broker's process group (a clean shutdown), SIGKILL after ``grace`` seconds."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(grace)
        log.info("kafka broker stopped", extra=fields(bootstrap_servers=self.bootstrap_servers))
        if self._owns_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _ready(bootstrap: str) -> bool:
    """True when the broker answers a metadata request (the listener alone is not enough)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, client_id="mlops-spark-readiness")
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


def create_topic(bootstrap: str, name: str, partitions: int = 1, timeout: float = 30.0) -> bool:
    """Create topic ``name`` (replication 1) unless it exists; wait until its partitions have leaders.

    Returns:
        True when this call created it.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="mlops-spark-admin")
    created = False
    try:
        if name not in admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, 1)])
                created = True
    finally:
        admin.close()
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if topic_end_offsets(bootstrap, name):
                return created
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kafka topic {name} on {bootstrap} has no partition leader after {timeout:.0f}s")
        time.sleep(0.2)


def topic_end_offsets(bootstrap: str, name: str) -> dict[int, int]:
    """The end offset (next offset to write) of every partition of ``name``; empty if it has none."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="mlops-spark-offsets", enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(name) or set()
        ends = consumer.end_offsets([TopicPartition(name, p) for p in sorted(partitions)])
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        consumer.close()


JIT_OPTIONS: dict[str, tuple[str, ...]] = {"c1": ("-XX:TieredStopAtLevel=1",), "tiered": ()}
"""JVM options per ``jit`` choice of :func:`start_broker`."""


def start_broker(
    log_dir: Path | None = None,
    port: int | None = None,
    jars_dir: Path | None = None,
    heap: str = "512m",
    timeout: float = 90.0,
    jit: Literal["c1", "tiered"] = "c1",
) -> KafkaBroker:
    """Format a KRaft log directory and start a broker on 127.0.0.1; return once it serves metadata.

    Args:
        log_dir: folder for data, config and console output; default a new temporary folder
            (removed by :meth:`KafkaBroker.stop`).
        port: client port; default a free port.
        jars_dir: folder of the broker jars; default ``.jars/kafka-broker`` in the checkout.
        heap: JVM heap (``-Xmx``); small by default, the machine is shared.
        jit: the JVMs' just-in-time compilers. ``c1`` (C1 only) suits a short-lived broker
            (the demo's, tests'): alternated 3 times, start to a created topic took 3.8-4.5 s
            and 4.9-5.8 s of CPU against 5.0-6.3 s and 8.5-9.7 s with ``tiered`` (Java's
            default), which a broker under sustained load wants (the kafka benchmark).
        timeout: seconds to wait for readiness.

    Raises:
        MissingDependencyError: jars or java missing.
        RuntimeError: the broker exited or did not become ready in time (with its last output lines).
    """
    classpath = broker_classpath(jars_dir)
    owns_dir = log_dir is None
    log_dir = Path(tempfile.mkdtemp(prefix="kafka-broker-")) if log_dir is None else log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    controller_port = free_port()
    config = log_dir / "server.properties"
    config.write_text(server_properties(log_dir, port, controller_port))
    # Serial GC and a small heap: the broker shares two cores with Spark in tests.
    java = ["java", f"-Xmx{heap}", "-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true", *JIT_OPTIONS[jit], "-cp", classpath]
    output = log_dir / "broker.out"
    cluster_id = existing_cluster_id(log_dir) or _cluster_id()
    fmt = subprocess.run(
        [*java, "kafka.tools.StorageTool", "format", "--config", str(config), f"--cluster-id={cluster_id}", "--ignore-formatted"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if fmt.returncode != 0:
        raise RuntimeError(f"formatting the Kafka log dir {log_dir} failed: {(fmt.stderr or fmt.stdout).strip()[-2000:]}")
    with open(output, "wb") as out:
        popen = subprocess.Popen(
            [*java, "kafka.Kafka", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() reaches every child
        )
    broker = KafkaBroker(popen, port, log_dir, owns_dir, output)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not broker.running():
            broker.stop()
            raise RuntimeError(f"Kafka broker exited with code {popen.returncode}:\n{broker.tail()}")
        with contextlib.suppress(Exception):
            if _port_open(port) and _ready(broker.bootstrap_servers):
                log.info("kafka broker ready", extra=fields(bootstrap_servers=broker.bootstrap_servers, log_dir=str(log_dir)))
                return broker
        time.sleep(0.2)
    broker.stop()
    raise RuntimeError(f"Kafka broker on {broker.bootstrap_servers} not ready after {timeout:.0f}s:\n{broker.tail()}")


def main(argv: list[str] | None = None) -> int:
    """Run a broker in the foreground until SIGINT or SIGTERM; print its bootstrap servers."""
    parser = argparse.ArgumentParser(prog="python -m mlops_spark.local.kafka_broker", description="Run a local single-node KRaft broker.")
    parser.add_argument("--port", type=int, default=None, help="client port on 127.0.0.1 (default: a free port)")
    parser.add_argument("--log-dir", type=Path, default=None, help="data folder to keep across runs (default: a temporary one)")
    parser.add_argument("--heap", default="512m", help="JVM heap of the broker (default 512m)")
    parser.add_argument(
        "--jit", choices=sorted(JIT_OPTIONS), default="tiered",
        help="JVM compilers: tiered (default, for a broker that runs a while) or c1 (starts faster, less CPU; slower under load)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        broker = start_broker(log_dir=args.log_dir, port=args.port, heap=args.heap, jit=args.jit)
    except MissingDependencyError as exc:
        print(f"kafka-broker: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(broker.bootstrap_servers, flush=True)
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop and broker.running():
        time.sleep(0.5)
    broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
