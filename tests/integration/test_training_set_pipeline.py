"""Training sets written to Delta: recorded input versions, idempotent re-runs, rebuilds by time travel, the CLI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark.cli import main
from mlops_spark.spark import delta
from mlops_spark.training import training_set
from mlops_spark.training.definition import parse_definition

D = dt.datetime


@pytest.fixture
def inputs(spark, unique_name):
    """A label table and two feature tables (different key names, one with a TTL)."""
    labels = f"ml.{unique_name}_labels"
    spend = f"features.{unique_name}_spend"
    visits = f"features.{unique_name}_visits"
    spark.createDataFrame(
        [
            (1, D(2024, 1, 10), 1, "a"),
            (1, D(2024, 1, 10), 1, "a"),  # duplicate label row: kept twice
            (1, D(2024, 2, 10), 0, "b"),
            (2, D(2024, 1, 10), 0, "c"),  # no feature history
            (3, D(2024, 3, 1), 1, "d"),
        ],
        "customer_id long, label_ts timestamp, churned int, note string",
    ).write.format("delta").saveAsTable(labels)
    spark.createDataFrame(
        [
            (1, D(2024, 1, 9), 10.0, 1),
            (1, D(2024, 1, 10), 12.0, 2),  # exactly at label time: used
            (1, D(2024, 2, 10, 0, 0, 0, 1), 99.0, 9),  # one microsecond after: not used
            (3, D(2024, 2, 1), 5.0, 1),
        ],
        "customer_id long, feature_ts timestamp, spend_30d double, orders_30d int",
    ).write.format("delta").saveAsTable(spend)
    spark.createDataFrame(
        [(1, D(2024, 1, 1), 3), (3, D(2024, 2, 28), 7)],
        "cust long, visit_day timestamp, visits_7d long",
    ).write.format("delta").saveAsTable(visits)
    definition = parse_definition(
        {
            "name": unique_name,
            "labels": {"table": labels, "entity_keys": ["customer_id"], "timestamp": "label_ts", "label": "churned"},
            "features": [
                {"table": spend, "name": "spend", "renames": {"orders_30d": "orders"}},
                {"table": visits, "name": "visits", "join_keys": {"customer_id": "cust"}, "timestamp": "visit_day", "ttl": "5d"},
            ],
        }
    )
    return definition, labels, spend, visits


EXPECTED_SCHEMA = (
    "training_set_id string, customer_id long, label_ts timestamp, churned int, note string, "
    "spend_30d double, orders int, spend_feature_ts timestamp, visits_7d long, visits_feature_ts timestamp"
)


def _expected(spark, set_id):
    rows = [
        (1, D(2024, 1, 10), 1, "a", 12.0, 2, D(2024, 1, 10), None, None),
        (1, D(2024, 1, 10), 1, "a", 12.0, 2, D(2024, 1, 10), None, None),
        (1, D(2024, 2, 10), 0, "b", 12.0, 2, D(2024, 1, 10), None, None),
        (2, D(2024, 1, 10), 0, "c", None, None, None, None, None),
        (3, D(2024, 3, 1), 1, "d", 5.0, 1, D(2024, 2, 1), 7, D(2024, 2, 28)),
    ]
    return spark.createDataFrame([(set_id, *r) for r in rows], EXPECTED_SCHEMA)


def _rows(spark, result):
    return spark.table(result.rows_table).where(F.col("training_set_id") == result.training_set_id)


def test_run_writes_point_in_time_rows_and_records_input_versions(spark, settings, inputs):
    definition, labels, spend, visits = inputs
    result = training_set.run(spark, settings, definition, run_date=dt.date(2024, 3, 2))
    assertDataFrameEqual(_rows(spark, result), _expected(spark, result.training_set_id))
    record = spark.table("ml.training_sets").where(F.col("training_set_id") == result.training_set_id).first()
    versions = {t: delta.current_version(spark, t) for t in (labels, spend, visits)}
    assert {i["table"]: i["version"] for i in record["inputs"]} == versions
    assert (record["row_count"], record["rows_table"], json.loads(record["definition"])["name"]) == (5, result.rows_table, definition.name)
    assert record["feature_columns"] == ["spend_30d", "orders", "visits_7d"]


def test_running_the_same_definition_on_unchanged_inputs_writes_nothing(spark, settings, inputs):
    definition = inputs[0]
    first = training_set.run(spark, settings, definition)
    rows_version = delta.current_version(spark, first.rows_table)
    registry_version = delta.current_version(spark, "ml.training_sets")
    second = training_set.run(spark, settings, definition)
    assert (second.training_set_id, second.written) == (first.training_set_id, False)
    assert (delta.current_version(spark, first.rows_table), delta.current_version(spark, "ml.training_sets")) == (
        rows_version,
        registry_version,
    )


def test_rebuild_after_inputs_changed_restores_the_recorded_rows(spark, settings, inputs):
    definition, labels, spend, _ = inputs
    first = training_set.run(spark, settings, definition)
    spark.createDataFrame(
        [(1, D(2024, 1, 9, 12), 500.0, 50)], "customer_id long, feature_ts timestamp, spend_30d double, orders_30d int"
    ).write.format("delta").mode("append").saveAsTable(spend)
    spark.sql(f"DELETE FROM {labels} WHERE customer_id = 2")
    changed = training_set.run(spark, settings, definition)
    assert changed.training_set_id != first.training_set_id and changed.row_count == 4
    # Someone damages the recorded rows; the rebuild reads the recorded versions, not the latest.
    spark.sql(f"DELETE FROM {first.rows_table} WHERE training_set_id = '{first.training_set_id}' AND customer_id = 1")
    rebuilt = training_set.rebuild(spark, settings, first.training_set_id)
    assert rebuilt.inputs == first.inputs
    assertDataFrameEqual(_rows(spark, first), _expected(spark, first.training_set_id))


def test_rebuild_of_an_unknown_id_exits_2_with_one_line(spark, settings, tmp_path, capsys):
    conf = _conf_file(tmp_path, settings)
    code = main(
        ["training-set", "--rebuild", "nope_0000000000000000", "--conf", str(conf), "--conf-dir", str(_conf_dir()), "--log-level", "ERROR"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "training set nope_0000000000000000 is not recorded in ml.training_sets" in err[0]


def _conf_dir():
    from tests.support import REPO_ROOT

    return REPO_ROOT / "conf"


def _conf_file(tmp_path, settings, definition=None):
    data = {
        "lake_root": settings.lake_root,
        "spark": {"master": "local[2]", "ui_enabled": False, "shuffle_partitions": 2},
    }
    if definition is not None:
        data["training_sets"] = {"definitions": {definition["name"]: definition}}
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_builds_an_inline_definition_from_the_conf_file_and_rebuilds_it(spark, settings, inputs, tmp_path, capsys):
    definition = json.loads(inputs[0].canonical_json())
    conf = _conf_file(tmp_path, settings, definition)
    assert main(["training-set", "--conf", str(conf), "--conf-dir", str(_conf_dir()), "--plain-logs"]) == 0
    out = capsys.readouterr().out.strip()
    set_id = out.split()[2]
    assert out.startswith(f"training set {set_id} built: 5 rows in ml.training_set_{definition['name']}")
    assert main(["training-set", "--rebuild", set_id, "--conf", str(conf), "--conf-dir", str(_conf_dir()), "--plain-logs"]) == 0
    assert "rebuilt: 5 rows" in capsys.readouterr().out
    assertDataFrameEqual(
        spark.table(f"ml.training_set_{definition['name']}").where(F.col("training_set_id") == set_id), _expected(spark, set_id)
    )


def test_cli_unknown_definition_name_exits_2_with_one_line(settings, tmp_path, capsys):
    conf = _conf_file(tmp_path, settings)
    code = main(["training-set", "--definition", "no_such_set", "--conf", str(conf), "--conf-dir", str(_conf_dir())])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "training set definition 'no_such_set' not found" in err[0]


def test_definition_naming_a_missing_feature_column_is_a_config_error(spark, settings, inputs, tmp_path, capsys):
    definition = json.loads(inputs[0].canonical_json())
    definition["features"][0]["features"] = ["spend_30d", "spend_90d"]
    conf = _conf_file(tmp_path, settings, definition)
    code = main(["training-set", "--conf", str(conf), "--conf-dir", str(_conf_dir()), "--log-level", "ERROR"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "has no column(s) ['spend_90d']" in err[0]


def test_run_with_exact_windows_computes_features_at_each_label_time(spark, settings, inputs, unique_name):
    definition, labels, _, _ = inputs
    events = f"silver.{unique_name}_events"
    spark.createDataFrame(
        [
            (1, D(2024, 1, 9, 12), 10.0),
            (1, D(2024, 1, 10), 5.0),  # exactly at the label time: inside
            (1, D(2024, 1, 10, 0, 0, 0, 1), 99.0),  # one microsecond later: outside for that label
            (3, D(2024, 2, 20), 4.0),
        ],
        "customer_id long, event_ts timestamp, amount double",
    ).write.format("delta").saveAsTable(events)
    spec = {
        "name": "spend",
        "source": events,
        "entity": ["customer_id"],
        "timestamp": "event_ts",
        "aggregations": [{"column": "amount", "functions": ["count", "sum"], "windows": ["1d", "lifetime"]}],
    }
    exact = parse_definition(
        {
            "name": f"{unique_name}_exact",
            "labels": json.loads(definition.canonical_json())["labels"],
            "exact_windows": [
                {"feature_set": spec, "features": ["amount_count_lifetime", "amount_sum_1d"], "renames": {"amount_sum_1d": "spend_1d"}}
            ],
        }
    )
    result = training_set.run(spark, settings, exact)
    expected = spark.createDataFrame(
        [
            (result.training_set_id, 1, D(2024, 1, 10), 1, "a", 2, 15.0),
            (result.training_set_id, 1, D(2024, 1, 10), 1, "a", 2, 15.0),
            (result.training_set_id, 1, D(2024, 2, 10), 0, "b", 3, None),
            (result.training_set_id, 2, D(2024, 1, 10), 0, "c", 0, None),
            (result.training_set_id, 3, D(2024, 3, 1), 1, "d", 1, None),
        ],
        "training_set_id string, customer_id long, label_ts timestamp, churned int, note string, "
        "amount_count_lifetime long, spend_1d double",
    )
    assertDataFrameEqual(_rows(spark, result), expected)
    assert set(result.inputs) == {labels, events}


def test_lookup_defaults_come_from_the_feature_tables_properties(spark, settings, inputs, unique_name):
    definition = inputs[0]
    table = f"features.{unique_name}_snap"
    spark.createDataFrame(
        [(1, dt.date(2024, 1, 8), D(2024, 1, 8, 23, 59, 59, 999999), 3.5)],
        "customer_id long, feature_date date, snap_ts timestamp, amount_sum_7d double",
    ).write.format("delta").saveAsTable(table)
    delta.set_properties(spark, table, {"mlops.primary_key": "customer_id,feature_date", "mlops.timestamp_column": "snap_ts"})
    snap = parse_definition(
        {
            "name": f"{unique_name}_snap",
            "labels": json.loads(definition.canonical_json())["labels"],
            "features": [{"table": table, "name": "snap"}],
        }
    )
    result = training_set.run(spark, settings, snap)
    last = D(2024, 1, 8, 23, 59, 59, 999999)
    expected = spark.createDataFrame(
        [
            (result.training_set_id, 1, D(2024, 1, 10), 1, "a", 3.5, last),
            (result.training_set_id, 1, D(2024, 1, 10), 1, "a", 3.5, last),
            (result.training_set_id, 1, D(2024, 2, 10), 0, "b", 3.5, last),
            (result.training_set_id, 2, D(2024, 1, 10), 0, "c", None, None),
            (result.training_set_id, 3, D(2024, 3, 1), 1, "d", None, None),
        ],
        "training_set_id string, customer_id long, label_ts timestamp, churned int, note string, "
        "amount_sum_7d double, snap_feature_ts timestamp",
    )
    assertDataFrameEqual(_rows(spark, result), expected)
