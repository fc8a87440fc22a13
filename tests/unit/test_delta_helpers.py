"""Delta helpers on real tables in the session's lake: upsert, replaceWhere, time travel, metadata."""

from __future__ import annotations

import pytest
from delta.tables import DeltaTable
from py4j.protocol import Py4JError
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark.errors import SchemaMismatchError, UsageError
from mlops_spark.spark import delta
from mlops_spark.spark.schemas import check_schema

SCHEMA = "id INT, day STRING, v DOUBLE"


def test_merge_upsert_updates_matches_and_inserts_new_keys_including_null_keys(spark, unique_name):
    name = f"silver.{unique_name}"
    delta.merge_upsert(spark, spark.createDataFrame([(1, "d1", 1.0), (None, "d1", 2.0)], SCHEMA), name, keys=["id"])
    delta.merge_upsert(spark, spark.createDataFrame([(1, "d1", 10.0), (None, "d1", 20.0), (3, "d2", 3.0)], SCHEMA), name, keys=["id"])
    assertDataFrameEqual(spark.table(name), spark.createDataFrame([(1, "d1", 10.0), (None, "d1", 20.0), (3, "d2", 3.0)], SCHEMA))


def test_overwrite_where_replaces_one_slice_and_is_idempotent(spark, unique_name):
    name = f"silver.{unique_name}"
    delta.append(spark.createDataFrame([(1, "d1", 1.0), (2, "d2", 2.0)], SCHEMA), name, partition_by=["day"])
    new_d2 = spark.createDataFrame([(5, "d2", 5.0), (6, "d2", 6.0)], SCHEMA)
    for _ in range(2):
        delta.overwrite_where(new_d2, name, delta.col_eq("day", "d2"))
    assertDataFrameEqual(spark.table(name), spark.createDataFrame([(1, "d1", 1.0), (5, "d2", 5.0), (6, "d2", 6.0)], SCHEMA))


def test_last_commit_reports_rows_written_and_finds_a_tagged_commit_after_other_writers(spark, unique_name):
    name = f"silver.{unique_name}"
    delta.append(spark.createDataFrame([(1, "d1", 1.0), (2, "d2", 2.0)], SCHEMA), name, partition_by=["day"])
    three = spark.createDataFrame([(5, "d2", 5.0), (6, "d2", 6.0), (7, "d2", 7.0)], SCHEMA)
    delta.overwrite_where(three, name, delta.col_eq("day", "d2"), user_metadata="run-1")
    tagged = delta.last_commit(spark, name)
    assert tagged == (delta.current_version(spark, name), 3)
    # Another writer commits after the tagged write: the tag still finds the write's own commit.
    delta.overwrite_where(spark.createDataFrame([(9, "d1", 9.0)], SCHEMA), name, delta.col_eq("day", "d1"))
    assert delta.last_commit(spark, name) == (tagged[0] + 1, 1)
    assert delta.last_commit(spark, name, "run-1") == tagged
    # An empty write commits too, with no rows.
    delta.overwrite_where(three.limit(0), name, delta.col_eq("day", "d2"), user_metadata="run-2")
    assert delta.last_commit(spark, name, "run-2") == (tagged[0] + 2, 0)
    with pytest.raises(ValueError, match="no commit tagged run-3"):
        delta.last_commit(spark, name, "run-3")


def test_recent_commits_read_from_the_log_equal_deltas_history_whichever_path_reads_them(spark, unique_name, monkeypatch):
    name = f"silver.{unique_name}"
    delta.append(spark.createDataFrame([(1, "d1", 1.0), (2, "d2", 2.0)], SCHEMA), name, partition_by=["day"])
    delta.overwrite_where(spark.createDataFrame([(5, "d2", 5.0)], SCHEMA), name, delta.col_eq("day", "d2"), user_metadata="run-1")
    delta.merge_upsert(spark, spark.createDataFrame([(1, "d1", 10.0), (3, "d3", 3.0)], SCHEMA), name, keys=["id"])
    DeltaTable.forName(spark, name).delete("id = 3")
    history = DeltaTable.forName(spark, name).history(3).select("version", "userMetadata", "operationMetrics").collect()
    expected = [delta.Commit(int(r[0]), r[1], dict(r[2] or {})) for r in history]
    assert [c.version for c in expected] == [3, 2, 1] and expected[2].user_metadata == "run-1"
    assert delta._commits_from_log(spark, name, 3) == delta.recent_commits(spark, name, 3) == expected
    assert [c.rows_written for c in expected] == [0, 2, 1]  # delete (no file rewritten: 0 rows), merge, overwrite
    # More than the table has: every commit, the creating append included.
    assert [c.version for c in delta.recent_commits(spark, name, 50)] == [3, 2, 1, 0]

    def unreadable(*_args: object) -> list[delta.Commit]:
        raise Py4JError("commit files not readable here")

    monkeypatch.setattr(delta, "_commits_from_log", unreadable)
    assert delta.recent_commits(spark, name, 3) == expected
    assert delta.last_commit(spark, name, "run-1") == (1, 1)


