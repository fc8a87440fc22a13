"""The one SparkSession factory.

Every entry point (CLI, ``jobs/*.py`` under spark-submit, tests, notebooks) gets its
session from :func:`get_spark`, so Delta, the metastore, the time zone and the
JVM dependencies are configured the same way everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from mlops_spark.config.settings import Settings, is_remote
from mlops_spark.errors import MissingDependencyError
from mlops_spark.log import fields, redact
from mlops_spark.spark.jars import C1_ONLY, LOCAL_FS_CLASS, local_jars, project_root

log = logging.getLogger(__name__)
LOG4J2_PROPERTIES = Path(__file__).with_name("log4j2.properties")

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
ARROW_BATCH_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"
DEFAULT_ARROW_BATCH_ROWS = 100_000
ARROW_BATCH_BYTES = "spark.sql.execution.arrow.maxBytesPerBatch"
DELTA_SNAPSHOT_PARTITIONS = "spark.databricks.delta.snapshotPartitions"
# Int.MaxValue: the one value for which Spark skips its per-row batch size check.
NO_ARROW_BATCH_BYTES_LIMIT = 2**31 - 1
# The JVM's class-data-sharing log lines (a stale archive, classes it could not archive).
CDS_QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def launched_by_spark_submit() -> bool:
    """True when this Python process was started by ``spark-submit`` (its JVM already runs).

    spark-submit then owns the master, the jars and the driver's JVM options, so
    the factory must not set them.
    """
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def session_conf(settings: Settings, under_spark_submit: bool = False) -> dict[str, str]:
    """The Spark conf the factory applies, as a plain dict (pure; unit-tested).

    Args:
        settings: the environment's settings.
        under_spark_submit: leave master, jars and driver JVM options to spark-submit.
    """
    sp = settings.spark
    conf: dict[str, str] = {
        "spark.app.name": sp.app_name,
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.sql.session.timeZone": sp.timezone,
        "spark.sql.shuffle.partitions": str(sp.shuffle_partitions),
        "spark.ui.enabled": str(sp.ui_enabled).lower(),
        "spark.sql.warehouse.dir": settings.database_location("_warehouse"),
        # Delta tables written by several jobs at once: let Delta retry commits, and keep
        # Arrow on for pandas conversions (scoring, monitoring references).
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Rows per Arrow batch between the JVM and the Python workers (Spark's default is
        # 10,000). The window engine and the as-of join stream whole partitions through
        # mapInArrow, and each batch has a fixed cost on both sides (alternating runs, means
        # of 4: 10M events' features 18.9 s -> 17.6 s, a 1M-label training set 10.0 s -> 8.9 s).
        # Batches of narrow rows stay a few MB; a pandas UDF over wide rows can lower it in
        # the settings' conf.
        ARROW_BATCH_ROWS: str(DEFAULT_ARROW_BATCH_ROWS),
        # No byte limit per batch (Spark 4's default is 64 MiB): under any limit but
        # Int.MaxValue, Spark measures the batch being built after every row it adds
        # (ArrowWriter.sizeInBytes over every vector), which was 14% of the JVM's CPU in the
        # features benchmark (10M events, alternating runs: 16.1-19.5 s -> 14.3-15.6 s).
        # The row limit above bounds the batches; rows of more than about 20 KB on average
        # (long texts, blobs) through a Python UDF need a smaller row limit or a byte limit
        # in the settings' conf (Arrow's buffers hold at most 2 GB).
        ARROW_BATCH_BYTES: str(NO_ARROW_BATCH_BYTES_LIMIT),
        # Parquet's standard 64-bit UTC timestamps instead of Spark's legacy default INT96
        # (deprecated by Parquet; every reader we target reads both). Cheaper to write:
        # 4M rows with three timestamp columns to Delta, alternating runs, 2.42 s -> 1.89 s;
        # ingest benchmark (5M rows) 15.2 s -> 11.7 s.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # Python workers use the driver's interpreter (the venv), not whatever is on PATH.
        "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
    }
    if sp.delta_snapshot_partitions is not None:
        conf[DELTA_SNAPSHOT_PARTITIONS] = str(sp.delta_snapshot_partitions)
    if not under_spark_submit:
        if sp.master:
            conf["spark.master"] = sp.master
        if sp.jars_dir:
            jars_dir = Path(sp.jars_dir)
            if not jars_dir.is_absolute():
                jars_dir = project_root() / jars_dir
            conf["spark.jars"] = ",".join(str(p) for p in local_jars(jars_dir))
        if sp.driver_memory:
            conf["spark.driver.memory"] = sp.driver_memory
        conf.update(_local_fs_conf(settings))
    conf.update(_metastore_conf(settings, under_spark_submit))
    if not under_spark_submit:
        # Our log4j2 profile: Spark's defaults without the Hive-compatibility stack traces
        # every Delta CREATE/ALTER prints. (Under spark-submit the cluster's logging rules.)
        java_opts = conf.get("spark.driver.extraJavaOptions", "")
        profile = f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()}"
        java_opts = f"{java_opts} {profile} {_class_archive_options(settings)} {_jit_options(settings)}"
        conf["spark.driver.extraJavaOptions"] = java_opts.strip()
    conf.update(_s3_conf(settings))
    # The settings' conf wins, except that driver JVM options are appended to the factory's
    # (the Derby home and the log4j2 profile): a later -D of the same property still wins.
    # A driver class path is appended too: the local file system class must stay on it.
    overlay = dict(sp.conf)
    java_opts = overlay.pop("spark.driver.extraJavaOptions", "")
    class_path = overlay.pop("spark.driver.extraClassPath", "")
    conf.update(overlay)
    if java_opts:
        conf["spark.driver.extraJavaOptions"] = f"{conf.get('spark.driver.extraJavaOptions', '')} {java_opts}".strip()
    if class_path:
        conf["spark.driver.extraClassPath"] = os.pathsep.join(p for p in (conf.get("spark.driver.extraClassPath"), class_path) if p)
    return conf


def _local_fs_conf(settings: Settings) -> dict[str, str]:
    """The local file system without a process per file, for local masters (see ``local_fs_jar``).

    Only for ``local[...]``: the class goes on the driver's class path, and a cluster's
    executors would not find it. The Spark launcher resolves ``spark.jars`` with the file
    system before any added jar is loaded, so the class path is the only way in.
    """
    sp = settings.spark
    if not sp.local_fs_jar or not _local_master(settings):
        return {}
    jar = Path(sp.local_fs_jar)
    if not jar.is_absolute():
        jar = project_root() / jar
    if not jar.is_file():
        return {}
    return {
        "spark.driver.extraClassPath": str(jar),
        "spark.hadoop.fs.file.impl": LOCAL_FS_CLASS,
        # The FileContext API (Delta's log store) has its own class per scheme.
        "spark.hadoop.fs.AbstractFileSystem.file.impl": f"{LOCAL_FS_CLASS}$Fs",
    }


def _local_master(settings: Settings) -> bool:
    master = settings.spark.master
    return master is None or master.startswith("local")


def _jit_options(settings: Settings) -> str:
    """Driver JVM options of ``spark.jit`` (local masters only: there the driver runs the tasks)."""
    return C1_ONLY if settings.spark.jit == "c1" and _local_master(settings) else ""


def _class_archive_options(settings: Settings) -> str:
    """Driver JVM options that map the class data sharing archive (see ``class_archive``).

    Local masters only: the archive holds the driver's classes for this machine's Java and
    jars. The JVM checks that itself and starts without the archive when it does not match;
    its CDS log lines are off so that a stale archive costs time, not noise.
    """
    sp = settings.spark
    if not sp.class_archive or not _local_master(settings):
        return ""
    archive = Path(sp.class_archive)
    if not archive.is_absolute():
        archive = project_root() / archive
    if not archive.is_file():
        return ""
    return f"-XX:SharedArchiveFile={archive} {CDS_QUIET}"


def _metastore_conf(settings: Settings, under_spark_submit: bool) -> dict[str, str]:
    ms = settings.metastore
    if ms.kind in ("cluster",):
        return {}
    if ms.kind == "none":
        return {"spark.sql.catalogImplementation": "in-memory"}
    conf = {"spark.sql.catalogImplementation": "hive"}
    if ms.kind == "glue":
        conf["spark.hadoop.hive.metastore.client.factory.class"] = (
            "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
        )
        return conf
    if ms.kind == "derby":
        derby_dir = str(ms.derby_dir)
        Path(derby_dir).parent.mkdir(parents=True, exist_ok=True)
        url = f"jdbc:derby:;databaseName={derby_dir};create=true"
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = url
        conf["spark.hadoop.javax.jdo.option.ConnectionDriverName"] = "org.apache.derby.iapi.jdbc.AutoloadedDriver"
        if not under_spark_submit:
            # derby.log next to the database instead of the current directory.
            conf["spark.driver.extraJavaOptions"] = f"-Dderby.system.home={Path(derby_dir).parent}"
    else:  # jdbc: a metastore database shared by several JVMs
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = str(ms.jdbc_url)
        conf["spark.hadoop.javax.jdo.option.ConnectionDriverName"] = ms.jdbc_driver
        if ms.jdbc_user:
            conf["spark.hadoop.javax.jdo.option.ConnectionUserName"] = ms.jdbc_user
        if ms.jdbc_password:
            conf["spark.hadoop.javax.jdo.option.ConnectionPassword"] = ms.jdbc_password.get_secret_value()
    conf["spark.hadoop.datanucleus.schema.autoCreateAll"] = "true"
    conf["spark.hadoop.hive.metastore.schema.verification"] = "false"
    return conf


def _s3_conf(settings: Settings) -> dict[str, str]:
    s3 = settings.s3
    conf = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": s3.region,
        "spark.hadoop.fs.s3a.path.style.access": str(s3.path_style_access).lower(),
    }
    if s3.endpoint_url:
        conf["spark.hadoop.fs.s3a.endpoint"] = s3.endpoint_url
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(s3.endpoint_url.startswith("https")).lower()
    if s3.access_key_id and s3.secret_access_key:
        conf["spark.hadoop.fs.s3a.access.key"] = s3.access_key_id.get_secret_value()
        conf["spark.hadoop.fs.s3a.secret.key"] = s3.secret_access_key.get_secret_value()
        if s3.session_token:
            conf["spark.hadoop.fs.s3a.session.token"] = s3.session_token.get_secret_value()
            conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
        else:
            conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
    return conf


@contextlib.contextmanager
def runtime_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """Set the runtime setting ``key`` of ``spark`` for the ``with`` block, then restore it
    (unset again when it was not set, so Spark's default applies)."""
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def check_java() -> None:
    """Fail with one line when no ``java`` is reachable (``JAVA_HOME`` or ``PATH``).

    Raises:
        MissingDependencyError: naming what was looked at and what to install.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        if not (Path(java_home) / "bin" / "java").exists():
            raise MissingDependencyError(f"JAVA_HOME={java_home} has no bin/java: point JAVA_HOME at a Java 17 installation")
        return
    if shutil.which("java") is None:
        raise MissingDependencyError("java not found on PATH and JAVA_HOME is not set: install Java 17 (e.g. openjdk-17-jre-headless)")


def get_spark(settings: Settings, app_name: str | None = None, create_databases: bool = True) -> SparkSession:
    """Create (or return the running) SparkSession configured by ``settings``.

    Sets ``PYSPARK_PYTHON`` to the running interpreter (unless spark-submit set it),
    applies :func:`session_conf`, and creates the configured databases at
    ``<lake_root>/<database>`` so tables are registered by name.

    Raises:
        MissingDependencyError: the jars folder is configured but empty, or Java is missing.
    """
    under_submit = launched_by_spark_submit()
    if not under_submit:
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    conf = session_conf(settings, under_submit)
    if app_name:
        conf["spark.app.name"] = app_name
    if not is_remote(settings.lake_root):
        Path(settings.lake_root).mkdir(parents=True, exist_ok=True)
    active = SparkSession.getActiveSession()
    if active is None:
        spark = _start(settings, conf, under_submit)
    else:
        spark = active
        _reuse(spark, conf)
        log.info("reusing the running spark session", extra=fields(env=settings.env, app=spark.sparkContext.appName))
    if create_databases and settings.metastore.kind != "cluster":
        ensure_databases(spark, settings)
    return spark


def _start(settings: Settings, conf: dict[str, str], under_submit: bool) -> SparkSession:
    """A new session (and JVM, unless spark-submit started one) with ``conf``."""
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    log.info(
        "starting spark session",
        extra=fields(env=settings.env, under_spark_submit=under_submit, conf=redact({k: v for k, v in conf.items() if k != "spark.jars"})),
    )
    if not under_submit:
        check_java()
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: say why in one line
        if "JAVA_GATEWAY_EXITED" in str(exc):
            raise MissingDependencyError(
                "the Spark JVM exited before it started: check Java 17 (`java -version`, JAVA_HOME) and the "
                "spark.driver.* settings; the lines above this one are the JVM's own output"
            ) from None
        raise
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _reuse(spark: SparkSession, conf: dict[str, str]) -> None:
    """Apply ``conf``'s runtime settings to the running session, as ``getOrCreate`` would.

    ``getOrCreate`` on a running session sets what it can and warns, on every call, that
    static settings (master, jars, JVM options: fixed when the JVM started) are ignored.
    Every step of one process (the demo runs them all) gets the same session, so that
    warning said nothing anyone could act on; the static settings are skipped quietly.
    """
    for key, value in conf.items():
        if spark.conf.get(key, None) == value:
            continue
        try:
            spark.conf.set(key, value)
        except AnalysisException:  # a static or core setting: fixed since the session started
            log.debug("setting left as the running session has it", extra=fields(key=key))


# (Spark application id, database, location) already ensured by this process.
_ENSURED: set[tuple[str, str, str]] = set()


def ensure_databases(spark: SparkSession, settings: Settings) -> None:
    """Create each configured database at ``<lake_root>/<name>`` if it does not exist.

    Once per Spark application and database location: every step of one process asks the
    factory again (the demo's ten, a test run's hundreds of in-process commands), and
    listing the metastore's databases cost 0.05-0.15 s each time in a warm session.
    """
    app = spark.sparkContext.applicationId
    wanted = {(app, name, settings.database_location(name)) for name in settings.databases.all()}
    if wanted <= _ENSURED:
        return
    existing = {row.namespace if hasattr(row, "namespace") else row[0] for row in spark.sql("SHOW DATABASES").collect()}
    for _, name, location in sorted(wanted):
        if name not in existing:
            # Identifiers are validated by the settings model; the location is a quoted literal.
            spark.sql(f"CREATE DATABASE IF NOT EXISTS `{name}` LOCATION {_literal(location)}")
    _ENSURED.update(wanted)
