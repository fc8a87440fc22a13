"""Schemas of the validation log tables ``ml.dq_results`` and ``ml.dq_runs``.

Both are replaced per (source table, suite, run date): re-validating a date replaces
that date's rows, so the tables stay one row per expectation / per run-date while the
Delta history keeps every earlier run. ``ml.dq_runs`` also records the Delta versions a
run read (bronze) and wrote (silver, quarantine): a re-run on the same versions is skipped.
"""

from __future__ import annotations

from pyspark.sql import types as T

DQ_RESULTS = "dq_results"
DQ_RUNS = "dq_runs"


def _field(name: str, data_type: T.DataType, comment: str, nullable: bool = True) -> T.StructField:
    return T.StructField(name, data_type, nullable, metadata={"comment": comment})


DQ_RESULTS_SCHEMA = T.StructType(
    [
        _field("run_id", T.StringType(), "validation run id (also in ml.dq_runs and on written rows)", False),
        _field("run_date", T.DateType(), "logical date of the run", False),
        _field("source_table", T.StringType(), "validated bronze table", False),
        _field("suite", T.StringType(), "suite name", False),
        _field("suite_version", T.IntegerType(), "suite version"),
        _field("check_source", T.StringType(), "gx (Great Expectations), batch_rule or row_rule", False),
        _field("expectation_type", T.StringType(), "GX expectation type, or row_rule:<kind>", False),
        _field("rule_name", T.StringType(), "row rule name (row rules only)"),
        _field("column", T.StringType(), "column(s) checked"),
        _field("kwargs", T.StringType(), "arguments as JSON"),
        _field("action", T.StringType(), "warn, quarantine or fail"),
        _field("success", T.BooleanType(), "whether the check passed", False),
        _field("observed_value", T.StringType(), "observed value as JSON"),
        _field("unexpected_count", T.LongType(), "rows that broke the check"),
        _field("element_count", T.LongType(), "rows checked"),
        _field("details", T.StringType(), "sample of unexpected values or the error, as JSON"),
        _field("validated_at", T.TimestampType(), "when the run started", False),
    ]
)

DQ_RUNS_SCHEMA = T.StructType(
    [
        _field("run_id", T.StringType(), "validation run id", False),
        _field("run_date", T.DateType(), "logical date of the run", False),
        _field("source_table", T.StringType(), "validated bronze table", False),
        _field("suite", T.StringType(), "suite name", False),
        _field("suite_version", T.IntegerType(), "suite version"),
        _field("scope", T.StringType(), "'date' (bronze rows of the run date) or 'all' (whole table)", False),
        _field("silver_table", T.StringType(), "where valid rows went"),
        _field("quarantine_table", T.StringType(), "where quarantined rows went"),
        _field("status", T.StringType(), "passed, or failed (nothing written to silver)", False),
        _field("rows_in", T.LongType(), "bronze rows validated", False),
        _field("rows_silver", T.LongType(), "rows written to silver (read back)", False),
        _field("rows_quarantined", T.LongType(), "rows written to quarantine (read back)", False),
        _field("rows_warned", T.LongType(), "rows that broke a warn rule (in silver or quarantine)", False),
        _field("rows_failed", T.LongType(), "rows that broke a fail rule", False),
        _field("reconciled", T.BooleanType(), "rows_in = rows_silver + rows_quarantined (null when failed)"),
        _field("message", T.StringType(), "failure reason, if any"),
        _field("started_at", T.TimestampType(), "run start", False),
        _field("finished_at", T.TimestampType(), "run end", False),
        # Added later: a table created before them gets them on its next write (delta.add_missing_columns).
        _field("source_version", T.LongType(), "Delta version of the bronze table read"),
        _field("suite_hash", T.StringType(), "SHA-256 of the suite's content (rules, expectations, columns)"),
        _field("silver_version", T.LongType(), "Delta version of silver after this run's write"),
        _field("quarantine_version", T.LongType(), "Delta version of quarantine after this run's write"),
    ]
)
