"""The ``validate`` step: bronze batch -> suite -> silver + quarantine + run log.

Which rows: the bronze rows whose ``date_column`` equals the run date (or the whole
table with ``all_dates``). Idempotence: silver and quarantine are written with Delta
``replaceWhere`` on that date (the whole table for ``all_dates``), and the log tables
are replaced per (source table, suite, run date), so re-validating a date replaces
the earlier result instead of adding to it.

Unchanged inputs write nothing: the run log records the bronze Delta version read, the
suite (version and content hash) and the silver and quarantine versions the run left.
A run whose last *passed* run for the same table, suite, scope and run date read the same
bronze version with the same suite, and whose silver and quarantine are still at the
versions it left (no other writer since), is skipped: no new Delta version anywhere, so
the steps downstream (features, training set, train) see unchanged inputs too.
``force`` re-validates anyway.

Order of work, so that a failure writes nothing downstream:

1. schema pre-check from the suite's ``columns`` (metadata only); a mismatch runs the
   GX suite for the record, logs the run as failed and raises :class:`DataQualityError`;
2. every row rule in one projection (:func:`~mlops_spark.validate.rules.apply_rules`),
   cached, counted in one aggregate together with the batch rules (freshness);
3. GX batch expectations on the cached batch; all results to ``ml.dq_results``;
4. any broken ``fail`` rule or failed ``fail`` expectation: run logged as failed,
   :class:`DataQualityError`, silver and quarantine untouched;
5. silver and quarantine written, read back, and ``rows_in = silver + quarantined``
   checked before the run-log row is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark.config import Settings
from mlops_spark.config.settings import is_remote
from mlops_spark.errors import DataQualityError, UsageError
from mlops_spark.log import fields
from mlops_spark.spark import delta
from mlops_spark.validate.expectations import freshness_aggregates, freshness_results, run_expectations
from mlops_spark.validate.quarantine import quarantine_rows, silver_rows
from mlops_spark.validate.rules import apply_rules, summarize
from mlops_spark.validate.suite import SPARK_TYPES, Suite, load_suite, resolve_suite_path, suites_dir
from mlops_spark.validate.tables import DQ_RESULTS, DQ_RESULTS_SCHEMA, DQ_RUNS, DQ_RUNS_SCHEMA

log = logging.getLogger(__name__)


@dataclass
class ValidationOutcome:
    """What one validation run did (also the row written to ``ml.dq_runs``)."""

    run_id: str
    status: str
    rows_in: int
    rows_silver: int
    rows_quarantined: int
    rows_warned: int
    rows_failed: int
    silver_table: str
    quarantine_table: str
    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: bool = False
    """True when nothing changed since the run ``run_id`` (whose counts these are) and nothing was written."""
    source_version: int | None = None
    """Delta version of the bronze table read."""


def schema_problems(df: DataFrame, suite: Suite) -> list[str]:
    """Differences between ``df`` and the suite's declared ``columns`` (extra columns are fine)."""
    have = {f.name: type(f.dataType).__name__ for f in df.schema.fields}
    problems = []
    if suite.date_column not in have:
        problems.append(f"missing date column {suite.date_column}")
    for column, type_name in suite.columns.items():
        if column not in have:
            problems.append(f"missing column {column} ({type_name})")
        elif have[column] != SPARK_TYPES[type_name]:
            actual = df.schema[column].dataType.simpleString()
            problems.append(f"column {column} is {actual}, expected {type_name}")
    return problems


