"""The as-of join on the real Online Retail data matches DuckDB's ASOF LEFT JOIN row for row.

Labels: every customer at every monthly cut-off 2011-01-01 .. 2011-09-01, churned = no
purchase in the 90 days after the cut-off (customers whose first purchase comes later
have no feature history and must keep their rows with nulls). Features: a per-customer
daily snapshot stamped at midnight after the day (so a cut-off sees the day before it,
a tie at equal timestamps), looked up twice: without TTL and with a 30-day TTL.
"""

from __future__ import annotations

import datetime as dt

import duckdb
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark.training.asof import FeatureSource, asof_join
from tests.training_reference import duckdb_asof

TX = """
CREATE TABLE tx AS
SELECT CAST(CustomerID AS BIGINT) AS customer_id, InvoiceDate AS event_at, InvoiceNo AS invoice, Quantity * UnitPrice AS amount
FROM read_parquet(?) WHERE CustomerID IS NOT NULL
"""
LABELS = """
SELECT c.customer_id, epoch_us(k.cutoff) AS ts,
       CASE WHEN EXISTS (SELECT 1 FROM tx WHERE tx.customer_id = c.customer_id
                         AND tx.event_at > k.cutoff AND tx.event_at <= k.cutoff + INTERVAL 90 DAY) THEN 0 ELSE 1 END AS churned
FROM (SELECT DISTINCT customer_id FROM tx) c
CROSS JOIN (SELECT CAST(range AS TIMESTAMP) AS cutoff FROM range(TIMESTAMP '2011-01-01', TIMESTAMP '2011-09-02', INTERVAL 1 MONTH)) k
"""
SNAPSHOT = """
SELECT customer_id, epoch_us(day + INTERVAL 1 DAY) AS ts, day_spend, day_invoices,
       SUM(day_spend) OVER (PARTITION BY customer_id ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS total_spend
FROM (SELECT customer_id, CAST(date_trunc('day', event_at) AS TIMESTAMP) AS day, SUM(amount) AS day_spend,
             COUNT(DISTINCT invoice) AS day_invoices
      FROM tx GROUP BY 1, 2)
"""


def test_asof_join_matches_duckdb_on_online_retail_churn_labels(spark, online_retail_raw):
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute(TX, [str(online_retail_raw / "*.parquet")])
    labels = con.sql(LABELS).to_arrow_table()
    snapshot = con.sql(SNAPSHOT).to_arrow_table()
    con.close()
    features = ["day_spend", "day_invoices", "total_spend"]
    expected_rows = duckdb_asof(labels, [("all", snapshot, features, None), ("recent", snapshot, features, 30 * 86_400_000_000)])

    label_df = spark.createDataFrame(labels).select("customer_id", F.timestamp_micros("ts").alias("label_ts"), "churned")
    snap_df = spark.createDataFrame(snapshot).select("customer_id", F.timestamp_micros("ts").alias("feature_ts"), *features)
    sources = [
        FeatureSource("all", snap_df, {"customer_id": "customer_id"}, "feature_ts", {f: f for f in features}),
        FeatureSource(
            "recent", snap_df, {"customer_id": "customer_id"}, "feature_ts", {f: f"recent_{f}" for f in features}, dt.timedelta(days=30)
        ),
    ]
    joined = asof_join(label_df, ["customer_id"], "label_ts", sources)
    actual = joined.select(*[F.unix_micros(c).alias(c) if c.endswith("_ts") else F.col(c) for c in joined.columns])
    assert labels.num_rows > 30_000 and snapshot.num_rows > 10_000
    assertDataFrameEqual(actual, spark.createDataFrame(expected_rows, actual.schema), rtol=1e-9)
