"""spark-submit entry point of `mlops-spark ingest`; options: `mlops-spark ingest --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
