"""spark-submit entry point of `mlops-spark labels`; options: `mlops-spark labels --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["labels", *sys.argv[1:]]))
