#!/usr/bin/env bash
# The Online Retail churn example, end to end: ingest -> validate -> features (backfill)
# -> labels -> training-set -> train, then the test ROC-AUC of the time-based split.
#
# Usage: conf/examples/online_retail/run.sh [RAW_DIR]
#   RAW_DIR             folder of the daily Parquet files (or $ONLINE_RETAIL_RAW); default
#                       ../shared/data/online_retail/raw next to the checkout
#   MLOPS_LAKE_ROOT     the lake: Delta tables, Derby metastore, MLflow store (default ./lake-online-retail)
#   RUN_DATE            logical run date of every step (default 2011-12-09, the last day of the data)
#   FEATURES_START/END  the feature backfill range (default 2010-12-01 .. 2011-12-09)
#   SEPARATE_PROCESSES  1: run each step as its own `mlops-spark` process (one Spark JVM per
#                       step, as a scheduler would); default: the same commands in one process
# Every step is idempotent: running the script again changes nothing.
# Exit code: that of the first failing step (1 data quality, 2 bad input or config).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
raw="${1:-${ONLINE_RETAIL_RAW:-$repo/../shared/data/online_retail/raw}}"
if [ ! -d "$raw" ]; then
    echo "run.sh: raw data folder '$raw' does not exist (give the folder of daily Parquet files as the first argument)" >&2
    exit 2
fi
raw="$(cd "$raw" && pwd)"
lake="${MLOPS_LAKE_ROOT:-lake-online-retail}"
case "$lake" in /* | *://*) ;; *) lake="$PWD/$lake" ;; esac
if [ -x "$repo/.venv/bin/mlops-spark" ]; then
    bin="$repo/.venv/bin"
else
    bin="$(dirname "$(command -v mlops-spark)")"
fi
export MLOPS_CONF_DIR="$here" MLOPS_LAKE_ROOT="$lake" MLOPS_LANDING_ROOT="$raw"
export RUN_DATE="${RUN_DATE:-2011-12-09}" FEATURES_START="${FEATURES_START:-2010-12-01}" FEATURES_END="${FEATURES_END:-2011-12-09}"
export SEPARATE_PROCESSES="${SEPARATE_PROCESSES:-0}"
echo "raw data: $raw"
echo "lake:     $lake"

exec "$bin/python" - <<'EOF'
import os
import shlex
import subprocess
import sys
import time

steps = [
    ["ingest", "--source", "online_retail"],
    ["validate", "--table", "bronze.online_retail", "--all-dates"],
    ["features", "--feature-set", "online_retail_rfm", "--backfill", os.environ["FEATURES_START"], os.environ["FEATURES_END"]],
    ["labels", "--events-table", "silver.online_retail", "--entity-keys", "CustomerID", "--event-time", "InvoiceDate", "--horizon-days", "90"],
    ["training-set", "--definition", "online_retail_churn"],
    ["train", "--model", "online_retail_churn"],
]
common = ["--run-date", os.environ["RUN_DATE"], "--plain-logs", "--log-level", "WARNING"]
separate = os.environ["SEPARATE_PROCESSES"] == "1"
if not separate:
    from mlops_spark.cli import main  # every step's SparkSession is the first one: one JVM start
total = time.monotonic()
for argv in steps:
    print(f"== {argv[0]}: mlops-spark {shlex.join(argv)}", flush=True)
    start = time.monotonic()
    if separate:
        code = subprocess.run([os.path.join(os.path.dirname(sys.executable), "mlops-spark"), *argv, *common], check=False).returncode
    else:
        code = main([*argv, *common])
    sys.stdout.flush()
    print(f"== {argv[0]} took {time.monotonic() - start:.1f} s", flush=True)
    if code:
        print(f"run.sh: step {argv[0]} failed with exit code {code}", file=sys.stderr)
        sys.exit(code)

import mlflow

from mlops_spark.config import load_settings
from mlops_spark.config.loader import default_conf_dir
from mlops_spark.training.definition import load_definition

settings = load_settings()
split = load_definition(default_conf_dir() / "training_sets" / "online_retail_churn.yaml").split
mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
client = mlflow.MlflowClient()
name = "online_retail_churn"
latest = max(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
metrics = client.get_run(latest.run_id).data.metrics
print(f"== all steps took {time.monotonic() - total:.1f} s")
print(f"model {name} version {latest.version} (run {latest.run_id})")
print(f"label rows: train {metrics['rows_train']:.0f}, validation {metrics['rows_validation']:.0f}, test {metrics['rows_test']:.0f}")
print(f"validation ROC-AUC: {metrics['validation_roc_auc']:.4f}")
print(f"test ROC-AUC (time-based split: labels at cut-offs from {split.validation_until:%Y-%m-%d} on): {metrics['test_roc_auc']:.4f}")
EOF
