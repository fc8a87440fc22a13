"""spark-submit entry point of `mlops-spark datagen`; options: `mlops-spark datagen --help`."""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["datagen", *sys.argv[1:]]))
