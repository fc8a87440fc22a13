"""Shared fixtures: one SparkSession for the whole run, on a temporary lake and metastore.

Tests that need isolation create tables with unique names (:func:`unique_name`) or
write under ``tmp_path``; nothing here is created per test.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_spark.config import Settings
from mlops_spark.spark.jars import C1_ONLY
from tests.support import ONLINE_RETAIL_RAW, make_settings

# Server fixtures (Kafka broker, MLflow server, S3-compatible server, Spark standalone
# cluster, ...) live one per module in tests/fixtures/ and are loaded as plugins.
pytest_plugins = sorted(f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__")

_counter = itertools.count()

# A pytest-xdist worker's __main__ has neither __spec__ nor __file__: pyspark.sql.connect
# (imported by Great Expectations) takes that for a doctest run and calls sys.exit(0) when
# grpc is absent. Give the worker's __main__ a file name so the import behaves as usual.
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = "pytest-xdist-worker"


# Two test workers and their Spark JVMs already keep both cores busy: OpenMP threads of
# scikit-learn's estimators (and the processes this run starts) then spin against them
# and a fit of a few thousand rows takes seconds. One thread each, unless the caller chose.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Every JVM the run starts (the session's Spark driver, the demo's and the CLI's subprocesses,
# executors, the Kafka broker and the other servers) compiles with C1 only. The suite is a long
# string of short, different queries: C2 recompiles Spark's and Delta's code paths (and each
# query's generated classes) the whole run long, and its compiler threads took 44% of a test
# JVM's CPU (eight small validate runs: 142 s of JVM CPU, 62 s of them compiling; C1 only:
# 110 s). Three pipeline modules under two workers: 306 s -> 257 s. C1-only code keeps the
# 48 MB code cache of a non-tiered JVM: ``C1_ONLY`` raises it. Benchmarks and users' jobs keep
# the JVM's default (tiered) compilation (the small demo chooses C1 only, setting spark.jit).
TEST_JVM_OPTIONS = C1_ONLY
if TEST_JVM_OPTIONS not in os.environ.get("JDK_JAVA_OPTIONS", ""):
    os.environ["JDK_JAVA_OPTIONS"] = f"{os.environ.get('JDK_JAVA_OPTIONS', '')} {TEST_JVM_OPTIONS}".strip()


def pytest_configure(config: pytest.Config) -> None:
    """Keep every Spark process of the run (session, spark-submit, servers) on loopback."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


# Session fixtures that start a server or build a lake: under pytest-xdist, every module
# that names one of them runs on the same worker, so each is started once per run.
SHARED_SESSION_FIXTURES = ("demo_lake", "kafka_broker", "mlflow_server", "s3_server", "spark_cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration as ``integration``; under xdist, order the work.

    ``make test`` runs ``-n 2 --dist loadscope``: the scheduler below hands out one work unit
    per group of modules (:func:`module_groups`). Workers order their items slow groups first,
    then integration, then unit tests, so the long units start early and the short ones fill
    the end of the run on both workers. (Every worker sorts the same way, as xdist requires.)
    """
    for item in items:
        if "tests/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return
    group = {id(item): module_group(config.rootpath, _module_of(item.nodeid)) for item in items}
    rank: dict[str, int] = {}
    for item in items:
        weight = 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("integration") else 2
        rank[group[id(item)]] = min(rank.get(group[id(item)], 2), weight)
    items.sort(key=lambda it: rank[group[id(it)]])  # stable: collection order within a rank


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadscope`` with modules that share a server fixture in one scope."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return module_group(config.rootpath, _module_of(nodeid))

    return ModuleGroupScheduling(config, log)


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def module_group(root: Path, module: str) -> str:
    """The work unit of ``module``: itself, or the first of the test modules that name the
    same shared session fixture (read from the modules' source, so the controller, which
    collects nothing, and the workers agree)."""
    return _module_groups(str(root)).get(module, module)


@functools.cache
def _module_groups(root: str) -> dict[str, str]:
    modules = sorted(p.relative_to(root).as_posix() for p in Path(root, "tests").rglob("test_*.py"))
    parent = {m: m for m in modules}

    def find(m: str) -> str:
        while parent[m] != m:
            m = parent[m]
        return m

    for fixture in SHARED_SESSION_FIXTURES:
        pattern = re.compile(rf"\b{fixture}\b")
        users = [m for m in modules if pattern.search(Path(root, m).read_text(encoding="utf-8"))]
        for m in users[1:]:
            a, b = find(users[0]), find(m)
            parent[max(a, b)] = min(a, b)
    return {m: find(m) for m in modules}


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
