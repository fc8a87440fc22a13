"""The session fixture gives a Delta-enabled session whose tables are registered by name."""

from pyspark.testing import assertDataFrameEqual


def test_delta_table_is_registered_by_name(spark, unique_name):
    spark.createDataFrame([(1, "a"), (2, None)], "id INT, v STRING").write.format("delta").saveAsTable(f"bronze.{unique_name}")
    assertDataFrameEqual(spark.table(f"bronze.{unique_name}"), spark.createDataFrame([(1, "a"), (2, None)], "id INT, v STRING"))
    provider = spark.sql(f"DESCRIBE EXTENDED bronze.{unique_name}").filter("col_name = 'Provider'").first()
    assert provider.data_type == "delta"


def test_session_time_zone_is_utc(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"


def test_python_workers_get_arrow_batches_of_the_factorys_size(spark):
    """mapInArrow (the window engine, the as-of join) after a shuffle gets 100k-row batches,
    not Spark's 10k: 250,000 rows in one partition arrive as 3 batches (Spark's default: 25)."""
    import pyarrow as pa

    from mlops_spark.spark.session import ARROW_BATCH_ROWS, DEFAULT_ARROW_BATCH_ROWS

    assert spark.conf.get(ARROW_BATCH_ROWS) == str(DEFAULT_ARROW_BATCH_ROWS)
    rows = 250_000

    def sizes(batches):
        yield pa.RecordBatch.from_pydict({"rows": [b.num_rows for b in batches if b.num_rows]})

    got = spark.range(rows).repartition(1).mapInArrow(sizes, "rows long").collect()
    assert sorted(r.rows for r in got) == [50_000, 100_000, 100_000]


def test_the_session_jvm_maps_the_class_archive_make_jars_built(spark):
    """``make jars`` writes the archive with the factory's own class path; a JVM that rejects it
    (another class path, other jars) would start without it, silently. Its memory map tells."""
    from pathlib import Path

    from mlops_spark.spark.jars import project_root

    archive = project_root() / ".jars" / "cds" / "spark.jsa"
    assert archive.is_file(), "no class archive: make jars builds it (python -m mlops_spark.spark.class_archive build)"
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    assert str(archive.resolve()) in Path(f"/proc/{pid}/maps").read_text()
