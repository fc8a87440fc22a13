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


def test_arrow_batches_have_no_byte_limit_so_spark_skips_its_per_row_size_check(spark):
    """Under Spark 4's default byte limit (64 MiB), 100,000 rows of 1 KB reach the worker as two
    batches; with the factory's setting (Int.MaxValue, the value for which Spark skips measuring
    the batch after every row) the row limit alone cuts them: one batch."""
    import pyarrow as pa

    from mlops_spark.spark.session import ARROW_BATCH_BYTES, NO_ARROW_BATCH_BYTES_LIMIT, runtime_conf

    assert spark.conf.get(ARROW_BATCH_BYTES) == str(NO_ARROW_BATCH_BYTES_LIMIT)

    def sizes(batches):
        yield pa.RecordBatch.from_pydict({"rows": [b.num_rows for b in batches if b.num_rows]})

    wide = spark.range(100_000).selectExpr("repeat('x', 1000) AS payload").repartition(1)
    assert [r.rows for r in wide.mapInArrow(sizes, "rows long").collect()] == [100_000]
    with runtime_conf(spark, ARROW_BATCH_BYTES, str(64 * 1024 * 1024)):
        assert len(wide.mapInArrow(sizes, "rows long").collect()) == 2


def test_the_session_jvm_maps_the_class_archive_make_jars_built(spark):
    """``make jars`` writes the archive with the factory's own class path; a JVM that rejects it
    (another class path, other jars) would start without it, silently. Its memory map tells."""
    from pathlib import Path

    from mlops_spark.spark.jars import project_root

    archive = project_root() / ".jars" / "cds" / "spark.jsa"
    assert archive.is_file(), "no class archive: make jars builds it (python -m mlops_spark.spark.class_archive build)"
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    assert str(archive.resolve()) in Path(f"/proc/{pid}/maps").read_text()


def test_tables_store_timestamps_as_parquet_int64_micros_and_read_them_back_exactly(spark, tmp_path):
    """The factory writes Parquet's standard TIMESTAMP(MICROS, UTC), not Spark's legacy INT96:
    other readers (DuckDB, PyArrow) see a UTC instant; old and far dates round-trip unchanged."""
    import datetime as dt

    import pyarrow.parquet as pq

    utc = dt.timezone.utc
    values = [
        dt.datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=utc),
        dt.datetime(1500, 1, 1, tzinfo=utc),  # before the Gregorian switch: no rebase surprise
        dt.datetime(9999, 12, 31, 12, tzinfo=utc),
        None,
    ]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "id int, ts timestamp")
    df.write.format("delta").save(str(tmp_path / "t"))
    files = list((tmp_path / "t").glob("*.parquet"))
    assert files
    for path in files:
        field = pq.ParquetFile(path).schema_arrow.field("ts")
        assert str(field.type) == "timestamp[us, tz=UTC]", field.type
    # Compared as microseconds since the epoch: collect() would render them in the driver's zone.
    read = spark.read.format("delta").load(str(tmp_path / "t")).selectExpr("id", "unix_micros(ts) AS us")
    back = {r.id: r.us for r in read.collect()}
    epoch = dt.datetime(1970, 1, 1, tzinfo=utc)
    assert [back[i] for i in range(len(values))] == [None if v is None else (v - epoch) // dt.timedelta(microseconds=1) for v in values]


def test_a_second_get_spark_reuses_the_running_session_with_the_new_runtime_settings(spark, settings):
    """Every step of one process (the demo, a test) asks the factory again: it gets the running
    session with the new settings' runtime values, and the static ones (master, jars, JVM
    options) stay as the JVM started with them, without an error."""
    from mlops_spark.spark.session import get_spark

    other = settings.model_copy(
        update={
            "spark": settings.spark.model_copy(
                update={"shuffle_partitions": 7, "master": "local[1]", "conf": {"spark.sql.files.maxPartitionBytes": "33554432"}}
            )
        }
    )
    try:
        again = get_spark(other, app_name="another-name")
        assert again is spark
        assert spark.conf.get("spark.sql.shuffle.partitions") == "7"
        assert spark.conf.get("spark.sql.files.maxPartitionBytes") == "33554432"
        assert spark.sparkContext.master == "local[2]"
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", str(settings.spark.shuffle_partitions))
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
