"""spark-submit entry point of `mlops-spark retrain`; options: `mlops-spark retrain --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", *sys.argv[1:]]))
