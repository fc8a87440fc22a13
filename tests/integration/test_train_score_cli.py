"""The ``train`` and ``score`` CLI steps end to end against the real MLflow server."""

from __future__ import annotations

import json

import pytest
import yaml
from pyspark.sql import functions as F

from mlops_spark.cli import main
from tests.ml_data import T1, T2, feature_rows, model_yaml, training_pandas, write_training_set


@pytest.fixture(scope="module")
def cli_conf(settings, mlflow_server, tmp_path_factory):
    """A --conf file: the session's lake and the MLflow server."""
    path = tmp_path_factory.mktemp("cli") / "conf.yaml"
    path.write_text(yaml.safe_dump({"lake_root": settings.lake_root, "mlflow": {"tracking_uri": mlflow_server.tracking_uri}}))
    return str(path)


@pytest.fixture(scope="module")
def trained(spark, cli_conf, tmp_path_factory):
    """cli_churn trained and promoted through ``mlops-spark train``; returns its JSON summary."""
    write_training_set(spark, "ml.ts_cli_churn", training_pandas(600))
    feature_rows(spark, [(1, T1, 0.5, 0.1, -0.2), (2, T1, -1.0, 2.0, 0.0)]).write.format("delta").mode("overwrite").saveAsTable(
        "features.cli_customers"
    )
    model = tmp_path_factory.mktemp("models") / "cli_churn.yaml"
    model.write_text(model_yaml("cli_churn", "ml.ts_cli_churn", "features.cli_customers"))
    rc = main(["train", "--conf", cli_conf, "--model", str(model), "--run-date", "2024-06-01"])
    assert rc == 0
    return model


def test_train_step_registers_and_promotes_the_first_version(trained, capsys, cli_conf):
    rc = main(["train", "--conf", cli_conf, "--model", str(trained), "--run-date", "2024-06-01"])

    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0
    assert (summary["model"], summary["version"], summary["outcome"], summary["reused"]) == ("cli_churn", 1, "promoted", True)


def test_score_step_writes_predictions_by_alias_with_the_model_version(spark, trained, cli_conf, capsys):
    spark.createDataFrame([(1,), (2,), (3,)], "customer_id long").write.format("delta").mode("overwrite").saveAsTable("ml.cli_entities")

    rc = main(
        [
            "score",
            "--conf",
            cli_conf,
            "--model",
            "cli_churn@champion",
            "--entities",
            "ml.cli_entities",
            "--as-of",
            T2.isoformat(),
            "--run-date",
            "2024-06-02",
        ]
    )

    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["rows_in"], summary["rows_scored"], summary["rows_rejected"]) == (3, 3, 0)
    rows = spark.table("ml.predictions_cli_churn").where(F.col("run_date") == "2024-06-02").select("customer_id", "model_version").collect()
    assert sorted((r.customer_id, r.model_version) for r in rows) == [(1, 1), (2, 1), (3, 1)]


@pytest.mark.parametrize(
    ("ref", "line"),
    [
        ("cli_churn@gold", "mlops-spark score: error: model 'cli_churn' has no alias '@gold'"),
        ("no_such_model@champion", "mlops-spark score: error: registered model 'no_such_model' does not exist"),
    ],
)
def test_score_step_with_unknown_model_or_alias_exits_2_with_one_line(trained, cli_conf, capsys, ref, line):
    rc = main(["score", "--conf", cli_conf, "--model", ref, "--entities", "ml.cli_entities"])

    err = capsys.readouterr().err
    assert rc == 2
    assert [ln for ln in err.splitlines() if ln.startswith("mlops-spark")] == [line]
    assert "Traceback" not in err


def test_train_step_with_unknown_estimator_exits_2_naming_the_file(tmp_path, cli_conf, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(model_yaml("bad", "t", "f", estimator="sklearn.svm.SVC"))

    rc = main(["train", "--conf", cli_conf, "--model", str(bad)])

    assert rc == 2
    assert f"mlops-spark train: error: {bad}: estimator.class: 'sklearn.svm.SVC' is not an allowed estimator" in capsys.readouterr().err
