"""spark-submit entry point of `mlops-spark demo`; options: `mlops-spark demo --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
