"""The settings models. Every field has a docstring; unknown keys are errors.

Paths (``lake_root``, ``checkpoint_root``, ...) may be local folders or
``s3a://bucket/prefix`` URIs. Values left ``None`` are derived from ``lake_root``
by :meth:`Settings.resolve_paths`, so one setting moves a whole environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mlops_spark.config.base import Section
from mlops_spark.features.settings import FeatureSettings
from mlops_spark.ingest.settings import IngestSettings
from mlops_spark.monitoring.settings import MonitoringSettings
from mlops_spark.training.definition import TrainingSetSettings
from mlops_spark.validate.settings import ValidateSettings

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_remote(path: str) -> bool:
    """True for URIs with a scheme other than ``file`` (``s3a://``, ``abfss://``, ``dbfs:/``)."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", path)) and not path.startswith("file:")


def join_path(root: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI without collapsing ``s3a://``."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


class SparkSettings(Section):
    master: str | None = None
    """Spark master URL (``local[*]``, ``spark://host:7077``, ``yarn``). ``None`` leaves it to
    spark-submit, or to PySpark's default ``local[*]`` when run directly."""

    app_name: str = "mlops-spark"
    """Application name shown in the Spark UI and cluster manager."""

    ui_enabled: bool = True
    """Start the Spark web UI (tests turn it off)."""

    shuffle_partitions: int = Field(default=8, ge=1)
    """``spark.sql.shuffle.partitions``; keep it near 2-4x the cluster's cores."""

    delta_snapshot_partitions: int | None = Field(default=1, ge=1)
    """Tasks Delta rebuilds a table's snapshot (its list of files, from the log) with:
    ``spark.databricks.delta.snapshotPartitions``; ``None`` keeps Delta's default (50).
    Every task generates the code of Delta's log encoders again (about 0.1 s of CPU), and
    every later query of the table scans the snapshot with as many tasks, so small tables
    pay per task, not per file: creating, rewriting and counting small partitioned tables
    took 21-23 s with 1 and 34-40 s with 8. One task reads the log of a table of some
    100,000 files in seconds; raise it for bigger tables (the cluster environments do)."""

    jars_dir: str | None = ".jars/spark"
    """Folder of JVM jars put on the session with ``spark.jars`` (relative paths are
    relative to the project root). ``None`` when the cluster or spark-submit provides
    them (Databricks has Delta built in; spark-submit.sh passes ``--packages``)."""

    local_fs_jar: str | None = ".jars/localfs/mlops-spark-localfs.jar"
    """Jar of Hadoop's local file system with permissions set in Java (``make jars`` builds
    it from ``jvm/src``; relative paths are relative to the project root). Without Hadoop's
    native library, which PySpark does not ship, every file and folder a write creates
    costs a ``chmod`` process: a partitioned write of a year of daily partitions spent most
    of its time in them. Used for ``file:`` paths of local masters when the jar exists;
    ``None`` keeps Hadoop's own."""

    class_archive: str | None = ".jars/cds/spark.jsa"
    """The JVM's class data sharing archive of the classes a local session loads (``make
    jars`` writes it by running a small session; relative paths are relative to the project
    root). A local JVM maps it instead of loading and verifying Spark's classes one by one:
    a session starts in about 4 s instead of 7 s, and its first job takes 1.5 s instead of
    3. Used by local masters when the file exists; the JVM ignores an archive that no longer
    matches its jars or its Java; ``None`` turns it off."""

    jit: Literal["tiered", "c1"] = "tiered"
    """Just-in-time compilers of a local session's JVM (driver and executors in one).
    ``tiered``: Java's default, C1 then C2 for hot code. ``c1``: C1 only
    (``-XX:TieredStopAtLevel=1``, with a 1 GB code cache reserved, committed as used): a
    short job on small data runs hundreds of different small queries, and C2 recompiles
    their code paths (and each query's generated classes) all along, on the core the job
    needs. The small demo (60k transactions), alternated: 235 s of JVM CPU (99 s of it
    C2) against 129 s with ``c1``, 172 s wall against 148 s. On bigger data C2's code pays
    off (the small demo's tasks took 47 s of CPU with C2, 60 s with C1 only; the default
    demo, 2M transactions, took 453 s with ``c1``, 361 s without): keep ``tiered`` for real
    jobs. ``mlops-spark demo`` uses ``c1`` up to 100k transactions unless this is set.
    Only effective before the JVM starts; ignored under spark-submit and for cluster masters."""

    timezone: str = "UTC"
    """``spark.sql.session.timeZone``; pinned so results never depend on the machine."""

    driver_memory: str | None = None
    """``spark.driver.memory`` for local runs (only effective before the JVM starts)."""

    conf: dict[str, str] = Field(default_factory=dict)
    """Extra Spark conf applied last, overriding everything the factory sets."""


class MetastoreSettings(Section):
    kind: Literal["derby", "jdbc", "glue", "cluster", "none"] = "derby"
    """Where table names live. ``derby``: embedded Derby in a folder (one JVM at a time);
    ``jdbc``: a shared metastore database (Derby network server, PostgreSQL);
    ``glue``: the AWS Glue Data Catalog on EMR; ``cluster``: whatever the cluster
    configures (Databricks Unity Catalog or its Hive metastore); ``none``: an
    in-memory catalog (names vanish with the session)."""

    derby_dir: str | None = None
    """Folder of the embedded Derby metastore; default ``<lake_root>/_metastore/metastore_db``."""

    jdbc_url: str | None = None
    """JDBC URL of a shared metastore database, for ``kind: jdbc``."""

    jdbc_driver: str = "org.apache.derby.jdbc.ClientDriver"
    """JDBC driver class for ``kind: jdbc`` (``org.postgresql.Driver`` for PostgreSQL)."""

    jdbc_user: str | None = None
    """User of the shared metastore database."""

    jdbc_password: SecretStr | None = None
    """Password of the shared metastore database (never logged)."""


class DatabaseSettings(Section):
    bronze: str = "bronze"
    """Database of raw, append-only landed data."""

    silver: str = "silver"
    """Database of validated data."""

    quarantine: str = "quarantine"
    """Database of rejected files, rows and messages, each with its reason."""

    features: str = "features"
    """Database of feature tables."""

    ml: str = "ml"
    """Database of training sets, predictions, run logs, decisions and metrics."""

    @field_validator("*")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"'{value}' is not a database identifier (letters, digits, underscore)")
        return value

    def all(self) -> list[str]:
        """Every configured database name, without duplicates, in flow order."""
        return list(dict.fromkeys([self.bronze, self.silver, self.quarantine, self.features, self.ml]))


class MlflowSettings(Section):
    tracking_uri: str | None = None
    """MLflow tracking URI; default SQLite under the lake: ``sqlite:///<lake_root>/_mlflow/mlflow.db``."""

    registry_uri: str | None = None
    """MLflow model registry URI; default the tracking URI."""

    artifact_root: str | None = None
    """Artifact location of new experiments; default ``<lake_root>/_mlflow/artifacts``."""

    experiment: str = "mlops-spark"
    """Experiment that training and monitoring runs are logged to."""


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma-separated ``host:port``."""

    options: dict[str, str] = Field(default_factory=dict)
    """Extra Kafka source options (``kafka.security.protocol``, ...); secrets are redacted in logs."""


class S3Settings(Section):
    endpoint_url: str | None = None
    """S3 endpoint for S3-compatible stores (``http://127.0.0.1:9000``); ``None`` for AWS."""

    region: str = "us-east-1"
    """AWS region of the buckets."""

    access_key_id: SecretStr | None = None
    """Static access key. Leave unset to use the standard AWS credential chain
    (environment, profile, instance role)."""

    secret_access_key: SecretStr | None = None
    """Static secret key, with ``access_key_id``; never logged."""

    session_token: SecretStr | None = None
    """Session token for temporary credentials."""

    path_style_access: bool = False
    """Path-style addressing (needed by most S3-compatible servers)."""


class Settings(BaseSettings):
    """All settings of one environment.

    Loaded by :func:`mlops_spark.config.load_settings`; environment variables use the
    prefix ``MLOPS_`` and ``__`` between levels: ``MLOPS_SPARK__MASTER=local[2]``.
    """

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_",
        env_nested_delimiter="__",
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    env: str = "local"
    """Name of the environment these settings describe (``local``, ``dev``, ``prod``)."""

    lake_root: str
    """Root of the lake: a local folder or ``s3a://bucket/prefix``. Databases live in
    ``<lake_root>/<database>``; derived paths below default to folders under it."""

    checkpoint_root: str | None = None
    """Root of streaming checkpoints; default ``<lake_root>/_checkpoints``."""

    landing_root: str | None = None
    """Root of raw landing folders that sources name relative paths under; default ``<lake_root>/_landing``."""

    reports_root: str | None = None
    """Where HTML reports and alert files are written; default ``<lake_root>/_reports``."""

    spark: SparkSettings = Field(default_factory=SparkSettings)
    """SparkSession settings."""

    metastore: MetastoreSettings = Field(default_factory=MetastoreSettings)
    """Table catalog settings."""

    databases: DatabaseSettings = Field(default_factory=DatabaseSettings)
    """Database names of each layer."""

    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    """MLflow tracking and registry."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    """Kafka connection."""

    s3: S3Settings = Field(default_factory=S3Settings)
    """S3 / s3a connection."""

    validation: ValidateSettings = Field(default_factory=ValidateSettings)
    """Data validation: where suites live, Data Docs."""

    ingest: IngestSettings = Field(default_factory=IngestSettings)
    """File and stream ingestion: where source definitions live."""

    features: FeatureSettings = Field(default_factory=FeatureSettings)
    """Features: definitions folder, window-engine partitions and chunk size."""

    training_sets: TrainingSetSettings = Field(default_factory=TrainingSetSettings)
    """Training sets: definitions folder, inline definitions, merge partitions."""

    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    """Monitoring: drift bins, thresholds, alerts, webhook, retraining rule, delayed labels."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The loader merges YAML layers and the environment itself so that an error
        # can name the file or variable it came from; the model only validates.
        return (init_settings,)

    @model_validator(mode="after")
    def resolve_paths(self) -> Settings:
        """Make local paths absolute and fill derived paths from ``lake_root``."""
        if not is_remote(self.lake_root):
            self.lake_root = str(Path(self.lake_root.removeprefix("file:")).expanduser().resolve())
        root = self.lake_root
        self.checkpoint_root = self.checkpoint_root or join_path(root, "_checkpoints")
        self.landing_root = self.landing_root or join_path(root, "_landing")
        self.reports_root = self.reports_root or join_path(root, "_reports")
        local_meta = root if not is_remote(root) else str(Path("~/.mlops-spark").expanduser())
        self.metastore.derby_dir = self.metastore.derby_dir or join_path(local_meta, "_metastore", "metastore_db")
        mlflow_root = root if not is_remote(root) else str(Path("~/.mlops-spark").expanduser())
        self.mlflow.tracking_uri = self.mlflow.tracking_uri or f"sqlite:///{join_path(mlflow_root, '_mlflow', 'mlflow.db')}"
        self.mlflow.registry_uri = self.mlflow.registry_uri or self.mlflow.tracking_uri
        self.mlflow.artifact_root = self.mlflow.artifact_root or join_path(root, "_mlflow", "artifacts")
        return self

    def table(self, layer: str, name: str) -> str:
        """Qualified name of table ``name`` in the database of ``layer`` (``bronze``, ``ml``, ...)."""
        if not _IDENTIFIER.match(name):
            raise ValueError(f"'{name}' is not a table identifier (letters, digits, underscore)")
        return f"{getattr(self.databases, layer)}.{name}"

    def database_location(self, database: str) -> str:
        """Storage location of a database: ``<lake_root>/<database>``."""
        return join_path(self.lake_root, database)

    def redacted(self) -> dict[str, object]:
        """The settings as a plain dict, secrets masked, for logs and ``config show``."""
        return self.model_dump(mode="json")
