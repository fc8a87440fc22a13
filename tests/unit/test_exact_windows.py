"""Exact windows at label time against a DuckDB reference (window edges, ties at label time, nulls)."""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark.features.spec import parse_feature_set
from mlops_spark.training.exact_windows import exact_window_features
from tests.training_reference import BASE, MINUTE

SPEC = parse_feature_set(
    {
        "name": "spend",
        "source": "silver.tx",
        "entity": ["customer_id"],
        "timestamp": "event_ts",
        "aggregations": [{"column": "amount", "functions": ["count", "sum", "max"], "windows": ["10m", "lifetime"]}],
    }
)
FEATURES = ["amount_count_10m", "amount_count_lifetime", "amount_sum_10m", "amount_sum_lifetime", "amount_max_10m", "amount_max_lifetime"]
# Reference: window W at t holds events with t - W < event_ts <= t.
REFERENCE = """
SELECT l.customer_id, l.ts, l.label,
  COUNT(e.amount) FILTER (WHERE e.ts > l.ts - 600000000) AS amount_count_10m,
  COUNT(e.amount) AS amount_count_lifetime,
  SUM(e.amount) FILTER (WHERE e.ts > l.ts - 600000000) AS amount_sum_10m,
  SUM(e.amount) AS amount_sum_lifetime,
  MAX(e.amount) FILTER (WHERE e.ts > l.ts - 600000000) AS amount_max_10m,
  MAX(e.amount) AS amount_max_lifetime
FROM (SELECT *, row_number() OVER () AS rid FROM labels) l
LEFT JOIN events e ON e.customer_id = l.customer_id AND e.ts <= l.ts
GROUP BY l.rid, l.customer_id, l.ts, l.label
"""


def test_exact_windows_match_duckdb_at_each_label_time_including_edges_ties_and_null_keys(spark):
    rng = random.Random(3)
    # Integer amounts: sums are exact whatever the summation order.
    events = [(rng.randrange(5), BASE + rng.randrange(40) * MINUTE, float(rng.randrange(-3, 10))) for _ in range(300)]
    events += [(1, BASE + 20 * MINUTE, 100.0), (1, BASE + 10 * MINUTE, 7.0)]  # exactly at a label / at its window's left edge
    labels = [(rng.randrange(6), BASE + rng.randrange(45) * MINUTE, rng.randrange(2)) for _ in range(80)]
    labels += [(1, BASE + 20 * MINUTE, 1), (1, BASE + 20 * MINUTE, 1), (None, BASE, 0), (2, None, 1)]
    con = duckdb.connect()
    con.register(
        "events", pa.table({"customer_id": [e[0] for e in events], "ts": [e[1] for e in events], "amount": [e[2] for e in events]})
    )
    con.register("labels", pa.table({"customer_id": [x[0] for x in labels], "ts": [x[1] for x in labels], "label": [x[2] for x in labels]}))
    expected_rows = [list(r) for r in con.execute(REFERENCE).fetchall()]
    con.close()
    for row in expected_rows:
        if row[0] is None or row[1] is None:
            row[3:] = [None] * len(FEATURES)  # not evaluable: features null, row kept

    events_df = spark.createDataFrame(events, "customer_id long, ts long, amount double").select(
        "customer_id", F.timestamp_micros("ts").alias("event_ts"), "amount"
    )
    labels_df = spark.createDataFrame(labels, "customer_id long, ts long, label int").select(
        "customer_id", F.timestamp_micros("ts").alias("label_ts"), "label"
    )
    joined = exact_window_features(labels_df, ["customer_id"], "label_ts", events_df, SPEC, FEATURES)
    actual = joined.select("customer_id", F.unix_micros("label_ts").alias("ts"), "label", *FEATURES)
    schema = T.StructType([T.StructField(f.name, f.dataType) for f in actual.schema.fields])
    assertDataFrameEqual(actual, spark.createDataFrame([tuple(r) for r in expected_rows], schema))
