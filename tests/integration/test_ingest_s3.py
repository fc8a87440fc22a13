"""File ingestion over s3a against a real S3-compatible server (moto's standalone server).

The landing files AND the lake (bronze, quarantine, tracking, run log) live in the bucket.
The step runs in a subprocess through the CLI with its own settings (lake_root s3a://...);
the credentials reach it only through MLOPS_S3__* environment variables, and the test
asserts they never appear in its output or logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark.io import s3
from tests.fixtures.s3 import S3Server
from tests.ingest_data import EXPECTED_SCHEMA, SOURCE_YAML, raw_table, reference
from tests.support import REPO_ROOT, make_settings


def test_s3_round_trip_ingests_once_quarantines_and_keeps_secrets_out_of_logs(
    spark: SparkSession, s3_server: S3Server, tmp_path: Path, unique_name: str
) -> None:
    bucket = unique_name.replace("_", "-")[:50]
    local = tmp_path / "raw"
    local.mkdir()
    files = [local / "2024-10-26.parquet", local / "2024-10-27.parquet"]
    pq.write_table(raw_table("2024-10-26 22:00"), files[0])
    pq.write_table(raw_table("2024-10-26 23:10"), files[1])
    (local / "broken.parquet").write_bytes(b"PAR1 this is not parquet")

    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "orders.yaml").write_text(SOURCE_YAML.format(landing=f"s3a://{bucket}/landing", table="orders"), encoding="utf-8")
    conf = {
        "lake_root": f"s3a://{bucket}/lake",
        # An in-memory catalog: the subprocess needs table names only for its own session,
        # and creating a Derby metastore would dominate the test's time.
        "metastore": {"kind": "none"},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"},
        "spark": {"master": "local[2]", "ui_enabled": False, "shuffle_partitions": 2, "driver_memory": "1g"},
        "s3": {"endpoint_url": s3_server.endpoint_url, "path_style_access": True, "region": s3_server.region},
        "ingest": {"sources_dir": str(sources)},
    }
    conf_file = tmp_path / "s3.yaml"
    conf_file.write_text(json.dumps(conf), encoding="utf-8")

    secrets = {"MLOPS_S3__ACCESS_KEY_ID": s3_server.access_key_id, "MLOPS_S3__SECRET_ACCESS_KEY": s3_server.secret_access_key}
    boto = s3.client(
        make_settings(
            tmp_path, s3={**conf["s3"], "access_key_id": s3_server.access_key_id, "secret_access_key": s3_server.secret_access_key}
        )
    )
    boto.create_bucket(Bucket=bucket)
    s3.upload_folder(boto, local, f"s3a://{bucket}/landing")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "AWS_"))}
    env.update(secrets, PYTHONPATH=str(REPO_ROOT))
    cmd = [
        sys.executable,
        "-m",
        "tests.s3_ingest_job",
        "orders",
        "bronze.orders",
        "--conf",
        str(conf_file),
        "--conf-dir",
        str(REPO_ROOT / "conf"),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [(s["files_ingested"], s["files_quarantined"], s["files_skipped"], s["rows_written"]) for s in summaries] == [
        (2, 1, 0, 6),
        (0, 0, 3, 0),
    ]
    location = next(line.removeprefix("LOCATION ") for line in proc.stdout.splitlines() if line.startswith("LOCATION "))
    assert location == f"s3a://{bucket}/lake/bronze/orders"
    assert f"lake/bronze/orders/_delta_log/{0:020d}.json" in s3.list_keys(boto, f"s3a://{bucket}/lake/bronze/orders/_delta_log/")
    assert any(k.startswith("lake/quarantine/orders_files/") for k in s3.list_keys(boto, f"s3a://{bucket}/lake/quarantine/"))

    rows = [json.loads(line.removeprefix("ROW ")) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
    actual = (
        spark.createDataFrame([json.dumps(r) for r in rows], "string")
        .select(F.from_json("value", EXPECTED_SCHEMA).alias("r"))
        .select("r.*")
    )
    expected = reference(spark, files, uri_of=lambda p: f"s3a://{bucket}/landing/{p.name}")
    assertDataFrameEqual(actual, expected)

    output = proc.stdout + proc.stderr
    for secret in secrets.values():
        assert secret not in output
