"""The session factory's conf, the JVM dependency helpers and log redaction (no Spark needed)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from mlops_spark.config import load_settings
from mlops_spark.errors import ConfigError, MissingDependencyError
from mlops_spark.log import JsonFormatter, redact
from mlops_spark.spark.jars import artifact_id, local_jars, maven_packages, prune_provided
from mlops_spark.spark.session import session_conf


def _settings(tmp_path: Path, **overrides: object):
    """Settings on a temporary lake; the ``spark`` overrides are merged over no jars and no class archive
    (the checkout's own, when built, would otherwise show up in every conf)."""
    spark = {"jars_dir": None, "class_archive": None, **overrides.pop("spark", {})}  # type: ignore[dict-item]
    base = {"lake_root": str(tmp_path / "lake"), "spark": spark, **overrides}
    return load_settings(env="local", overrides=base, environ={})


def test_session_has_delta_utc_and_a_derby_metastore_under_the_lake(tmp_path):
    conf = session_conf(_settings(tmp_path))
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.catalogImplementation"] == "hive"
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == (
        f"jdbc:derby:;databaseName={tmp_path}/lake/_metastore/metastore_db;create=true"
    )


def test_local_jvm_gets_the_packaged_log4j2_profile_next_to_the_derby_home(tmp_path):
    options = session_conf(_settings(tmp_path))["spark.driver.extraJavaOptions"].split()
    assert options[0] == f"-Dderby.system.home={tmp_path}/lake/_metastore"
    prefix = "-Dlog4j2.configurationFile=file://"
    assert options[1].startswith(prefix)
    profile = Path(options[1][len(prefix) :]).read_text()
    assert "logger.hivealter.level = off" in profile and "rootLogger.level = warn" in profile


def test_settings_conf_overlay_wins_over_the_factory(tmp_path):
    conf = session_conf(_settings(tmp_path, spark={"jars_dir": None, "conf": {"spark.sql.session.timeZone": "Europe/Paris"}}))
    assert conf["spark.sql.session.timeZone"] == "Europe/Paris"


def test_driver_java_options_of_the_settings_are_appended_to_the_factorys(tmp_path):
    settings = _settings(tmp_path, spark={"jars_dir": None, "conf": {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}})
    options = session_conf(settings)["spark.driver.extraJavaOptions"].split()
    assert options[0] == f"-Dderby.system.home={tmp_path}/lake/_metastore"
    assert options[1].startswith("-Dlog4j2.configurationFile=") and options[2:] == ["-XX:TieredStopAtLevel=1"]
    submitted = session_conf(settings, under_spark_submit=True)
    assert submitted["spark.driver.extraJavaOptions"] == "-XX:TieredStopAtLevel=1"


def test_under_spark_submit_master_jars_and_driver_options_are_left_alone(tmp_path, monkeypatch):
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "a-1.0.jar").write_bytes(b"")
    settings = _settings(tmp_path, spark={"jars_dir": str(jars), "master": "local[2]"})
    local = session_conf(settings)
    submitted = session_conf(settings, under_spark_submit=True)
    assert (local["spark.master"], local["spark.jars"]) == ("local[2]", str(jars / "a-1.0.jar"))
    assert not {"spark.master", "spark.jars", "spark.driver.extraJavaOptions"} & submitted.keys()


