"""spark-submit.sh against a real standalone cluster writes a Delta table that a new
session finds by name in the metastore: the code runs distributed, not only locally."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

from tests.support import REPO_ROOT

ROWS, CUSTOMERS, SEED = 20_000, 500, 7
# Order-independent fingerprint of the rows: equal only when every row is equal.
SUMMARY = [
    "count(*) AS n",
    "count(DISTINCT customer_id) AS customers",
    "sum(pmod(xxhash64(transaction_id, customer_id, event_ts, amount, quantity, category, country, channel), 1000003)) AS fingerprint",
]


def _completed_apps(web_ui: str) -> list[str]:
    with urllib.request.urlopen(f"{web_ui}/json/", timeout=5) as resp:
        return [app["name"] for app in json.load(resp).get("completedapps", [])]


def test_spark_submit_on_standalone_cluster_writes_a_table_a_new_session_reads_by_name(spark, spark_cluster, tmp_path):
    lake = tmp_path / "lake"
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "MLOPS_ENV": "local",
        "MLOPS_LAKE_ROOT": str(lake),
        "MLOPS_SPARK__SHUFFLE_PARTITIONS": "2",
        "MLOPS_SPARK__UI_ENABLED": "false",
        "MLOPS_SPARK_MASTER": spark_cluster.master_url,
        "MLOPS_SPARK_SUBMIT_ARGS": "--driver-memory 1g --executor-memory 768m --total-executor-cores 1",
    }
    submit = subprocess.run(
        [
            str(REPO_ROOT / "spark-submit.sh"),
            "datagen",
            "--rows",
            str(ROWS),
            "--customers",
            str(CUSTOMERS),
            "--seed",
            str(SEED),
            "--table",
            "bronze.generated_transactions",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert submit.returncode == 0, submit.stderr[-4000:]
    assert "mlops-spark-datagen" in _completed_apps(spark_cluster.web_ui)

    # A new session in a new process, on the same metastore, knows the table by name.
    reader = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from mlops_spark.config import load_settings; from mlops_spark.spark.session import get_spark;"
            "s = get_spark(load_settings());"
            f"r = s.sql('SELECT {', '.join(SUMMARY)} FROM bronze.generated_transactions').first();"
            "print(json.dumps(r.asDict()))",
        ],
        env={k: v for k, v in env.items() if k != "MLOPS_SPARK_MASTER"} | {"MLOPS_SPARK__MASTER": "local[1]"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reader.returncode == 0, reader.stderr[-4000:]
    from_cluster = json.loads(reader.stdout.strip().splitlines()[-1])

    # The same generator run locally in this session gives the same rows (deterministic for a seed).
    from mlops_spark.datagen import generate_transactions

    local = generate_transactions(spark, rows=ROWS, customers=CUSTOMERS, seed=SEED)
    expected = local.selectExpr(*SUMMARY).first()
    assert from_cluster == expected.asDict()
