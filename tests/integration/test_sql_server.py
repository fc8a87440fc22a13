"""Analysts' SQL access: a JDBC client (beeline) reads a feature table by name through
``mlops-spark sql-server`` (the Spark Thrift Server) on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

from tests.servers import ManagedProcess, free_port, port_open, wait_until
from tests.support import REPO_ROOT

WRITER = """
from mlops_spark.config import load_settings
from mlops_spark.spark.session import get_spark
spark = get_spark(load_settings())
rows = [(1, "2024-01-01", 10.5), (2, "2024-01-01", None), (3, "2024-01-02", 7.25)]
df = spark.createDataFrame(rows, "customer_id BIGINT, feature_date STRING, amount_sum_30d DOUBLE")
df.write.format("delta").mode("overwrite").saveAsTable("features.customer_spend")
"""


def _beeline() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "bin" / "beeline"


def test_jdbc_client_reads_a_feature_table_by_name_through_the_thrift_server(tmp_path):
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "MLOPS_ENV": "local",
        "MLOPS_LAKE_ROOT": str(tmp_path / "lake"),
        "MLOPS_SPARK__MASTER": "local[1]",
        "MLOPS_SPARK__UI_ENABLED": "false",
        "MLOPS_SPARK__SHUFFLE_PARTITIONS": "1",
        "MLOPS_SPARK__DRIVER_MEMORY": "1g",
    }
    writer = subprocess.run([sys.executable, "-c", WRITER], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert writer.returncode == 0, writer.stderr[-3000:]

    port = free_port()
    server = ManagedProcess(
        "sql-server", [sys.executable, "-m", "mlops_spark.cli", "sql-server", "--port", str(port)], tmp_path, env=env, cwd=REPO_ROOT
    )
    try:
        wait_until(lambda: port_open(port), 180, "spark thrift server", server)
        query = subprocess.run(
            [str(_beeline()), "-u", f"jdbc:hive2://127.0.0.1:{port}/default", "-n", "analyst", "--silent=true",
             "--outputformat=csv2", "--showHeader=false",
             "-e", "SELECT customer_id, amount_sum_30d FROM features.customer_spend ORDER BY customer_id"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
        assert query.returncode == 0, query.stdout[-2000:] + query.stderr[-2000:]
        # beeline echoes its prompt before the first line of output in -e mode.
        lines = [line.rsplit("> ", 1)[-1] for line in query.stdout.strip().splitlines()]
        assert list(csv.reader(io.StringIO("\n".join(lines)))) == [["1", "10.5"], ["2", "NULL"], ["3", "7.25"]]
    finally:
        server.stop()
