# mlops-spark: the two set-up commands are `make demo` and `make test`.
# Both create the venv, install the pinned Python dependencies (constraints.txt)
# and fetch the JVM dependencies declared in jvm/pom.xml into .jars/ with Maven.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JARS   := .jars
MVN    ?= mvn
PYTEST_ARGS ?=
# make test runs the suite on this many pytest-xdist workers (0: in this process only).
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install venv jars check-prereqs test test-demo-rerun test-unit test-integration demo bench docs lint typecheck clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

check-prereqs:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.10+"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || { echo "error: Python 3.10+ is required ($(PYTHON) is older)"; exit 2; }
	@command -v java >/dev/null || { echo "error: java not found: install Java 17 (e.g. apt-get install openjdk-17-jdk-headless)"; exit 2; }
	@command -v $(MVN) >/dev/null || { echo "error: mvn not found: install Maven (e.g. apt-get install maven)"; exit 2; }

$(VENV)/.installed: pyproject.toml constraints.txt | check-prereqs
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

venv: $(VENV)/.installed ## create the venv and install Python dependencies

$(JARS)/.fetched: jvm/pom.xml $(VENV)/.installed | check-prereqs
	@for profile in spark kafka-broker derby-server; do \
	  echo "fetching JVM dependencies: $$profile"; \
	  rm -rf $(JARS)/$$profile; \
	  $(MVN) --batch-mode --quiet -f jvm/pom.xml -P $$profile dependency:copy-dependencies \
	    -DoutputDirectory=$(CURDIR)/$(JARS)/$$profile -DincludeScope=runtime || exit 2; \
	done
	$(PY) -m mlops_spark.spark.jars prune $(JARS)/spark
	@touch $@

# Hadoop's local file system without a chmod process per file (jvm/src, compiled with javac).
$(JARS)/localfs/.built: $(wildcard jvm/src/main/java/dev/mlopsspark/fs/*.java) $(VENV)/.installed
	@mkdir -p $(JARS)/localfs
	$(PY) -m mlops_spark.spark.jars build-local-fs $(JARS)/localfs/mlops-spark-localfs.jar
	@touch $@

# The class data sharing archive local sessions map at start-up (a small session writes it).
$(JARS)/cds/spark.jsa: $(JARS)/.fetched $(JARS)/localfs/.built
	$(PY) -m mlops_spark.spark.class_archive build $@

jars: $(JARS)/.fetched $(JARS)/localfs/.built $(JARS)/cds/spark.jsa ## fetch the JVM dependencies with Maven into .jars/, build the local file system class and the class archive

install: venv jars ## venv + JVM dependencies

test: install ## run the whole test suite on TEST_WORKERS workers (starts its own Kafka, MLflow, S3 and Spark servers)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

test-demo-rerun: install ## the demo tests plus a second full demo run that must change no table or model version
	MLOPS_TEST_DEMO_RERUN=1 $(PY) -m pytest tests/integration/test_demo.py $(PYTEST_ARGS)

test-unit: install ## unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install ## integration tests only
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

demo: install ## run the end-to-end demo on the embedded default (SIZE=small for a quick one)
	$(VENV)/bin/mlops-spark demo $(if $(SIZE),--size $(SIZE),)

bench: install ## run every benchmark (python -m benchmarks all)
	$(PY) -m benchmarks all

docs: venv ## regenerate docs/configuration.md from the settings models
	$(PY) -m mlops_spark.config.reference

lint: venv ## ruff lint + format check, mypy on the package
	$(VENV)/bin/ruff check mlops_spark tests benchmarks jobs
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean: ## remove the venv, jars, lake and caches
	rm -rf $(VENV) $(JARS) lake dist build *.egg-info .pytest_cache .mypy_cache .ruff_cache
