"""Settings: layer precedence, derived paths, and one-line errors that name their source."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_spark.config import load_settings
from mlops_spark.errors import ConfigError


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "base.yaml").write_text("lake_root: ./lake\nspark:\n  shuffle_partitions: 8\n  app_name: base-app\n")
    (d / "local.yaml").write_text("spark:\n  shuffle_partitions: 4\n")
    (d / "dev.yaml").write_text("lake_root: s3a://bucket/prefix\nmetastore:\n  kind: glue\n")
    return d


def test_env_file_overrides_base_and_environment_overrides_both(conf_dir, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("spark:\n  app_name: from-conf-file\n")
    s = load_settings(conf_dir=conf_dir, conf_file=extra, environ={"MLOPS_SPARK__SHUFFLE_PARTITIONS": "3"})
    assert (s.env, s.spark.shuffle_partitions, s.spark.app_name) == ("local", 3, "from-conf-file")


def test_env_is_taken_from_mlops_env(conf_dir):
    s = load_settings(conf_dir=conf_dir, environ={"MLOPS_ENV": "dev"})
    assert (s.env, s.lake_root, s.metastore.kind) == ("dev", "s3a://bucket/prefix", "glue")


def test_derived_paths_follow_a_local_lake_root(conf_dir, tmp_path):
    s = load_settings(conf_dir=conf_dir, environ={"MLOPS_LAKE_ROOT": str(tmp_path / "lk")})
    root = str(tmp_path / "lk")
    assert s.checkpoint_root == f"{root}/_checkpoints"
    assert s.metastore.derby_dir == f"{root}/_metastore/metastore_db"
    assert s.mlflow.tracking_uri == f"sqlite:///{root}/_mlflow/mlflow.db"
    assert s.mlflow.registry_uri == s.mlflow.tracking_uri
    assert s.database_location("features") == f"{root}/features"


def test_derived_paths_keep_an_s3a_lake_root_intact(conf_dir):
    s = load_settings(env="dev", conf_dir=conf_dir, environ={})
    assert s.checkpoint_root == "s3a://bucket/prefix/_checkpoints"
    assert s.database_location("ml") == "s3a://bucket/prefix/ml"


def test_unknown_key_in_a_file_names_the_file_and_the_key(conf_dir):
    (conf_dir / "local.yaml").write_text("spark:\n  mastr: local[2]\n")
    with pytest.raises(ConfigError, match=r"local\.yaml: spark\.mastr: unknown setting"):
        load_settings(conf_dir=conf_dir, environ={})


def test_bad_type_in_environment_names_the_variable(conf_dir):
    with pytest.raises(ConfigError, match=r"MLOPS_SPARK__SHUFFLE_PARTITIONS: spark\.shuffle_partitions: .*integer"):
        load_settings(conf_dir=conf_dir, environ={"MLOPS_SPARK__SHUFFLE_PARTITIONS": "many"})


def test_unknown_environment_variable_is_an_error(conf_dir):
    with pytest.raises(ConfigError, match="MLOPS_SPARK__MASTR: unknown setting"):
        load_settings(conf_dir=conf_dir, environ={"MLOPS_SPARK__MASTR": "local[2]"})


def test_launcher_variables_are_not_settings(conf_dir):
    s = load_settings(conf_dir=conf_dir, environ={"MLOPS_SPARK_MASTER": "spark://h:7077", "MLOPS_JVM_DEPS": "none"})
    assert s.spark.master is None


def test_missing_required_value_names_the_key_and_where_to_set_it(conf_dir):
    (conf_dir / "base.yaml").write_text("spark: {}\n")
    with pytest.raises(ConfigError, match=r"lake_root: required setting is missing .*MLOPS_LAKE_ROOT"):
        load_settings(conf_dir=conf_dir, environ={})


def test_invalid_yaml_names_the_file_and_line(conf_dir):
    (conf_dir / "local.yaml").write_text("spark:\n  master: [local\n")
    with pytest.raises(ConfigError, match=r"local\.yaml \(line \d+\): not valid YAML"):
        load_settings(conf_dir=conf_dir, environ={})


def test_unknown_environment_lists_the_known_ones(conf_dir):
    with pytest.raises(ConfigError, match=r"no settings for environment 'qa' \(known: dev, local\)"):
        load_settings(env="qa", conf_dir=conf_dir, environ={})


def test_database_names_must_be_identifiers(conf_dir):
    (conf_dir / "local.yaml").write_text('databases:\n  ml: "ml; DROP"\n')
    with pytest.raises(ConfigError, match=r"databases\.ml: .*not a database identifier"):
        load_settings(conf_dir=conf_dir, environ={})


def test_secrets_are_masked_when_dumped(conf_dir):
    s = load_settings(conf_dir=conf_dir, environ={"MLOPS_S3__SECRET_ACCESS_KEY": "hunter2-secret"})
    assert "hunter2-secret" not in str(s.redacted())
    assert s.s3.secret_access_key is not None and s.s3.secret_access_key.get_secret_value() == "hunter2-secret"


def test_repository_environments_all_load():
    for env in ("local", "dev", "prod"):
        assert load_settings(env=env, environ={}).env == env
