"""Delta Lake helpers used by every pipeline: create, upsert, overwrite a slice,
time travel, comments and properties. Tables are always addressed by name
(``database.table``) so they are registered in the metastore.

SQL text never contains values pasted from data: identifiers are validated with
:func:`quote_table` and literals go through :func:`sql_literal`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from delta.tables import DeltaTable
from py4j.protocol import Py4JError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from mlops_spark.errors import UsageError
from mlops_spark.spark.session import runtime_conf

_NAME_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_table(name: str) -> str:
    """``db.table`` -> ```db`.`table```; each part must be an identifier.

    Raises:
        UsageError: a part is not ``[A-Za-z_][A-Za-z0-9_]*``.
    """
    parts = name.split(".")
    if not 1 <= len(parts) <= 3 or not all(_NAME_PART.match(p) for p in parts):
        raise UsageError(f"'{name}' is not a table name of the form database.table")
    return ".".join(f"`{p}`" for p in parts)


def quote_column(name: str) -> str:
    """A column name in backticks (backticks inside are doubled)."""
    return "`" + name.replace("`", "``") + "`"


def sql_literal(value: str) -> str:
    """A Spark SQL string literal for ``value``."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_exists(spark: SparkSession, name: str) -> bool:
    """True when the table is registered in the catalog."""
    quote_table(name)
    return bool(spark.catalog.tableExists(name))


def create_table(
    spark: SparkSession,
    name: str,
    schema: T.StructType,
    partition_by: Sequence[str] = (),
    comment: str | None = None,
    properties: Mapping[str, str] | None = None,
    replace: bool = False,
) -> None:
    """Create an empty Delta table with ``schema`` (column comments come from the
    fields' ``comment`` metadata); ``replace`` drops any data and schema it had.

    A no-op when the table exists and ``replace`` is false (a catalog lookup: Delta's
    ``createIfNotExists`` loads the table's snapshot first, four times slower).
    """
    if not replace and table_exists(spark, name):
        return
    builder = DeltaTable.createOrReplace(spark) if replace else DeltaTable.createIfNotExists(spark)
    builder = builder.tableName(name).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    if comment:
        builder = builder.comment(comment)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    builder.execute()


def add_missing_columns(spark: SparkSession, name: str, schema: T.StructType) -> None:
    """Add the fields of ``schema`` that the existing table ``name`` lacks (nullable, with
    their comments), so a table created by an older release takes the new columns."""
    have = set(spark.table(name).columns)
    missing = [f for f in schema.fields if f.name not in have]
    if not missing:
        return
    columns = ", ".join(
        f"{quote_column(f.name)} {f.dataType.simpleString()} COMMENT {sql_literal(f.metadata.get('comment', ''))}" for f in missing
    )
    spark.sql(f"ALTER TABLE {quote_table(name)} ADD COLUMNS ({columns})")


def append(df: DataFrame, name: str, partition_by: Sequence[str] = ()) -> None:
    """Append ``df`` to the Delta table ``name``, creating it on first write."""
    writer = df.write.format("delta").mode("append")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.saveAsTable(name)


REPLACE_WHERE_CHECK = "spark.databricks.delta.replaceWhere.constraintCheck.enabled"


OPEN_FILES_PER_TASK = "spark.sql.maxConcurrentOutputFileWriters"
"""Spark's limit of the files a write task keeps open at once, one per partition value.

At 0 (Spark's default) a partitioned write sorts each task's rows by the partition
columns before writing them, even when the task holds a single value; above 0 a task
writes each row to its partition's open file and sorts only the rows beyond the limit.
Steps set it for their own writes with :func:`~mlops_spark.spark.session.runtime_conf`."""


