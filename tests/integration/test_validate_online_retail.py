"""bronze -> validate -> silver on the real Online Retail files, checked against DuckDB on the raw files."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from pyspark.sql import functions as F

from mlops_spark.validate.pipeline import run

# Each quarantine rule of conf/expectations/online_retail.yaml as a DuckDB predicate of a broken row.
RULES_SQL = {
    "null_customer_id": "CustomerID IS NULL",
    "cancellation": "InvoiceNo LIKE 'C%'",
    "zero_unit_price": "UnitPrice = 0",
    "negative_unit_price": "UnitPrice < 0",
    "non_positive_quantity": "NOT (Quantity > 0 OR InvoiceNo LIKE 'C%')",
}


@pytest.fixture(scope="module")
def duckdb_counts(online_retail_raw):
    glob = str(online_retail_raw / "*.parquet")
    broken = " OR ".join(f"({p})" for p in RULES_SQL.values())
    selects = ", ".join(f"count(*) FILTER (WHERE {p}) AS {name}" for name, p in RULES_SQL.items())
    query = (
        f"SELECT count(*) AS total, {selects}, count(*) FILTER (WHERE {broken}) AS quarantined, "
        f"count(*) FILTER (WHERE Description IS NULL AND NOT ({broken})) AS silver_warned "
        "FROM read_parquet(?)"
    )
    with duckdb.connect() as con:
        cur = con.execute(query, [glob])
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))


@pytest.fixture(scope="module")
def validated(spark, settings, online_retail_raw):
    """Bronze by the ingest step from the raw files, then one all-dates validation run."""
    from mlops_spark.ingest.pipeline import run as ingest
    from mlops_spark.ingest.sources import load_source

    source = load_source("online_retail", settings).model_copy(
        update={"name": "retail_validate_it", "landing_path": str(online_retail_raw), "table": "retail_validate_it"}
    )
    ingest(spark, settings, source, dt.date(2011, 12, 9))
    outcome = run(spark, settings, "bronze.retail_validate_it", dt.date(2011, 12, 9), suite_name="online_retail", all_dates=True)
    return outcome, spark.table("silver.retail_validate_it"), spark.table("quarantine.retail_validate_it_rows")


def test_duckdb_reference_has_the_documented_defects(duckdb_counts):
    expected = {"total": 541_909, "null_customer_id": 135_080, "cancellation": 9_288, "zero_unit_price": 2_515, "negative_unit_price": 2}
    assert {k: duckdb_counts[k] for k in expected} == expected


def test_quarantine_holds_every_row_of_each_rule_as_duckdb_counts_them(validated, duckdb_counts):
    _, _, quarantine = validated
    counts = quarantine.agg(*[F.count_if(F.array_contains("_failed_rules", name)).alias(name) for name in RULES_SQL]).first().asDict()
    assert counts == {name: duckdb_counts[name] for name in RULES_SQL}
    assert counts["null_customer_id"] == 135_080 and counts["cancellation"] == 9_288
    assert counts["zero_unit_price"] == 2_515 and counts["negative_unit_price"] == 2


def test_every_raw_row_is_in_silver_or_quarantine(validated, duckdb_counts):
    outcome, silver, quarantine = validated
    assert (silver.count(), quarantine.count()) == (541_909 - duckdb_counts["quarantined"], duckdb_counts["quarantined"])
    assert (outcome.rows_in, outcome.rows_silver + outcome.rows_quarantined) == (541_909, 541_909)


def test_silver_flags_missing_descriptions_and_holds_no_quarantine_defect(validated, duckdb_counts):
    _, silver, _ = validated
    assert silver.where(F.array_contains("_dq_warnings", "missing_description")).count() == duckdb_counts["silver_warned"]
    defects = silver.where("CustomerID IS NULL OR InvoiceNo LIKE 'C%' OR UnitPrice <= 0 OR Quantity <= 0").count()
    assert defects == 0


def test_run_log_and_row_rule_results_agree_with_duckdb(spark, validated, duckdb_counts):
    outcome, _, _ = validated
    run_row = spark.table("ml.dq_runs").where(F.col("run_id") == outcome.run_id).first()
    assert (run_row.status, run_row.scope, run_row.rows_in, run_row.rows_quarantined, run_row.reconciled) == (
        "passed", "all", 541_909, duckdb_counts["quarantined"], True,
    )  # fmt: skip
    results = spark.table("ml.dq_results").where((F.col("run_id") == outcome.run_id) & (F.col("check_source") == "row_rule"))
    by_rule = {r.rule_name: r.unexpected_count for r in results.collect()}
    assert {name: by_rule[name] for name in RULES_SQL} == {name: duckdb_counts[name] for name in RULES_SQL}
