"""Run Kafka ingestion in a child process for crash tests: its own SparkSession and lake.

    python -m tests.kafka_stream_job LAKE_ROOT BOOTSTRAP SOURCE_JSON MODE

The source definition comes as JSON (a :class:`KafkaSource` dump); the settings are the
test settings of ``LAKE_ROOT`` with the broker's address.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from mlops_spark import log as logsetup
from mlops_spark.ingest.kafka import run_kafka
from mlops_spark.ingest.kafka_spec import KafkaSource
from mlops_spark.spark.session import get_spark
from tests.support import make_settings


def main(argv: list[str]) -> int:
    lake_root, bootstrap, source_json, mode = argv
    logsetup.configure("INFO")
    settings = make_settings(Path(lake_root), kafka={"bootstrap_servers": bootstrap}, spark={"driver_memory": "1g"})
    source = KafkaSource.model_validate(json.loads(source_json))
    spark = get_spark(settings, app_name=f"kafka-job-{mode}")
    result = run_kafka(spark, settings, source, mode)  # type: ignore[arg-type]
    logging.getLogger("tests.kafka_stream_job").info("done: %s", result)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