def test_overwrite_where_checks_rows_against_the_condition_unless_told_not_to(spark, unique_name):
    name = f"silver.{unique_name}"
    delta.append(spark.createDataFrame([(1, "d1", 1.0), (2, "d2", 2.0)], SCHEMA), name)
    outside = spark.createDataFrame([(7, "d1", 7.0)], SCHEMA)
    with pytest.raises(Exception, match=r"(?i)replaceWhere|does not conform|DELTA_REPLACE_WHERE"):
        delta.overwrite_where(outside, name, delta.col_eq("day", "d2"))
    assertDataFrameEqual(spark.table(name), spark.createDataFrame([(1, "d1", 1.0), (2, "d2", 2.0)], SCHEMA))
    new_d2 = spark.createDataFrame([(5, "d2", 5.0)], SCHEMA)
    delta.overwrite_where(new_d2, name, delta.col_eq("day", "d2"), check_rows=False)
    assertDataFrameEqual(spark.table(name), spark.createDataFrame([(1, "d1", 1.0), (5, "d2", 5.0)], SCHEMA))
    # The session's setting is as it was: the next checked write still fails on a row outside.
    assert spark.conf.get(delta.REPLACE_WHERE_CHECK, None) is None
    with pytest.raises(Exception, match=r"(?i)replaceWhere|does not conform|DELTA_REPLACE_WHERE"):
        delta.overwrite_where(outside, name, delta.col_eq("day", "d2"))
    # Unchecked, a row outside is written as given (the caller's promise, not Delta's check).
    delta.overwrite_where(outside, name, delta.col_eq("day", "d2"), check_rows=False)
    assertDataFrameEqual(spark.table(name), spark.createDataFrame([(1, "d1", 1.0), (7, "d1", 7.0)], SCHEMA))


def test_time_travel_reads_an_earlier_version(spark, unique_name):
    name = f"silver.{unique_name}"
    delta.append(spark.createDataFrame([(1, "d1", 1.0)], SCHEMA), name)
    first = delta.current_version(spark, name)
    delta.append(spark.createDataFrame([(2, "d1", 2.0)], SCHEMA), name)
    assert delta.current_version(spark, name) == first + 1
    assertDataFrameEqual(delta.read_version(spark, name, first), spark.createDataFrame([(1, "d1", 1.0)], SCHEMA))


def test_comments_and_properties_are_stored_in_the_catalog(spark, unique_name):
    name = f"features.{unique_name}"
    schema = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("v", T.DoubleType(), metadata={"comment": "a value"})])
    delta.create_table(spark, name, schema, comment="first comment", properties={"mlops.primary_key": "id"})
    delta.set_comments(spark, name, "it's a table", {"id": "entity key"})
    delta.set_properties(spark, name, {"mlops.timestamp_key": "feature_ts"})
    props = delta.table_properties(spark, name)
    assert (props["mlops.primary_key"], props["mlops.timestamp_key"]) == ("id", "feature_ts")
    assert delta.column_comments(spark, name) == {"id": "entity key", "v": "a value"}
    assert spark.sql(f"DESCRIBE TABLE EXTENDED {name}").filter("col_name = 'Comment'").first().data_type == "it's a table"


def test_create_table_is_a_no_op_when_the_table_exists(spark, unique_name):
    name = f"ml.{unique_name}"
    schema = T.StructType([T.StructField("id", T.IntegerType())])
    delta.create_table(spark, name, schema)
    delta.append(spark.createDataFrame([(1,)], "id INT"), name)
    delta.create_table(spark, name, schema)
    assert spark.table(name).count() == 1


@pytest.mark.parametrize("bad", ["x; DROP TABLE y", "a.b.c.d", "", "db.`t`"])
def test_table_names_that_are_not_identifiers_are_refused(bad):
    with pytest.raises(UsageError, match="is not a table name"):
        delta.quote_table(bad)


def test_sql_literal_escapes_quotes_and_backslashes(spark):
    text = "it's a \\ path"
    assert spark.sql(f"SELECT {delta.sql_literal(text)} AS s").first().s == text


def test_check_schema_names_every_difference(spark):
    df = spark.createDataFrame([(1, "x")], "id INT, extra STRING")
    expected = T.StructType([T.StructField("id", T.LongType()), T.StructField("v", T.DoubleType())])
    message = r"^stage: missing column v \(double\); unexpected column extra; column id is int, expected bigint$"
    with pytest.raises(SchemaMismatchError, match=message):
        check_schema(df, expected, "stage")


def test_runtime_conf_restores_a_set_value_and_unsets_an_unset_one(spark):
    from mlops_spark.spark.session import runtime_conf

    batch, unset = "spark.sql.execution.arrow.maxRecordsPerBatch", "spark.mlops.test.unset_setting"
    session_value = spark.conf.get(batch)  # the factory's, restored for the tests that follow
    spark.conf.set(batch, "123")
    try:
        with runtime_conf(spark, batch, "456"), runtime_conf(spark, unset, "x"):
            assert (spark.conf.get(batch), spark.conf.get(unset)) == ("456", "x")
        assert (spark.conf.get(batch), spark.conf.get(unset, None)) == ("123", None)
        with pytest.raises(RuntimeError), runtime_conf(spark, batch, "789"):
            raise RuntimeError("the block failed")
        assert spark.conf.get(batch) == "123"
    finally:
        spark.conf.set(batch, session_value)
