"""spark-submit entry point of `mlops-spark sql-server`; options: `mlops-spark sql-server --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["sql-server", *sys.argv[1:]]))
