"""Shared fixtures: one SparkSession for the whole run, on a temporary lake and metastore.

Tests that need isolation create tables with unique names (:func:`unique_name`) or
write under ``tmp_path``; nothing here is created per test.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_spark.config import Settings
from tests.support import ONLINE_RETAIL_RAW, make_settings

# Server fixtures (Kafka broker, MLflow server, S3-compatible server, Spark standalone
# cluster, ...) live one per module in tests/fixtures/ and are loaded as plugins.
pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)

_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    """Keep every Spark process of the run (session, spark-submit, servers) on loopback."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


# Session fixtures that start a server or build a lake: with pytest-xdist, every module
# that uses one of them runs on the same worker, so each is started once per run.
SHARED_SESSION_FIXTURES = ("demo_lake", "kafka_broker", "mlflow_server", "s3_server", "spark_cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration as ``integration``; under xdist, group and order the work.

    With ``-n N --dist loadgroup`` (``make test``), each test module is one unit of work (its
    module fixtures are built once), modules sharing a server fixture are one unit, and the
    units run slow first, then integration, then unit tests, so that the long units start
    early and the short ones fill the end of the run on both workers.
    """
    for item in items:
        if "tests/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    groups = _work_groups(items)
    rank = {}
    for item in items:
        group = groups[item.nodeid.split("::")[0]]
        weight = 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("integration") else 2
        rank[group] = min(rank.get(group, 2), weight)
        item.add_marker(pytest.mark.xdist_group(name=group))
    order = {item.nodeid: i for i, item in enumerate(items)}
    items.sort(key=lambda it: (rank[groups[it.nodeid.split("::")[0]]], order[it.nodeid]))


def _work_groups(items: list[pytest.Item]) -> dict[str, str]:
    """Module path -> group name: a module's own path, or the first of the modules that share a server fixture."""
    parent = {}

    def find(m: str) -> str:
        while parent.setdefault(m, m) != m:
            m = parent[m]
        return m

    owner: dict[str, str] = {}
    for item in items:
        module = find(item.nodeid.split("::")[0])
        for name in SHARED_SESSION_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                first = find(owner.setdefault(name, module))
                if first != module:
                    parent[max(first, module)] = min(first, module)
                    module = find(module)
    return {m: find(m) for m in {item.nodeid.split("::")[0] for item in items}}


@pytest.fixture(scope="session")
def lake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's lake folder (databases, metastore, checkpoints, MLflow)."""
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="session")
def settings(lake_root: Path) -> Settings:
    """Settings of the session's SparkSession."""
    return make_settings(lake_root)


@pytest.fixture(scope="session")
def spark(settings: Settings) -> Iterator[object]:
    """The one SparkSession of the test run (local[2], 2 shuffle partitions, UI off)."""
    from mlops_spark.spark.session import get_spark

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = get_spark(settings, app_name="mlops-spark-tests")
    yield session
    session.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A table-safe name unique within the run, derived from the test's name."""
    base = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:40]
    return f"{base}_{next(_counter)}"


@pytest.fixture(scope="session")
def online_retail_raw() -> Path:
    """The real Online Retail daily Parquet files; skips when the shared folder is absent."""
    if not ONLINE_RETAIL_RAW.is_dir():
        pytest.skip(f"real data not found at {ONLINE_RETAIL_RAW}")
    return ONLINE_RETAIL_RAW
