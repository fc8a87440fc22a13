#!/usr/bin/env bash
# Submit one mlops-spark step to a Spark cluster:
#
#   spark-submit.sh <step> [step options...]      e.g.  spark-submit.sh features --run-date 2024-06-01
#
# It packages the mlops_spark package as a zip for --py-files, adds the JVM
# dependencies and submits jobs/<step>.py, which runs the same code as the
# `mlops-spark <step>` command.
#
# Environment:
#   MLOPS_SPARK_MASTER   master URL (default local[*]); spark://host:7077, yarn, k8s://...
#   MLOPS_JVM_DEPS       how the jars get there: `auto` (default: the local .jars/spark folder
#                        when it exists, else --packages), `jars`, `packages` (Maven coordinates
#                        of jvm/pom.xml, resolved by the cluster), `none` (Databricks: Delta built in)
#   MLOPS_SPARK_SUBMIT_ARGS  extra spark-submit options (--deploy-mode, --executor-memory, ...)
#   SPARK_SUBMIT         the spark-submit to use (default: the installed pyspark's)
#   MLOPS_SPARK_LOG_LEVEL  Spark's own log level (default WARN)
#   PYSPARK_PYTHON       Python of the executors (default: the venv's python)
#   MLOPS_ENV, MLOPS_*   settings, passed through to the job (see conf/ and `mlops-spark config show`)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "spark-submit.sh: $*" >&2; exit 2; }

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  echo "steps: $(cd "$here/jobs" && ls *.py | sed 's/\.py$//; s/_/-/g' | tr '\n' ' ')"
  [[ $# -lt 1 ]] && exit 2 || exit 0
fi

step=$1; shift
job="$here/jobs/${step//-/_}.py"
[[ -f "$job" ]] || die "unknown step '$step': no ${job#$here/} (steps: $(cd "$here/jobs" && ls *.py | sed 's/\.py$//; s/_/-/g' | tr '\n' ' '))"

if [[ -x "$here/.venv/bin/python" ]]; then default_py="$here/.venv/bin/python"; else default_py=$(command -v python3); fi
python=${PYSPARK_PYTHON:-$default_py}
submit=${SPARK_SUBMIT:-}
if [[ -z "$submit" ]]; then
  # PySpark's own launcher; SPARK_HOME must point at the installed pyspark package.
  if [[ -z "${SPARK_HOME:-}" ]]; then
    SPARK_HOME=$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null) \
      || die "pyspark is not importable by $python: run 'make install', or set SPARK_SUBMIT / PYSPARK_PYTHON"
    export SPARK_HOME
  fi
  submit="$SPARK_HOME/bin/spark-submit"
fi
[[ -x "$submit" ]] || die "spark-submit not found at $submit: run 'make install' or set SPARK_SUBMIT"

# Settings files: the checkout's conf/ unless the caller points elsewhere (the driver reads
# them; in cluster deploy mode ship them with --files/--archives and set MLOPS_CONF_DIR).
export MLOPS_CONF_DIR=${MLOPS_CONF_DIR:-$here/conf}

# The package as a zip for the executors (and the driver in cluster deploy mode).
dist="$here/dist"; mkdir -p "$dist"
zip="$dist/mlops_spark.zip"
(cd "$here" && "$python" - "$zip" <<'PY'
import pathlib, sys, zipfile
out = pathlib.Path(sys.argv[1])
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in sorted(pathlib.Path("mlops_spark").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            zf.write(path, path.as_posix())
PY
)

deps=()
mode=${MLOPS_JVM_DEPS:-auto}
if [[ "$mode" == auto ]]; then
  if compgen -G "$here/.jars/spark/*.jar" >/dev/null; then mode=jars; else mode=packages; fi
fi
case "$mode" in
  jars)     deps=(--jars "$("$python" -m mlops_spark.spark.jars classpath "$here/.jars/spark")") ;;
  packages) deps=(--packages "$(cd "$here" && "$python" -m mlops_spark.spark.jars packages)") ;;
  none)     ;;
  *)        die "MLOPS_JVM_DEPS must be auto, jars, packages or none (got '$mode')" ;;
esac

master=${MLOPS_SPARK_MASTER:-local[*]}
# shellcheck disable=SC2086  # MLOPS_SPARK_SUBMIT_ARGS is a list of options on purpose
exec "$submit" \
  --master "$master" \
  --name "mlops-spark-$step" \
  --conf "spark.pyspark.python=$python" \
  --conf "spark.pyspark.driver.python=$python" \
  --conf "spark.sql.session.timeZone=UTC" \
  --conf "spark.log.level=${MLOPS_SPARK_LOG_LEVEL:-WARN}" \
  --py-files "$zip" \
  "${deps[@]}" \
  ${MLOPS_SPARK_SUBMIT_ARGS:-} \
  "$job" "$@"
