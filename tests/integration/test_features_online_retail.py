"""The window engine on the real Online Retail data against DuckDB's RANGE window SQL."""

from __future__ import annotations

from pyspark.sql import functions as F

from mlops_spark.features.pipeline import prepare_events
from mlops_spark.features.spec import load_feature_set, parse_feature_set
from mlops_spark.features.windows import compute_windows
from tests.feature_reference import duckdb_per_event
from tests.support import REPO_ROOT
from tests.unit.test_feature_windows import _assert_same


def test_real_data_per_event_features_match_duckdb(spark, online_retail_raw) -> None:
    shipped = load_feature_set(REPO_ROOT / "conf" / "features" / "online_retail_customer.yaml")
    # The shipped definition's derived column, with a subset of its aggregations (DuckDB's
    # distinct window aggregates are slow); every function kind is still covered.
    spec = parse_feature_set(
        {
            **shipped.model_dump(mode="json", exclude={"aggregations", "ratios"}),
            "aggregations": [
                {
                    "column": "amount",
                    "functions": ["count", "count_events", "sum", "avg", "min", "max", "stddev", "last"],
                    "windows": ["7d", "lifetime"],
                },
                {"column": "StockCode", "functions": ["distinct_count"], "windows": ["30d"]},
            ],
        }
    )
    raw = spark.read.parquet(str(online_retail_raw))
    events = prepare_events(raw, spec)
    got = compute_windows(events, spec).drop("amount").toPandas()
    # Tied invoice lines share every feature (RANGE semantics), so rows compare as a set of
    # distinct (customer, time, features).
    pdf = raw.withColumn("amount", F.expr(shipped.columns["amount"])).where(F.col("CustomerID").isNotNull()).toPandas()
    pdf["_row"] = range(len(pdf))
    ref = duckdb_per_event(pdf, spec, "_row")
    expected = pdf[["_row", "CustomerID", "InvoiceDate"]].merge(ref, on="_row").drop(columns="_row")
    key = ["CustomerID", "InvoiceDate"]
    got = got.drop_duplicates(key).reset_index(drop=True)
    expected = expected.drop_duplicates(key).reset_index(drop=True)
    assert len(got) > 10_000
    _assert_same(got, expected, key, rtol=1e-9, atol=1e-6)
