"""spark-submit entry point of `mlops-spark monitor`; options: `mlops-spark monitor --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["monitor", *sys.argv[1:]]))