def overwrite_where(
    df: DataFrame,
    name: str,
    condition: str,
    partition_by: Sequence[str] = (),
    check_rows: bool = True,
    user_metadata: str | None = None,
) -> None:
    """Atomically replace the rows of ``name`` matching ``condition`` with ``df``
    (Delta ``replaceWhere``): re-running a date rewrites that date and nothing else.

    ``condition`` must be built by the caller from validated column names and
    :func:`sql_literal` values; every row of ``df`` must satisfy it. Delta checks that
    (the write fails otherwise) unless ``check_rows`` is false: only for rows the caller
    builds from the condition's own values (a run log row), where the check is a cost
    (about 0.7 s a write on a small table) and never a guard. ``user_metadata`` tags the
    commit (see :func:`last_commit`).
    """
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", condition)
    if user_metadata is not None:
        writer = writer.option("userMetadata", user_metadata)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if check_rows:
        writer.saveAsTable(name)
        return
    with runtime_conf(df.sparkSession, REPLACE_WHERE_CHECK, "false"):
        writer.saveAsTable(name)


def merge_upsert(
    spark: SparkSession,
    df: DataFrame,
    name: str,
    keys: Sequence[str],
    partition_by: Sequence[str] = (),
    extra_condition: str | None = None,
) -> None:
    """Insert rows of ``df`` whose ``keys`` are new; update the others (MERGE).

    Creates the table from ``df`` when it does not exist. ``extra_condition``
    (on ``t.`` / ``s.`` aliases) narrows the match, e.g. to one partition, so the
    merge prunes files instead of scanning the table.
    """
    if not table_exists(spark, name):
        append(df, name, partition_by)
        return
    on = " AND ".join(f"t.{quote_column(k)} <=> s.{quote_column(k)}" for k in keys)
    if extra_condition:
        on = f"({on}) AND ({extra_condition})"
    DeltaTable.forName(spark, name).alias("t").merge(df.alias("s"), on).whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()


def current_version(spark: SparkSession, name: str) -> int:
    """The latest committed Delta version of ``name``."""
    return last_commit(spark, name)[0]


# Commits searched for a tagged one: other writers may have committed since (a margin).
_TAGGED_COMMITS = 20


@dataclass(frozen=True)
class Commit:
    """One Delta commit's ``commitInfo``: its version, ``userMetadata`` and ``operationMetrics``."""

    version: int
    user_metadata: str | None
    metrics: Mapping[str, str]

    @property
    def rows_written(self) -> int:
        """Delta's ``numOutputRows`` (0 for commits that write no rows)."""
        return int(self.metrics.get("numOutputRows", 0))


def recent_commits(spark: SparkSession, name: str, limit: int, tagged: str | None = None) -> list[Commit]:
    """The latest ``limit`` commits of ``name``, newest first, read from the log's JSON files.

    With ``tagged``, only the newest of them whose ``userMetadata`` is ``tagged`` (reading
    stops there), or none.

    ``DeltaTable.history`` gives the same but builds a DataFrame of Delta's commit records,
    whose encoder costs 0.3-0.5 s on every call; steps ask after each of their writes.
    Falls back to it when the log cannot be read directly (a table whose commits are not
    all plain ``_delta_log`` files).
    """
    try:
        return _commits_from_log(spark, name, limit, tagged)
    except (Py4JError, OSError, ValueError, KeyError):
        rows = DeltaTable.forName(spark, name).history(limit).select("version", "userMetadata", "operationMetrics").collect()
        commits = [Commit(int(r[0]), r[1], dict(r[2] or {})) for r in rows]
        return commits if tagged is None else [c for c in commits if c.user_metadata == tagged][:1]


# Each line of a commit file is one action; Delta writes them as compact JSON objects.
_COMMIT_INFO = '{"commitInfo":'