def suite_hash(suite: Suite) -> str:
    """SHA-256 of what the suite checks (everything but the file it was read from): an edit
    that forgets to bump ``version`` still counts as a different suite."""
    content = json.dumps(suite.model_dump(mode="json", exclude={"source"}), sort_keys=True, default=str)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _row_rule_results(suite: Suite, summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for i, rule in enumerate(suite.rules):
        broken = int(summary[f"rule_{i}"])
        spec = rule.model_dump(exclude={"name", "action", "description", "kind"})
        column = getattr(rule, "column", None) or ",".join(getattr(rule, "columns", []))
        rows.append(
            {
                "check_source": "row_rule",
                "expectation_type": f"row_rule:{rule.kind}",
                "rule_name": rule.name,
                "column": column or None,
                "kwargs": json.dumps(spec, default=str, sort_keys=True),
                "action": rule.action,
                "success": broken == 0,
                "observed_value": json.dumps(broken),
                "unexpected_count": broken,
                "element_count": int(summary["rows_in"]),
                "details": json.dumps({"description": rule.description}) if rule.description else None,
            }
        )
    return rows


def _docs_dir(settings: Settings, suite: Suite) -> Path | None:
    if not settings.validation.data_docs:
        return None
    root = str(settings.reports_root)
    if is_remote(root):
        log.warning("data docs skipped: reports_root is not a local folder", extra=fields(reports_root=root))
        return None
    return Path(root.removeprefix("file:")) / "data_docs" / suite.name


def _log_condition(source_table: str, suite: Suite, run_date: dt.date) -> str:
    return " AND ".join(
        [delta.col_eq("source_table", source_table), delta.col_eq("suite", suite.name), delta.col_eq("run_date", run_date.isoformat())]
    )


class _Run:
    """Identity of one run and the writers of its log rows."""

    def __init__(
        self, spark: SparkSession, settings: Settings, table: str, suite: Suite, run_date: dt.date, all_dates: bool, source_version: int
    ):
        self.spark, self.settings, self.table, self.suite, self.run_date = spark, settings, table, suite, run_date
        self.scope = "all" if all_dates else "date"
        self.source_version = source_version
        self.suite_hash = suite_hash(suite)
        self.silver_version: int | None = None
        self.quarantine_version: int | None = None
        self.run_id = uuid.uuid4().hex
        self.started_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        name = table.split(".")[-1]
        self.silver_table = settings.table("silver", name)
        self.quarantine_table = settings.table("quarantine", f"{name}_rows")

    def write_results(self, results: list[dict[str, Any]]) -> None:
        common = {
            "run_id": self.run_id,
            "run_date": self.run_date,
            "source_table": self.table,
            "suite": self.suite.name,
            "suite_version": self.suite.version,
            "validated_at": self.started_at,
        }
        rows = [{"check_source": "gx", "rule_name": None, **r, **common} for r in results]
        df = self.spark.createDataFrame([tuple(r.get(f.name) for f in DQ_RESULTS_SCHEMA.fields) for r in rows], DQ_RESULTS_SCHEMA)
        self._replace(df, self.settings.table("ml", DQ_RESULTS), DQ_RESULTS_SCHEMA, "validation results: one row per expectation and rule")

    def write_run(self, outcome: ValidationOutcome, reconciled: bool | None, message: str | None) -> None:
        row = {
            **outcome.__dict__,
            "run_date": self.run_date,
            "source_table": self.table,
            "suite": self.suite.name,
            "suite_version": self.suite.version,
            "scope": self.scope,
            "source_version": self.source_version,
            "suite_hash": self.suite_hash,
            "silver_version": self.silver_version,
            "quarantine_version": self.quarantine_version,
            "reconciled": reconciled,
            "message": message,
            "started_at": self.started_at,
            "finished_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
        }
        df = self.spark.createDataFrame([tuple(row.get(f.name) for f in DQ_RUNS_SCHEMA.fields)], DQ_RUNS_SCHEMA)
        self._replace(df, self.settings.table("ml", DQ_RUNS), DQ_RUNS_SCHEMA, "validation run log: rows in, to silver, quarantined")

    def _replace(self, df: DataFrame, name: str, schema: Any, comment: str) -> None:
        if not delta.table_exists(self.spark, name):
            delta.append(df, name)  # column comments come from the schema's metadata
            delta.set_comments(self.spark, name, table_comment=comment)
            return
        delta.add_missing_columns(self.spark, name, schema)
        # The rows carry the condition's own table, suite and run date: Delta's row check is redundant.
        delta.overwrite_where(df, name, _log_condition(self.table, self.suite, self.run_date), check_rows=False)

    def unchanged_run(self) -> ValidationOutcome | None:
        """The last run's outcome when it passed on the same inputs and left silver and
        quarantine as they are now; else ``None`` (validate)."""
        runs_table = self.settings.table("ml", DQ_RUNS)
        if not delta.table_exists(self.spark, runs_table):
            return None
        runs = self.spark.table(runs_table)
        if "source_version" not in runs.columns:  # written by a release that did not record versions
            return None
        last = runs.where(_log_condition(self.table, self.suite, self.run_date)).orderBy(F.col("finished_at").desc()).first()
        if last is None:
            return None
        same_inputs = (
            last["status"] == "passed"
            and last["scope"] == self.scope
            and last["source_version"] == self.source_version
            and last["suite_version"] == self.suite.version
            and last["suite_hash"] == self.suite_hash
            and last["silver_table"] == self.silver_table
            and last["quarantine_table"] == self.quarantine_table
        )
        if not same_inputs:
            return None
        for name, version in ((self.silver_table, last["silver_version"]), (self.quarantine_table, last["quarantine_version"])):
            if version is None or not delta.table_exists(self.spark, name) or delta.current_version(self.spark, name) != version:
                return None
        return ValidationOutcome(
            last["run_id"], "passed", last["rows_in"], last["rows_silver"], last["rows_quarantined"], last["rows_warned"], 0,
            self.silver_table, self.quarantine_table, skipped=True, source_version=self.source_version,
        )  # fmt: skip

    def failed(self, counts: dict[str, int], message: str) -> DataQualityError:
        outcome = ValidationOutcome(
            self.run_id, "failed", counts.get("rows_in", 0), 0, 0, counts.get("rows_warned", 0), counts.get("rows_fail", 0),
            self.silver_table, self.quarantine_table,
        )  # fmt: skip
        self.write_run(outcome, None, message)
        log.warning("validation failed", extra=fields(run_id=self.run_id, table=self.table, suite=self.suite.name, reason=message))
        return DataQualityError(message)


def _files(rows: int, rows_per_file: int) -> int:
    return max(1, -(-rows // rows_per_file))


def _failures(results: list[dict[str, Any]]) -> list[str]:
    failures = []
    for r in results:
        if r["action"] == "fail" and not r["success"]:
            if r["check_source"] == "row_rule":
                failures.append(f"rule {r['rule_name']} broken by {r['unexpected_count']} rows")
            else:
                failures.append(f"{r['expectation_type']}({r['column'] or ''}) observed {r['observed_value']}")
    return failures


def load_suite_for(settings: Settings, table: str, suite_name: str | None) -> Suite:
    """The suite named ``suite_name`` (default: the bronze table's name) from the suites folder."""
    return load_suite(resolve_suite_path(suite_name or table.split(".")[-1], suites_dir(settings.validation.suites_dir)))


def run(
    spark: SparkSession,
    settings: Settings,
    table: str,
    run_date: dt.date,
    suite_name: str | None = None,
    all_dates: bool = False,
    force: bool = False,
) -> ValidationOutcome:
    """Validate a bronze table's rows for ``run_date`` (or all) and write silver and quarantine.

    Args:
        spark: the session.
        settings: settings (databases, suites folder, reports root).
        table: the bronze table, ``database.table``.
        run_date: the logical date; selects ``date_column = run_date`` unless ``all_dates``.
        suite_name: suite name or ``.yaml`` path; default the table's name.
        all_dates: validate the whole table and replace silver/quarantine whole.
        force: validate even when the last passed run read the same bronze version with
            the same suite and silver/quarantine are unchanged since.

    Returns:
        The run's counts and results; when skipped, the earlier run's counts (``skipped``
        true, ``results`` empty) and nothing written.

    Raises:
        UsageError: unknown table or suite.
        ConfigError: bad suite file.
        DataQualityError: schema mismatch, a broken ``fail`` rule or expectation
            (nothing written to silver), or a failed reconciliation.
    """
    delta.quote_table(table)
    if not delta.table_exists(spark, table):
        raise UsageError(f"table '{table}' does not exist")
    suite = load_suite_for(settings, table, suite_name)
    source_version = delta.current_version(spark, table)
    current = _Run(spark, settings, table, suite, run_date, all_dates, source_version)
    previous = None if force else current.unchanged_run()
    if previous is not None:
        log.info(
            "already validated",
            extra=fields(run_id=previous.run_id, table=table, suite=suite.name, run_date=str(run_date), source_version=source_version),
        )
        return previous
    # Read the version recorded, whatever is appended meanwhile.
    bronze = delta.read_version(spark, table, source_version)
    log.info("validating", extra=fields(run_id=current.run_id, table=table, suite=suite.name, run_date=str(run_date), scope=current.scope))

    problems = schema_problems(bronze, suite)
    if problems:
        current.write_results(run_expectations(bronze, suite, None, settings.validation.result_rows_sample, schema_only=True))
        raise current.failed({}, f"{table}: does not match suite '{suite.name}' ({suite.source}): {'; '.join(problems)}; nothing written")
    if not all_dates:
        bronze = bronze.where(F.col(suite.date_column) == F.lit(run_date))

    flagged = bronze.transform(apply_rules, suite.rules).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _validate_and_write(current, flagged, bronze.columns)
    finally:
        flagged.unpersist()


def _validate_and_write(current: _Run, flagged: DataFrame, columns: list[str]) -> ValidationOutcome:
    suite, settings, spark = current.suite, current.settings, current.spark
    summary = flagged.transform(summarize, suite.rules, extra=freshness_aggregates(suite.batch_rules)).first().asDict()  # type: ignore[union-attr]
    counts = {k: int(summary[k]) for k in ("rows_in", "rows_fail", "rows_quarantined", "rows_warned")}
    gx_results = run_expectations(flagged.select(*columns), suite, _docs_dir(settings, suite), settings.validation.result_rows_sample)
    results = (
        gx_results
        + [{"check_source": "batch_rule", **r} for r in freshness_results(suite.batch_rules, summary, current.run_date)]
        + _row_rule_results(suite, summary)
    )
    results = [{"check_source": "gx", "rule_name": None, **r} for r in results]
    current.write_results(results)
    for r in results:
        if not r["success"] and r["action"] == "warn":
            log.warning(
                "check failed (warn)",
                extra=fields(run_id=current.run_id, check=r["rule_name"] or r["expectation_type"], column=r["column"]),
            )

    failures = _failures(results)
    if failures:
        message = f"{current.table}: suite '{suite.name}' failed: {'; '.join(failures)}; nothing written to {current.silver_table}"
        raise current.failed(counts, message)

    silver = flagged.transform(silver_rows, current.run_id)
    quarantine = flagged.transform(quarantine_rows, current.run_id, current.run_date)
    if current.scope == "all":
        date_condition = "true"
        # The unique rules' shuffle spreads every date over every partition, and each task
        # writes a file into each date it holds (small demo: 8 tasks x 367 days made 2,942
        # silver files of 20 rows and 1,324 quarantine files for 1,800 rows, 40 s of writing).
        # Repartitioned by date, each date is written by one task, in one file.
        by_date = F.col(suite.date_column)
        silver, quarantine = silver.repartition(by_date), quarantine.repartition(by_date)
    else:
        date_condition = delta.col_eq(suite.date_column, current.run_date.isoformat())
        # One file per shuffle partition would be 200 small files a day with 200 partitions. The
        # batch is cached and counted already: coalescing it re-reads the cache, recomputes nothing.
        rows_quarantined = counts["rows_quarantined"]
        silver = silver.coalesce(_files(counts["rows_in"] - rows_quarantined, settings.validation.rows_per_file))
        quarantine = quarantine.coalesce(_files(rows_quarantined, settings.validation.rows_per_file))
    # Rows written come from each commit's own metrics (Delta counted them as it wrote the
    # files): the reconciliation below needs no scan of silver and quarantine.
    # The commits carry the run id, so another writer committing meanwhile cannot be mistaken for them.
    delta.overwrite_where(silver, current.silver_table, date_condition, [suite.date_column], user_metadata=current.run_id)
    current.silver_version, written_silver = delta.last_commit(spark, current.silver_table, current.run_id)
    delta.overwrite_where(quarantine, current.quarantine_table, date_condition, [suite.date_column], user_metadata=current.run_id)
    current.quarantine_version, written_quarantine = delta.last_commit(spark, current.quarantine_table, current.run_id)
    outcome = ValidationOutcome(
        current.run_id, "passed", counts["rows_in"], written_silver, written_quarantine, counts["rows_warned"], 0,
        current.silver_table, current.quarantine_table, results, source_version=current.source_version,
    )  # fmt: skip
    reconciled = counts["rows_in"] == written_silver + written_quarantine and written_quarantine == counts["rows_quarantined"]
    if not reconciled:
        message = (
            f"{current.table}: reconciliation failed: {counts['rows_in']} rows in != {written_silver} to silver "
            f"+ {written_quarantine} quarantined (expected {counts['rows_quarantined']} quarantined)"
        )
        outcome.status = "failed"
        current.write_run(outcome, False, message)
        raise DataQualityError(message)
    current.write_run(outcome, True, None)
    log.info(
        "validated",
        extra=fields(
            run_id=current.run_id, table=current.table, rows_in=outcome.rows_in, rows_silver=written_silver,
            rows_quarantined=written_quarantine, rows_warned=outcome.rows_warned,
        ),
    )  # fmt: skip
    return outcome