def test_static_s3_keys_use_the_simple_provider_and_no_keys_use_the_default_chain(tmp_path):
    with_keys = session_conf(
        _settings(tmp_path, s3={"access_key_id": "AK", "secret_access_key": "SK", "endpoint_url": "http://127.0.0.1:9"})
    )
    assert with_keys["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith("SimpleAWSCredentialsProvider")
    assert with_keys["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert "spark.hadoop.fs.s3a.aws.credentials.provider" not in session_conf(_settings(tmp_path))


def test_jdbc_metastore_passes_url_driver_and_credentials(tmp_path):
    metastore = {"kind": "jdbc", "jdbc_url": "jdbc:derby://127.0.0.1:1527/ms", "jdbc_password": "pw"}
    conf = session_conf(_settings(tmp_path, metastore=metastore))
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == "jdbc:derby://127.0.0.1:1527/ms"
    assert conf["spark.hadoop.javax.jdo.option.ConnectionPassword"] == "pw"


def test_missing_jars_folder_says_how_to_fetch_them(tmp_path):
    with pytest.raises(MissingDependencyError, match="run `make jars`"):
        session_conf(_settings(tmp_path, spark={"jars_dir": str(tmp_path / "none")}))


@pytest.mark.parametrize(
    ("jar", "artifact"),
    [
        ("hadoop-aws-3.5.0.jar", "hadoop-aws"),
        ("delta-spark_4.2_2.13-4.4.0.jar", "delta-spark_4.2_2.13"),
        ("hive-exec-2.3.10-core.jar", "hive-exec"),
        ("wildfly-openssl-2.2.5.Final.jar", "wildfly-openssl"),
        ("scala-parallel-collections_2.13-1.2.0.jar", "scala-parallel-collections_2.13"),
    ],
)
def test_artifact_id_strips_version_and_classifier(jar, artifact):
    assert artifact_id(jar) == artifact


def test_prune_removes_only_what_pyspark_provides(tmp_path):
    ours, provided = tmp_path / "ours", tmp_path / "provided"
    ours.mkdir(), provided.mkdir()
    for name in ("delta-storage-4.4.0.jar", "jackson-core-2.13.5.jar", "hadoop-aws-3.5.0.jar"):
        (ours / name).write_bytes(b"")
    (provided / "jackson-core-2.18.2.jar").write_bytes(b"")
    assert prune_provided(ours, provided) == ["jackson-core-2.13.5.jar"]
    assert sorted(p.name for p in local_jars(ours)) == ["delta-storage-4.4.0.jar", "hadoop-aws-3.5.0.jar"]


def test_maven_packages_match_the_python_versions():
    from importlib.metadata import version

    import delta
    import pyspark

    packages = maven_packages()
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    assert f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}" in packages
    assert f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark.__version__}" in packages
    hadoop = next(p.name for p in (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    assert f"org.apache.hadoop:hadoop-aws:{hadoop.removeprefix('hadoop-client-api-').removesuffix('.jar')}" in packages
    assert delta is not None


def test_redact_masks_secret_keys_inline_secrets_and_url_passwords():
    assert redact({"fs.s3a.secret.key": "abc", "user": "bob"}) == {"fs.s3a.secret.key": "***", "user": "bob"}
    assert redact("jdbc:postgresql://bob:pw123@db/x password=pw123") == "jdbc:postgresql://bob:***@db/x password=***"


def test_json_log_lines_carry_fields_and_no_secrets():
    record = logging.LogRecord("mlops_spark.x", logging.INFO, __file__, 1, "connect %s", ("token=abc",), None)
    record.fields = {"rows": 3, "aws_secret_access_key": "zzz"}
    line = json.loads(JsonFormatter().format(record))
    assert (line["msg"], line["rows"], line["aws_secret_access_key"], line["level"]) == ("connect token=***", 3, "***", "info")


def test_local_masters_get_the_nio_local_file_system_when_its_jar_exists(tmp_path):
    jar = tmp_path / "localfs.jar"
    jar.write_bytes(b"")
    for master in (None, "local[2]", "local-cluster[1,1,1024]"):
        conf = session_conf(_settings(tmp_path, spark={"jars_dir": None, "master": master, "local_fs_jar": str(jar)}))
        assert conf["spark.hadoop.fs.file.impl"] == "dev.mlopsspark.fs.NioLocalFileSystem", master
        assert conf["spark.hadoop.fs.AbstractFileSystem.file.impl"] == "dev.mlopsspark.fs.NioLocalFileSystem$Fs"
        assert conf["spark.driver.extraClassPath"] == str(jar)
    # A cluster's executors would not have the class; a missing jar or None keeps Hadoop's.
    for spark in (
        {"master": "spark://127.0.0.1:7077", "local_fs_jar": str(jar)},
        {"master": "local[2]", "local_fs_jar": str(tmp_path / "missing.jar")},
        {"master": "local[2]", "local_fs_jar": None},
    ):
        conf = session_conf(_settings(tmp_path, spark={"jars_dir": None, **spark}))
        assert "spark.hadoop.fs.file.impl" not in conf and "spark.driver.extraClassPath" not in conf, spark
    assert "spark.hadoop.fs.file.impl" not in session_conf(
        _settings(tmp_path, spark={"jars_dir": None, "local_fs_jar": str(jar)}), under_spark_submit=True
    )
    # A class path of the settings' conf is appended: the file system class stays reachable.
    extra = {"spark.driver.extraClassPath": "/opt/extra.jar"}
    conf = session_conf(_settings(tmp_path, spark={"jars_dir": None, "local_fs_jar": str(jar), "conf": extra}))
    assert conf["spark.driver.extraClassPath"] == f"{jar}:/opt/extra.jar"
    conf = session_conf(_settings(tmp_path, spark={"jars_dir": None, "local_fs_jar": None, "conf": extra}))
    assert conf["spark.driver.extraClassPath"] == "/opt/extra.jar"


def test_local_masters_map_the_class_archive_when_it_exists(tmp_path):
    archive = tmp_path / "spark.jsa"
    archive.write_bytes(b"")
    quiet = ["-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
    for master in (None, "local[2]"):
        conf = session_conf(_settings(tmp_path, spark={"master": master, "class_archive": str(archive)}))
        assert conf["spark.driver.extraJavaOptions"].split()[2:] == [f"-XX:SharedArchiveFile={archive}", *quiet], master
    # A cluster's driver has other jars; no archive, None, or spark-submit's own JVM: nothing added.
    for spark, submitted in (
        ({"master": "spark://127.0.0.1:7077", "class_archive": str(archive)}, False),
        ({"master": "local[2]", "class_archive": str(tmp_path / "missing.jsa")}, False),
        ({"master": "local[2]", "class_archive": None}, False),
        ({"master": "local[2]", "class_archive": str(archive)}, True),
    ):
        options = session_conf(_settings(tmp_path, spark=spark), under_spark_submit=submitted).get("spark.driver.extraJavaOptions", "")
        assert "SharedArchiveFile" not in options, spark


def test_delta_rebuilds_snapshots_with_one_task_locally_and_its_own_default_on_clusters(tmp_path):
    assert session_conf(_settings(tmp_path))["spark.databricks.delta.snapshotPartitions"] == "1"
    assert session_conf(_settings(tmp_path, spark={"delta_snapshot_partitions": 4}))["spark.databricks.delta.snapshotPartitions"] == "4"
    unset = session_conf(_settings(tmp_path, spark={"delta_snapshot_partitions": None}))
    assert "spark.databricks.delta.snapshotPartitions" not in unset
    conf_dir = Path(__file__).resolve().parents[2] / "conf"
    for env in ("databricks", "emr", "prod", "dev"):
        spark = yaml.safe_load((conf_dir / f"{env}.yaml").read_text())["spark"]
        assert "delta_snapshot_partitions" in spark and spark["delta_snapshot_partitions"] is None, env


def test_c1_jit_compiles_a_local_jvm_with_c1_only_and_leaves_clusters_alone(tmp_path):
    c1 = ["-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=1g"]
    assert session_conf(_settings(tmp_path))["spark.driver.extraJavaOptions"].split()[2:] == []  # tiered: Java's default
    for master in (None, "local[2]"):
        conf = session_conf(_settings(tmp_path, spark={"master": master, "jit": "c1"}))
        assert conf["spark.driver.extraJavaOptions"].split()[2:] == c1, master
    cluster = session_conf(_settings(tmp_path, spark={"master": "spark://127.0.0.1:7077", "jit": "c1"}))
    assert "TieredStopAtLevel" not in cluster["spark.driver.extraJavaOptions"]
    submitted = session_conf(_settings(tmp_path, spark={"master": "local[2]", "jit": "c1"}), under_spark_submit=True)
    assert "TieredStopAtLevel" not in submitted.get("spark.driver.extraJavaOptions", "")
    with pytest.raises(ConfigError, match=r"spark.jit: Input should be .tiered. or .c1."):
        _settings(tmp_path, spark={"jit": "c2"})


def test_demo_compiles_with_c1_only_on_small_data_unless_the_settings_choose(tmp_path):
    from mlops_spark.demo import C1_MAX_ROWS, SIZES, demo_session_settings

    default = _settings(tmp_path)
    assert default.spark.jit == "tiered"
    assert demo_session_settings(default, SIZES["small"][0]).spark.jit == "c1"
    assert demo_session_settings(default, C1_MAX_ROWS + 1).spark.jit == "tiered"
    assert demo_session_settings(default, SIZES["default"][0]) is default
    chosen = _settings(tmp_path, spark={"jit": "tiered"})
    assert demo_session_settings(chosen, SIZES["small"][0]).spark.jit == "tiered"
