"""Run in a subprocess by the S3 ingestion test: `mlops-spark ingest` twice on a lake in s3a,
then the bronze rows as JSON lines prefixed ``ROW `` and the table location prefixed ``LOCATION ``.

Usage: python -m tests.s3_ingest_job SOURCE TABLE [CLI OPTIONS...]
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

from mlops_spark import cli


def main(argv: list[str]) -> int:
    source, table, *options = argv
    for _ in range(2):
        code = cli.main(["ingest", "--source", source, *options])
        if code != 0:
            return code
    spark = SparkSession.getActiveSession()
    assert spark is not None
    print("LOCATION " + spark.sql(f"DESCRIBE DETAIL {table}").first()["location"])
    for row in spark.table(table).toJSON().collect():
        print("ROW " + row)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
