"""The shipped feature-set definitions load and fit the schemas of their sources."""

from __future__ import annotations

from pyspark.sql import types as T

from mlops_spark.datagen import TRANSACTION_SCHEMA
from mlops_spark.features.pipeline import prepare_events
from mlops_spark.features.spec import load_feature_set
from tests.support import REPO_ROOT

FEATURES_DIR = REPO_ROOT / "conf" / "features"

# silver.online_retail as conf/sources/online_retail.yaml declares it.
ONLINE_RETAIL_SCHEMA = T.StructType(
    [
        T.StructField("InvoiceNo", T.StringType()),
        T.StructField("StockCode", T.StringType()),
        T.StructField("Description", T.StringType()),
        T.StructField("Quantity", T.LongType()),
        T.StructField("InvoiceDate", T.TimestampType()),
        T.StructField("UnitPrice", T.DoubleType()),
        T.StructField("CustomerID", T.DoubleType()),
        T.StructField("Country", T.StringType()),
    ]
)


def test_customer_spend_fits_the_transactions_schema(spark) -> None:
    spec = load_feature_set(FEATURES_DIR / "customer_spend.yaml")
    events = prepare_events(spark.createDataFrame([], TRANSACTION_SCHEMA), spec)
    assert events.columns == ["customer_id", "event_ts", "transaction_id", "amount", "category"]
    assert "amount_sum_7d_over_30d" in spec.feature_names()


def test_online_retail_definition_derives_amount_from_quantity_and_price(spark) -> None:
    spec = load_feature_set(FEATURES_DIR / "online_retail_customer.yaml")
    src = spark.createDataFrame([("C1", "A", "d", 3, None, 2.5, 17850.0, "UK")], ONLINE_RETAIL_SCHEMA)
    row = prepare_events(src, spec).first()
    assert (row.amount, row.is_cancellation, row.CustomerID) == (7.5, 1, 17850.0)
