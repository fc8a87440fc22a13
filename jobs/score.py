"""spark-submit entry point of `mlops-spark score`; options: `mlops-spark score --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
