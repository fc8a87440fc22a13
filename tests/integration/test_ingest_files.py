"""File ingestion into bronze Delta on the local lake: good path, incrementality,
idempotency, crash recovery, every kind of bad file, accounting, CLI exit codes.

The reference for what bronze must hold is computed independently with pyarrow and
pandas (zone conversion with pandas' tz database), never with the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark import cli
from mlops_spark.config import Settings
from mlops_spark.errors import ConfigError, DataQualityError
from mlops_spark.ingest import pipeline
from mlops_spark.ingest.pipeline import run
from mlops_spark.io.files import _FooterReader, read_footers
from mlops_spark.spark import delta
from tests.ingest_data import EXPECTED_SCHEMA, SOURCE_YAML, raw_table, reference
from tests.support import ONLINE_RETAIL_RAW, REPO_ROOT

RUN_DATE = dt.date(2024, 11, 1)


@dataclass
class Landing:
    """A landing folder, a source definition for it, and settings that find the definition."""

    folder: Path
    name: str
    settings: Settings

    @property
    def bronze(self) -> str:
        return f"bronze.{self.name}"

    @property
    def quarantine(self) -> str:
        return f"quarantine.{self.name}_files"

    def put(self, file_name: str, table: pa.Table) -> Path:
        path = self.folder / file_name
        pq.write_table(table, path)
        return path

    def put_bytes(self, file_name: str, data: bytes) -> Path:
        path = self.folder / file_name
        path.write_bytes(data)
        return path


@pytest.fixture
def landing(tmp_path: Path, settings: Settings, unique_name: str) -> Landing:
    folder = tmp_path / "landing"
    folder.mkdir()
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / f"{unique_name}.yaml").write_text(SOURCE_YAML.format(landing=folder, table=unique_name), encoding="utf-8")
    local = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"sources_dir": str(sources)})})
    return Landing(folder, unique_name, local)


def bronze_rows(spark: SparkSession, table: str) -> DataFrame:
    return spark.table(table).select(*EXPECTED_SCHEMA.fieldNames())


def test_good_files_land_with_utc_times_metadata_and_event_date(spark: SparkSession, landing: Landing) -> None:
    # Across midnight in BST (October 2024): 00:24 BST on the 27th is 23:24 UTC on the 26th.
    files = [
        landing.put("2024-10-26.parquet", raw_table("2024-10-26 22:00")),
        landing.put("2024-10-27.parquet", raw_table("2024-10-26 23:10")),
    ]
    result = run(spark, landing.settings, landing.name, RUN_DATE)
    assertDataFrameEqual(bronze_rows(spark, landing.bronze), reference(spark, files))
    meta = spark.table(landing.bronze).select("_batch_id", "_ingested_at").distinct().collect()
    assert [r["_batch_id"] for r in meta] == [result.batch_id]
    assert (result.files_ingested, result.rows_written, result.files_quarantined) == (2, 6, 0)


def test_second_run_changes_nothing(spark: SparkSession, landing: Landing) -> None:
    landing.put("a.parquet", raw_table("2024-05-01 10:00"))
    run(spark, landing.settings, landing.name, RUN_DATE)
    versions = [delta.current_version(spark, t) for t in (landing.bronze, "bronze._ingested_files", "ml.ingest_runs")]
    again = run(spark, landing.settings, landing.name, RUN_DATE)
    assert (again.files_skipped, again.files_ingested, again.rows_written) == (1, 0, 0)
    assert [delta.current_version(spark, t) for t in (landing.bronze, "bronze._ingested_files", "ml.ingest_runs")] == versions


def test_new_file_is_picked_up_alone_on_the_next_run(spark: SparkSession, landing: Landing) -> None:
    first = landing.put("a.parquet", raw_table("2024-05-01 10:00"))
    run(spark, landing.settings, landing.name, RUN_DATE)
    second = landing.put("b.parquet", raw_table("2024-05-02 10:00", n=2))
    result = run(spark, landing.settings, landing.name, RUN_DATE)
    assert (result.files_skipped, result.files_ingested, result.rows_written) == (1, 1, 2)
    assertDataFrameEqual(bronze_rows(spark, landing.bronze), reference(spark, [first, second]))


def _chunks(path: str) -> Iterator[pq.ColumnChunkMetaData]:
    """Every column chunk of every row group of the local Parquet file ``path`` (read with pyarrow)."""
    meta = pq.read_metadata(path.removeprefix("file:"))
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            yield meta.row_group(g).column(c)


def _dictionary_pages(path: str) -> dict[str, bool]:
    """Column -> whether any of its chunks in the local Parquet file ``path`` has a dictionary page."""
    pages: dict[str, bool] = {}
    for chunk in _chunks(path):
        pages[chunk.path_in_schema] = pages.get(chunk.path_in_schema, False) or chunk.has_dictionary_page
    return pages


def _statistics(path: str) -> dict[str, bool]:
    """Column -> whether every chunk of the local Parquet file ``path`` has min/max statistics."""
    stats: dict[str, bool] = {}
    for chunk in _chunks(path):
        has = chunk.is_stats_set and chunk.statistics.has_min_max
        stats[chunk.path_in_schema] = stats.get(chunk.path_in_schema, True) and has
    return stats


def test_footers_name_the_columns_a_file_stores_without_dictionary(spark: SparkSession, landing: Landing) -> None:
    path = landing.folder / "a.parquet"
    pq.write_table(raw_table("2024-05-01 10:00", n=50), path, use_dictionary=["qty", "price"])
    local = read_footers(spark, [str(path), f"file:{path}"])
    through_jvm = _FooterReader(spark).read(f"file:{path}")  # the reader of s3a:// and other remote files
    assert [f.plain_columns for f in [*local, through_jvm]] == [frozenset({"id", "ts"})] * 3
    landing.put_bytes("bad.parquet", b"not parquet")
    assert read_footers(spark, [str(landing.folder / "bad.parquet")])[0].plain_columns is None


def test_bronze_drops_the_dictionary_only_for_columns_no_raw_file_dictionary_encodes(spark: SparkSession, landing: Landing) -> None:
    # id: no file has a dictionary for it; price: one file has; qty: both have. Every column
    # repeats its values, so that Parquet's writer would keep a dictionary for each of them.
    def few_values(day: str) -> pa.Table:
        table = raw_table(day, n=40).set_column(0, "id", pa.array([f"{day}-{i % 4}" for i in range(40)]))
        table = table.set_column(2, "qty", pa.array([1 + i % 3 for i in range(40)], pa.int64()))
        return table.set_column(3, "price", pa.array([None if i % 7 == 1 else 2.5 * (i % 2) for i in range(40)], pa.float64()))

    a, b = landing.folder / "a.parquet", landing.folder / "b.parquet"
    pq.write_table(few_values("2024-05-01 10:00"), a, use_dictionary=["ts", "qty", "price"])
    pq.write_table(few_values("2024-05-02 10:00"), b, use_dictionary=["ts", "qty"])
    run(spark, landing.settings, landing.name, RUN_DATE)
    written = [r[0] for r in spark.table(landing.bronze).select(F.col("_metadata.file_path")).distinct().collect()]
    assert len(written) >= 2  # a file per event date (each raw file spans two)
    for path in written:
        pages = _dictionary_pages(path)
        assert (pages["id"], pages["price"], pages["qty"], pages["_source_file"]) == (False, True, True, True), path
        # The per-file constants carry no Parquet min/max; the other columns keep theirs.
        assert {c for c, has in _statistics(path).items() if not has} == {"_source_file", "_batch_id"}, path
    assert spark.conf.get("parquet.enable.dictionary#id", None) is None  # the setting does not outlive the write
    assert spark.conf.get("parquet.column.statistics.enabled#_source_file", None) is None
    assertDataFrameEqual(bronze_rows(spark, landing.bronze), reference(spark, [a, b]))


@pytest.mark.parametrize("open_files", [0, 1])
def test_bronze_is_the_same_whether_tasks_sort_by_date_or_write_every_date_at_once(
    spark: SparkSession, landing: Landing, open_files: int
) -> None:
    # Two files of 120 rows 37 minutes apart: about 3 days each, in one write task. Every
    # other test writes with the default (all of a task's dates open at once); 0 sorts the
    # task's rows by date first; 1 opens one file, then sorts the rest.
    files = [landing.put("a.parquet", raw_table("2024-05-01 10:00", n=120)), landing.put("b.parquet", raw_table("2024-05-04 10:00", n=120))]
    local = landing.settings.model_copy(update={"ingest": landing.settings.ingest.model_copy(update={"open_files_per_task": open_files})})
    result = run(spark, local, landing.name, RUN_DATE)
    assert result.rows_written == 240
    assertDataFrameEqual(bronze_rows(spark, landing.bronze), reference(spark, files))
    per_file = spark.table(landing.bronze).groupBy(F.col("_metadata.file_path")).agg(F.countDistinct("event_date").alias("dates"))
    assert {r["dates"] for r in per_file.collect()} == {1}  # a file per date, whichever way it was written
    assert spark.conf.get(delta.OPEN_FILES_PER_TASK, None) in (None, "0")  # Spark's default again after the write


def _truncated(landing: Landing) -> None:
    landing.put("whole.parquet", raw_table("2024-05-03 10:00"))
    data = (landing.folder / "whole.parquet").read_bytes()
    (landing.folder / "whole.parquet").unlink()
    landing.put_bytes("bad.parquet", data[: len(data) // 2])


def _uncastable(landing: Landing) -> None:
    table = raw_table("2024-05-03 10:00").set_column(2, "qty", pa.array(["1", "abc", "3"]))
    landing.put("bad.parquet", table)


def _fractional(landing: Landing) -> None:
    table = raw_table("2024-05-03 10:00").set_column(2, "qty", pa.array([1.0, 2.5, 3.0]))
    landing.put("bad.parquet", table)


def _null_in_required(landing: Landing) -> None:
    table = raw_table("2024-05-03 10:00").set_column(2, "qty", pa.array([1, None, 3], pa.int64()))
    landing.put("bad.parquet", table)


def _impossible(landing: Landing) -> None:
    table = raw_table("2024-05-03 10:00").set_column(1, "ts", pa.array([True, False, True]))
    landing.put("bad.parquet", table)


def _missing_column(landing: Landing) -> None:
    landing.put("bad.parquet", raw_table("2024-05-03 10:00").drop_columns(["price"]))


def _extra_column(landing: Landing) -> None:
    landing.put("bad.parquet", raw_table("2024-05-03 10:00").append_column("coupon", pa.array(["x", "y", "z"])))


BAD_FILES = {
    "random-bytes": (lambda lnd: lnd.put_bytes("bad.parquet", bytes(range(256)) * 40), r"^not a readable Parquet file: ", None),
    "truncated": (_truncated, r"^not a readable Parquet file: .*not a Parquet file", None),
    "uncastable-string": (_uncastable, r"^column qty: 1 values cannot be cast to bigint \(e\.g\. 'abc'\)$", 3),
    "fractional-into-long": (_fractional, r"^column qty: 1 values cannot be cast to bigint \(e\.g\. '2\.5'\)$", 3),
    "null-in-not-nullable": (_null_in_required, r"^column qty: 1 values are null but the column is declared not nullable", 3),
    "impossible-type": (_impossible, r"column ts is boolean, cannot be cast to timestamp$", 3),
    "missing-column": (_missing_column, r": missing column price$", 3),
    "undeclared-column": (_extra_column, r": unexpected column coupon$", 3),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_goes_to_quarantine_with_reason_and_the_rest_is_ingested(spark: SparkSession, landing: Landing, kind: str) -> None:
    make_bad, reason, rows = BAD_FILES[kind]
    good = landing.put("good.parquet", raw_table("2024-05-02 10:00"))
    make_bad(landing)
    result = run(spark, landing.settings, landing.name, RUN_DATE)
    assertDataFrameEqual(bronze_rows(spark, landing.bronze), reference(spark, [good]))
    quarantined = spark.table(landing.quarantine).collect()
    assert [(r["file_path"], r["rows"], r["batch_id"]) for r in quarantined] == [
        (f"file:{landing.folder}/bad.parquet", rows, result.batch_id)
    ]
    assert re.search(reason, quarantined[0]["reason"]), quarantined[0]["reason"]


def test_run_log_accounts_rows_in_as_rows_written_plus_quarantined(spark: SparkSession, landing: Landing) -> None:
    landing.put("a.parquet", raw_table("2024-05-01 10:00", n=4))
    landing.put("b.parquet", raw_table("2024-05-02 10:00", n=5))
    _uncastable(landing)
    landing.put_bytes("junk.parquet", b"not parquet at all")
    result = run(spark, landing.settings, landing.name, RUN_DATE)
    log_row = spark.table("ml.ingest_runs").where(F.col("batch_id") == result.batch_id).collect()
    assert len(log_row) == 1
    got = {
        k: log_row[0][k]
        for k in ("files_seen", "files_ingested", "files_quarantined", "rows_read", "rows_written", "rows_quarantined", "status")
    }
    assert got == {
        "files_seen": 4,
        "files_ingested": 2,
        "files_quarantined": 2,
        "rows_read": 12,
        "rows_written": 9,
        "rows_quarantined": 3,
        "status": "quarantined",
    }
    assert spark.table(landing.bronze).count() == got["rows_written"]


def test_crash_between_bronze_commit_and_tracking_leaves_one_copy(
    spark: SparkSession, landing: Landing, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [landing.put("a.parquet", raw_table("2024-05-01 10:00")), landing.put("b.parquet", raw_table("2024-05-02 10:00"))]

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed after the bronze commit")

    monkeypatch.setattr(pipeline, "_track", crash)
    with pytest.raises(KeyboardInterrupt):
        run(spark, landing.settings, landing.name, RUN_DATE)
    monkeypatch.undo()
    assert spark.table(landing.bronze).count() == 6  # the commit happened
    result = run(spark, landing.settings, landing.name, RUN_DATE)
    assert (result.files_recovered, result.files_ingested, result.files_skipped) == (2, 0, 2)
    assertDataFrameEqual(bronze_rows(spark, landing.bronze), reference(spark, files))


def test_file_changed_after_ingestion_is_quarantined_not_ingested_twice(spark: SparkSession, landing: Landing) -> None:
    first = landing.put("a.parquet", raw_table("2024-05-01 10:00"))
    run(spark, landing.settings, landing.name, RUN_DATE)
    first = landing.folder.parent / "first-version.parquet"  # the reference, outside the landing folder
    pq.write_table(raw_table("2024-05-01 10:00"), first)
    landing.put("a.parquet", raw_table("2024-05-01 10:00", n=4))
    result = run(spark, landing.settings, landing.name, RUN_DATE)
    assert [r.startswith("file changed after it was ingested by batch") for r in result.quarantined.values()] == [True]
    assertDataFrameEqual(bronze_rows(spark, landing.bronze).drop("_source_file"), reference(spark, [first]).drop("_source_file"))


def test_empty_landing_folder_ingests_nothing(spark: SparkSession, landing: Landing) -> None:
    result = run(spark, landing.settings, landing.name, RUN_DATE)
    assert (result.files_seen, result.files_ingested, result.rows_written) == (0, 0, 0)
    assert spark.table(landing.bronze).count() == 0


def test_missing_landing_folder_is_a_config_error(spark: SparkSession, landing: Landing) -> None:
    landing.folder.rmdir()
    with pytest.raises(ConfigError, match=r"landing folder .*landing does not exist"):
        run(spark, landing.settings, landing.name, RUN_DATE)


def test_strict_mode_raises_after_ingesting_the_good_files(spark: SparkSession, landing: Landing) -> None:
    good = landing.put("good.parquet", raw_table("2024-05-02 10:00"))
    landing.put_bytes("bad.parquet", b"garbage")
    with pytest.raises(DataQualityError, match=rf"1 file\(s\) quarantined in {landing.quarantine} \(first: .*bad.parquet: not a readable"):
        run(spark, landing.settings, landing.name, RUN_DATE, strict=True)
    assertDataFrameEqual(bronze_rows(spark, landing.bronze), reference(spark, [good]))


def _conf_file(tmp_path: Path, settings: Settings) -> Path:
    path = tmp_path / "test-settings.yaml"
    conf = {
        "lake_root": settings.lake_root,
        "spark": {"master": "local[2]", "ui_enabled": False, "shuffle_partitions": 2, "driver_memory": "2g"},
        "ingest": {"sources_dir": settings.ingest.sources_dir},
    }
    path.write_text(json.dumps(conf), encoding="utf-8")
    return path


def test_cli_strict_exits_1_with_one_line(
    spark: SparkSession, landing: Landing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing.put("good.parquet", raw_table("2024-05-02 10:00"))
    landing.put_bytes("bad.parquet", b"garbage")
    argv = [
        "ingest",
        "--source",
        landing.name,
        "--strict",
        "--conf",
        str(_conf_file(tmp_path, landing.settings)),
        "--conf-dir",
        str(REPO_ROOT / "conf"),
    ]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"mlops-spark ingest: error: ingest {landing.name}: 1 file(s) quarantined")
    assert "Traceback" not in "\n".join(err)
    assert spark.table(landing.bronze).count() == 3


@pytest.mark.skipif(not ONLINE_RETAIL_RAW.is_dir(), reason="real data not found")
def test_real_online_retail_days_match_reference(spark: SparkSession, tmp_path: Path, settings: Settings, unique_name: str) -> None:
    # A winter day, the days around the March 2011 DST change, and a summer day.
    days = ["2010-12-01", "2011-03-25", "2011-03-28", "2011-07-01"]
    folder = tmp_path / "online_retail"
    folder.mkdir()
    for day in days:
        (folder / f"{day}.parquet").symlink_to(ONLINE_RETAIL_RAW / f"{day}.parquet")
    text = (REPO_ROOT / "conf" / "sources" / "online_retail.yaml").read_text(encoding="utf-8")
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / f"{unique_name}.yaml").write_text(
        text.replace("landing_path: online_retail", f"landing_path: {folder}").replace("table: online_retail", f"table: {unique_name}"),
        encoding="utf-8",
    )
    local = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"sources_dir": str(sources)})})
    result = run(spark, local, unique_name, RUN_DATE)

    frames = []
    for day in days:
        pdf = pq.read_table(folder / f"{day}.parquet").to_pandas()
        pdf["InvoiceDate"] = pdf["InvoiceDate"].dt.tz_localize("Europe/London").dt.tz_convert("UTC")
        pdf["_source_file"] = f"file:{folder}/{day}.parquet"
        frames.append(pdf)
    ref = pd.concat(frames, ignore_index=True)
    ref["event_date"] = ref["InvoiceDate"].dt.date
    ref = ref.astype(object).where(ref.notna(), None)
    columns = [
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
        "Country",
        "_source_file",
        "event_date",
    ]
    actual = spark.table(f"bronze.{unique_name}").select(*columns)
    expected = spark.createDataFrame(
        [tuple(v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for v in r) for r in ref[columns].itertuples(index=False)],
        actual.schema,
    )
    assert result.rows_written == len(ref)
    assertDataFrameEqual(actual, expected)
