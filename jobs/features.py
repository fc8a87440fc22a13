"""spark-submit entry point of `mlops-spark features`; options: `mlops-spark features --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
