"""spark-submit entry point of `mlops-spark train`; options: `mlops-spark train --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
