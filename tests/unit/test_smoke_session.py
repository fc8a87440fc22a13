"""The session fixture gives a Delta-enabled session whose tables are registered by name."""

from pyspark.testing import assertDataFrameEqual


def test_delta_table_is_registered_by_name(spark, unique_name):
    spark.createDataFrame([(1, "a"), (2, None)], "id INT, v STRING").write.format("delta").saveAsTable(f"bronze.{unique_name}")
    assertDataFrameEqual(spark.table(f"bronze.{unique_name}"), spark.createDataFrame([(1, "a"), (2, None)], "id INT, v STRING"))
    provider = spark.sql(f"DESCRIBE EXTENDED bronze.{unique_name}").filter("col_name = 'Provider'").first()
    assert provider.data_type == "delta"


def test_session_time_zone_is_utc(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
