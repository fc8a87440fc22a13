"""spark-submit entry point of `mlops-spark training-set`; options: `mlops-spark training-set --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["training-set", *sys.argv[1:]]))
