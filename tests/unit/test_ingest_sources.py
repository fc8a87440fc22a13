"""Source definitions, file selection and schema cast plans of file ingestion (no Spark jobs)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import types as T

from mlops_spark.config import Settings
from mlops_spark.errors import ConfigError
from mlops_spark.ingest import files as fx
from mlops_spark.ingest.kafka_spec import KafkaSource
from mlops_spark.ingest.sources import FileSource, load_source
from mlops_spark.io.files import FileInfo
from tests.support import REPO_ROOT

GOOD = """
kind: files
landing_path: raw/orders
table: orders
event_time_column: ts
local_time_zone: Europe/London
columns:
  id: string
  ts: timestamp
  qty: {type: long, nullable: false, comment: units}
"""


def _settings(settings: Settings, folder: Path) -> Settings:
    return settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"sources_dir": str(folder)})})


def _write(folder: Path, name: str, text: str) -> None:
    (folder / f"{name}.yaml").write_text(text, encoding="utf-8")


def test_file_source_declares_schema_in_order_with_bronze_metadata(tmp_path: Path, settings: Settings) -> None:
    _write(tmp_path, "orders", GOOD)
    source = load_source("orders", _settings(settings, tmp_path))
    assert isinstance(source, FileSource)
    schema = fx.bronze_schema(source)
    assert [(f.name, f.dataType, f.nullable) for f in schema.fields] == [
        ("id", T.StringType(), True),
        ("ts", T.TimestampType(), True),
        ("qty", T.LongType(), True),
        ("_ingested_at", T.TimestampType(), True),
        ("_source_file", T.StringType(), True),
        ("_batch_id", T.StringType(), True),
        ("event_date", T.DateType(), True),
    ]
    assert schema["qty"].metadata == {"comment": "units"}


def test_relative_landing_path_is_under_landing_root(tmp_path: Path, settings: Settings) -> None:
    _write(tmp_path, "orders", GOOD)
    source = load_source("orders", _settings(settings, tmp_path))
    assert source.landing_uri(settings) == f"{settings.landing_root}/raw/orders"


def test_unknown_source_is_a_config_error_listing_known_sources(tmp_path: Path, settings: Settings) -> None:
    _write(tmp_path, "orders", GOOD)
    with pytest.raises(ConfigError, match=r"unknown source 'nope': .*nope.yaml not found \(defined sources: orders\)"):
        load_source("nope", _settings(settings, tmp_path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("qty: {type: long", "qty: {type: lng"), r"orders.yaml: columns.qty.type: unknown type 'lng'"),
        (GOOD + "extra_key: 1\n", r"orders.yaml: extra_key: unknown field"),
        (GOOD.replace("table: orders\n", ""), r"orders.yaml: table: required field is missing"),
        (GOOD.replace("event_time_column: ts", "event_time_column: id"), r"event_time_column: 'id' must be declared as timestamp"),
        (GOOD.replace("kind: files", "kind: ftp"), r"orders.yaml: kind: .*'ftp'"),
        ("- a\n- b\n", r"orders.yaml: a source must be a mapping"),
        (GOOD + "  _batch_id: string\n", r"columns: _batch_id is reserved"),
    ],
    ids=["bad-type", "unknown-field", "missing-field", "event-time-not-timestamp", "unknown-kind", "not-a-mapping", "reserved"],
)
def test_bad_source_file_names_file_and_field(tmp_path: Path, settings: Settings, text: str, message: str) -> None:
    _write(tmp_path, "orders", text)
    with pytest.raises(ConfigError, match=message):
        load_source("orders", _settings(settings, tmp_path))


def test_kind_kafka_loads_the_kafka_model(tmp_path: Path, settings: Settings) -> None:
    _write(tmp_path, "clicks", "kind: kafka\ntopics: [clicks]\ntable: clicks\ncolumns:\n  id: string\n")
    assert isinstance(load_source("clicks", _settings(settings, tmp_path)), KafkaSource)


@pytest.mark.parametrize("name", ["online_retail", "transactions"])
def test_shipped_sources_load(settings: Settings, name: str) -> None:
    source = load_source(name, _settings(settings, REPO_ROOT / "conf" / "sources"))
    assert isinstance(source, FileSource) and source.table == name


# -- file selection -----------------------------------------------------------------------

T0 = dt.datetime(2024, 1, 1, 12, 0)


def test_select_files_skips_same_identity_and_flags_changed_ingested_files() -> None:
    listed = [
        FileInfo("s3a://b/a.parquet", 10, T0),  # ingested, unchanged -> skip
        FileInfo("s3a://b/b.parquet", 11, T0),  # ingested, size changed -> changed
        FileInfo("s3a://b/c.parquet", 12, T0 + dt.timedelta(hours=1)),  # quarantined, re-uploaded -> new
        FileInfo("s3a://b/d.parquet", 13, T0),  # quarantined, unchanged -> skip
        FileInfo("s3a://b/e.parquet", 14, T0),  # never seen -> new
    ]
    tracked = [
        fx.TrackedFile("s3a://b/a.parquet", 10, T0, "ingested", "b1"),
        fx.TrackedFile("s3a://b/b.parquet", 10, T0, "ingested", "b1"),
        fx.TrackedFile("s3a://b/c.parquet", 12, T0, "quarantined", "b1"),
        fx.TrackedFile("s3a://b/d.parquet", 13, T0, "quarantined", "b1"),
    ]
    sel = fx.select_files(listed, tracked)
    assert [f.path[-9:] for f in sel.new] == ["c.parquet", "e.parquet"]
    assert [f.path[-9:] for f in sel.skipped] == ["a.parquet", "d.parquet"]
    assert [(f.path[-9:], t.batch_id) for f, t in sel.changed] == [("b.parquet", "b1")]


# -- cast plans -----------------------------------------------------------------------------


def _source(settings: Settings, tmp_path: Path, extra: str = "") -> FileSource:
    _write(tmp_path, "orders", GOOD + extra)
    source = load_source("orders", _settings(settings, tmp_path))
    assert isinstance(source, FileSource)
    return source


def _schema(**cols: T.DataType) -> T.StructType:
    return T.StructType([T.StructField(n, t, True) for n, t in cols.items()])


def test_cast_plan_accepts_identical_and_widening_types(settings: Settings, tmp_path: Path) -> None:
    plan = fx.cast_plan(_schema(id=T.StringType(), ts=T.TimestampNTZType(), qty=T.IntegerType()), _source(settings, tmp_path))
    assert plan.problems == ()
    assert [(c.name, c.checked) for c in plan.casts] == [("id", False), ("ts", False), ("qty", False)]


def test_cast_plan_checks_values_of_lossy_casts(settings: Settings, tmp_path: Path) -> None:
    plan = fx.cast_plan(_schema(id=T.LongType(), ts=T.TimestampType(), qty=T.StringType()), _source(settings, tmp_path))
    assert plan.problems == ()
    assert [(c.name, c.checked) for c in plan.casts] == [("id", False), ("ts", False), ("qty", True)]
    assert plan.needs_check


def test_cast_plan_lists_missing_unexpected_and_impossible_columns(settings: Settings, tmp_path: Path) -> None:
    plan = fx.cast_plan(_schema(id=T.StringType(), ts=T.BooleanType(), extra=T.DoubleType()), _source(settings, tmp_path))
    assert plan.problems == (
        "column ts is boolean, cannot be cast to timestamp",
        "missing column qty",
        "unexpected column extra",
    )


def test_cast_plan_drops_extra_columns_when_configured(settings: Settings, tmp_path: Path) -> None:
    source = _source(settings, tmp_path, "extra_columns: drop\n")
    plan = fx.cast_plan(_schema(id=T.StringType(), ts=T.TimestampType(), qty=T.LongType(), extra=T.DoubleType()), source)
    assert plan.problems == ()


# -- command line ---------------------------------------------------------------------------


def test_cli_unknown_source_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from mlops_spark import cli

    assert cli.main(["ingest", "--source", "no_such_source", "--conf-dir", str(REPO_ROOT / "conf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("mlops-spark ingest: error: unknown source 'no_such_source': ")
    assert "online_retail" in err[0]


def test_cli_ingest_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    from mlops_spark import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ingest", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--source NAME", "--strict", "--mode {available-now,continuous}"):
        assert option in out
    assert "conf/sources/NAME.yaml" in out and "quarantined" in out and "processing-time trigger" in out