def _commits_from_log(spark: SparkSession, name: str, limit: int, tagged: str | None = None) -> list[Commit]:
    jvm = spark.sparkContext._jvm
    session = spark._jsparkSession
    ident = session.sessionState().sqlParser().parseTableIdentifier(name)
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(session, ident)  # type: ignore[union-attr]
    none = jvm.scala.Option.empty()  # type: ignore[union-attr]
    latest = int(log.update(False, none, none).version())
    conf, store, folder = log.newDeltaHadoopConf(), log.store(), log.logPath()
    names = jvm.org.apache.spark.sql.delta.util.FileNames  # type: ignore[union-attr]
    commits = []
    for version in range(latest, max(-1, latest - limit), -1):
        lines = store.read(names.unsafeDeltaFile(folder, version), conf).mkString("\n").splitlines()
        # Only the commitInfo line is parsed, not the file actions (with their statistics).
        info = next((json.loads(line)["commitInfo"] for line in lines if line.startswith(_COMMIT_INFO)), None)
        if info is None:
            raise ValueError(f"{name}: commit {version} has no commitInfo")
        commit = Commit(version, info.get("userMetadata"), info.get("operationMetrics") or {})
        if tagged is None:
            commits.append(commit)
        elif commit.user_metadata == tagged:
            return [commit]
    return commits


def last_commit(spark: SparkSession, name: str, user_metadata: str | None = None) -> tuple[int, int]:
    """Version of the latest commit of ``name`` and the rows it wrote (Delta's
    ``numOutputRows``; 0 for commits that write no rows), read from the log, not the data.

    With ``user_metadata``, the latest commit tagged with it (the caller's own write, even
    when another writer committed after it).

    Raises:
        ValueError: no such commit.
    """
    commits = recent_commits(spark, name, 1 if user_metadata is None else _TAGGED_COMMITS, tagged=user_metadata)
    if not commits:
        raise ValueError(f"{name}: no commit{'' if user_metadata is None else ' tagged ' + user_metadata} in the Delta log")
    return commits[0].version, commits[0].rows_written


def read_version(spark: SparkSession, name: str, version: int | None = None) -> DataFrame:
    """Read ``name`` as of Delta ``version`` (time travel); the latest when ``None``."""
    if version is None:
        return spark.table(name)
    return spark.sql(f"SELECT * FROM {quote_table(name)} VERSION AS OF {int(version)}")


def set_comments(
    spark: SparkSession, name: str, table_comment: str | None = None, column_comments: Mapping[str, str] | None = None
) -> None:
    """Set the table comment and per-column comments shown by ``DESCRIBE TABLE``."""
    table = quote_table(name)
    if table_comment is not None:
        spark.sql(f"COMMENT ON TABLE {table} IS {sql_literal(table_comment)}")
    for column, text in (column_comments or {}).items():
        spark.sql(f"ALTER TABLE {table} ALTER COLUMN {quote_column(column)} COMMENT {sql_literal(text)}")


def set_properties(spark: SparkSession, name: str, properties: Mapping[str, str]) -> None:
    """Set table properties (``TBLPROPERTIES``), e.g. primary key and timestamp columns."""
    if not properties:
        return
    pairs = ", ".join(f"{sql_literal(k)} = {sql_literal(str(v))}" for k, v in properties.items())
    spark.sql(f"ALTER TABLE {quote_table(name)} SET TBLPROPERTIES ({pairs})")


def table_properties(spark: SparkSession, name: str) -> dict[str, str]:
    """The table's properties as a dict."""
    return {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {quote_table(name)}").collect()}


def column_comments(spark: SparkSession, name: str) -> dict[str, str]:
    """Column name -> comment, for columns that have one."""
    return {f.name: f.metadata["comment"] for f in spark.table(name).schema.fields if f.metadata.get("comment")}


def in_list(column: str, values: Iterable[str]) -> str:
    """``col IN ('a', 'b')`` with quoted identifier and literals, for replaceWhere conditions."""
    return f"{quote_column(column)} IN ({', '.join(sql_literal(str(v)) for v in values)})"


def col_eq(column: str, value: str) -> str:
    """``col = 'value'`` with quoted identifier and literal."""
    return f"{quote_column(column)} = {sql_literal(value)}"


__all__ = [
    "append",
    "col_eq",
    "column_comments",
    "create_table",
    "current_version",
    "in_list",
    "merge_upsert",
    "overwrite_where",
    "quote_column",
    "quote_table",
    "read_version",
    "set_comments",
    "set_properties",
    "sql_literal",
    "table_exists",
    "table_properties",
]
