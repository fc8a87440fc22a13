"""spark-submit entry point of `mlops-spark validate`; options: `mlops-spark validate --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))
