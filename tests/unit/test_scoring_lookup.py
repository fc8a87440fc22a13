"""As-of feature lookup and missing-feature handling, checked against DuckDB SQL."""

from __future__ import annotations

import datetime as dt
import random

import duckdb
import pandas as pd
import pytest
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark.errors import SchemaMismatchError
from mlops_spark.scoring.score import Lookup, check_lookup_schema, lookup_features, split_missing

LOOKUP = Lookup("features.x", ("customer_id",), "feature_ts", ("a", "b"))
FEATURE_SCHEMA = "customer_id long, feature_ts timestamp, a double, b double"


def test_lookup_matches_duckdb_asof_join_on_random_data_with_ties_nulls_and_edges(spark):
    rng = random.Random(11)
    base = dt.datetime(2024, 1, 1)
    as_of = base + dt.timedelta(days=5)
    rows = []
    for cid in range(40):
        for _ in range(rng.randint(0, 4)):
            # Days 0..10 around as_of = day 5: rows exactly at as_of must count, later rows must not.
            ts = base + dt.timedelta(days=rng.randint(0, 10))
            rows.append((cid, ts, rng.choice([None, round(rng.uniform(-5, 5), 3)]), float(rng.randint(0, 3))))
    features = spark.createDataFrame(rows, FEATURE_SCHEMA)
    entities = spark.createDataFrame([(c,) for c in range(45)], "customer_id long")

    got = lookup_features(entities, [(LOOKUP, features)], as_of, ["a", "b"])

    con = duckdb.connect()
    con.register("fpdf", pd.DataFrame(rows, columns=["customer_id", "feature_ts", "a", "b"]))
    con.register("epdf", pd.DataFrame({"customer_id": range(45)}))
    expected = con.sql(
        """
        SELECT e.customer_id, f.a, f.b FROM epdf e LEFT JOIN (
          SELECT customer_id, a, b FROM fpdf WHERE feature_ts <= $as_of
          QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY feature_ts DESC, a DESC NULLS LAST, b DESC) = 1
        ) f USING (customer_id)
        """,
        params={"as_of": as_of},
    ).df()
    con.close()
    assertDataFrameEqual(got, spark.createDataFrame(expected, "customer_id long, a double, b double"))


def test_rows_after_the_as_of_time_are_invisible(spark):
    t = dt.datetime(2024, 1, 1)
    features = spark.createDataFrame([(1, t, 1.0, 1.0), (1, t + dt.timedelta(seconds=1), 2.0, 2.0)], FEATURE_SCHEMA)
    got = lookup_features(spark.createDataFrame([(1,)], "customer_id long"), [(LOOKUP, features)], t, ["a", "b"])
    assertDataFrameEqual(got, spark.createDataFrame([(1, 1.0, 1.0)], "customer_id long, a double, b double"))


def test_rows_with_missing_features_are_split_off_with_a_reason(spark):
    df = spark.createDataFrame([(1, 1.0, 2.0), (2, None, 2.0), (3, float("nan"), None)], "customer_id long, a double, b double")
    keep, rejected = split_missing(df, ["a", "b"], allow_nan=False)
    assertDataFrameEqual(keep, spark.createDataFrame([(1, 1.0, 2.0)], "customer_id long, a double, b double"))
    assertDataFrameEqual(
        rejected.select("customer_id", "_reason"),
        spark.createDataFrame([(2, "missing features: a"), (3, "missing features: a, b")], "customer_id long, _reason string"),
    )


def test_models_accepting_nan_keep_every_row(spark):
    df = spark.createDataFrame([(2, None, 2.0)], "customer_id long, a double, b double")
    keep, rejected = split_missing(df, ["a", "b"], allow_nan=True)
    assert rejected is None and keep is df


def test_feature_table_schema_mismatch_names_every_column():
    schema = T.StructType(
        [T.StructField("customer_id", T.LongType()), T.StructField("feature_ts", T.StringType()), T.StructField("a", T.StringType())]
    )
    with pytest.raises(SchemaMismatchError) as err:
        check_lookup_schema(schema, LOOKUP, "feature table features.x")
    assert str(err.value) == (
        "feature table features.x does not match the model signature: missing column b; "
        "column feature_ts is string, expected a timestamp; column a is string, the model expects a number"
    )
