"""Validation: a 10-expectation Great Expectations suite vs one Spark aggregate pass.

Data (``--rows`` N, default 10,000,000): synthetic transactions from
:func:`mlops_spark.datagen.generate_transactions` with the typical defect mix, written
once as Parquet, read back and cached so every contender scans the same memory.

Contenders:
  ``project``            :func:`mlops_spark.validate.expectations.run_expectations` with the
                         10 expectations below (GX 1.x on Spark; several jobs per expectation)
  ``spark_single_pass``  ONE ``agg`` computing the same statistics (counts of nulls, of
                         out-of-range and out-of-set values, distinct keys, mean)
  ``project_row_rules``  the step's row-rule path on the same data: the 10 row rules of
                         ``conf/expectations/transactions.yaml`` in one projection plus the
                         summary aggregate (:func:`apply_rules` + :func:`summarize`)
"""

from __future__ import annotations

from typing import Any

from benchmarks import harness

DEFAULT_ROWS = 10_000_000
CATEGORIES = ["grocery", "home", "fashion", "electronics", "toys", "beauty", "sports", "books"]
COUNTRIES = ["GB", "DE", "FR", "NL", "IE", "ES", "IT", "US"]
CHANNELS = ["web", "store", "mobile"]

EXPECTATIONS: list[dict[str, Any]] = [
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "transaction_id"}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id", "mostly": 0.95}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0, "max_value": 100000, "mostly": 0.99}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "quantity", "min_value": 1, "max_value": 100}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "channel", "value_set": CHANNELS}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "category", "value_set": CATEGORIES, "mostly": 0.99}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "country", "value_set": COUNTRIES}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "transaction_id", "mostly": 0.98}},
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "amount", "min_value": 0, "max_value": 1000}},
]


def _single_pass(df: Any) -> dict[str, Any]:
    """The same statistics as the suite in one aggregate (one Spark query)."""
    from pyspark.sql import functions as F

    def count_if(cond: Any) -> Any:
        return F.count_if(F.coalesce(cond, F.lit(False)))

    return (
        df.agg(
            F.count(F.lit(1)).alias("rows"),
            count_if(F.col("transaction_id").isNull()).alias("null_transaction_id"),
            count_if(F.col("customer_id").isNull()).alias("null_customer_id"),
            count_if(~F.col("amount").between(0, 100000)).alias("amount_out_of_range"),
            count_if(~F.col("quantity").between(1, 100)).alias("quantity_out_of_range"),
            count_if(~F.col("channel").isin(CHANNELS)).alias("channel_not_in_set"),
            count_if(~F.col("category").isin(CATEGORIES)).alias("category_not_in_set"),
            count_if(~F.col("country").isin(COUNTRIES)).alias("country_not_in_set"),
            F.count_distinct("transaction_id").alias("distinct_transaction_id"),
            F.mean("amount").alias("mean_amount"),
        )
        .first()
        .asDict()
    )


def _project(df: Any, suite: Any) -> list[dict[str, Any]]:
    from mlops_spark.validate.expectations import run_expectations

    return run_expectations(df, suite, docs_dir=None)


def _row_rules(df: Any, suite: Any) -> dict[str, Any]:
    from mlops_spark.validate.rules import apply_rules, summarize

    return df.transform(apply_rules, suite.rules).transform(summarize, suite.rules).first().asDict()


def run(rows: int | None) -> dict[str, Any]:
    """Time the three contenders on the same cached data; print the table; return the result."""
    from mlops_spark import datagen
    from mlops_spark.validate.suite import Suite, load_suite

    n = rows or DEFAULT_ROWS
    suite = Suite.model_validate({"name": "bench", "date_column": "landing_date", "expectations": EXPECTATIONS})
    rule_suite = load_suite(harness.REPO_ROOT / "conf" / "expectations" / "transactions.yaml")
    with harness.bench_tmpdir("mlops-bench-validate-") as tmp:
        spark = harness.bench_spark(tmp, app_name="bench-validate", shuffle_partitions=8)
        path = str(tmp / "transactions")
        data = datagen.generate_transactions(spark, n, max(1, n // 50), defects=datagen.DefectSpec.typical())
        data.write.mode("overwrite").parquet(path)
        df = spark.read.parquet(path).cache()
        df.count()
        stats, baseline = harness.timed(lambda: _single_pass(df))
        results, project = harness.timed(lambda: _project(df, suite))
        summary, row_rules = harness.timed(lambda: _row_rules(df, rule_suite))
        # The two contenders must agree on what they measured.
        unique = next(r for r in results if r["expectation_type"] == "expect_column_values_to_be_unique")
        if stats["rows"] != n or summary["rows_in"] != n or unique["element_count"] != n:
            raise RuntimeError(f"row counts disagree: {stats['rows']}, {summary['rows_in']}, {unique['element_count']} != {n}")
        seconds = {"project": project, "spark_single_pass": baseline, "project_row_rules": row_rules}
        res = harness.result("validate", n, seconds, harness.peak_rss_mb(spark))
        df.unpersist()
        spark.stop()
    failed = sum(not r["success"] for r in results)
    harness.print_table(
        res,
        {
            "project": {"checks": len(results), "failed": failed},
            "spark_single_pass": {"checks": len(stats) - 1},
            "project_row_rules": {"checks": len(rule_suite.rules), "quarantined": summary["rows_quarantined"]},
        },
    )
    return res
