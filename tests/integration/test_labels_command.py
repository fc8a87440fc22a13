"""``mlops-spark labels``: churn labels against a plain-Python loop, edges, idempotency, bad input.

Edges pinned here (and documented in ``mlops-spark labels --help``): an event exactly at
a cut-off is history (the entity is active, nothing bought in the horizon yet); an event
exactly at cut-off + horizon is inside the horizon (not churned); one microsecond later
is outside (churned).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import random

import pytest
import yaml
from pyspark.testing import assertDataFrameEqual

from mlops_spark.cli import main
from tests.support import REPO_ROOT

D = dt.datetime
US = dt.timedelta(microseconds=1)


def _reference(events, keys, horizon_days, first=None, last=None):
    """Labels by brute force: every month start, every entity, every event."""
    known = [(k, ts) for k, ts in events if ts is not None and all(part is not None for part in k)]
    oldest, newest = min(ts for _, ts in known), max(ts for _, ts in known)
    horizon = dt.timedelta(days=horizon_days)
    last = last or (newest - horizon).date()
    rows, year, month = [], oldest.year, oldest.month
    while dt.date(year, month, 1) <= last:
        cut = D(year, month, 1)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        if cut < oldest or (first and cut.date() < first) or cut + horizon > newest:
            continue
        for entity in sorted({k for k, _ in known}):
            times = [ts for k, ts in known if k == entity]
            if not any(ts <= cut for ts in times):
                continue
            bought = any(cut < ts <= cut + horizon for ts in times)
            rows.append((*entity, cut, 0 if bought else 1))
    return rows


def _write_events(spark, table, events, key_schema):
    rows = [(*k, ts) for k, ts in events]
    spark.createDataFrame(rows, f"{key_schema}, ts TIMESTAMP").write.format("delta").mode("overwrite").saveAsTable(table)


def _labels(conf, *args):
    """Run ``mlops-spark labels`` in this process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["labels", "--conf", str(conf), "--conf-dir", str(REPO_ROOT / "conf"), "--log-level", "ERROR", *args])
    return code, out.getvalue().strip(), err.getvalue().strip()


@pytest.fixture(scope="module")
def conf(settings, tmp_path_factory):
    """Settings of the test session's lake, sized like the session (the CLI reuses its SparkSession)."""
    path = tmp_path_factory.mktemp("labels") / "settings.yaml"
    spark_conf = {"master": "local[2]", "ui_enabled": False, "shuffle_partitions": 2}
    path.write_text(yaml.safe_dump({"lake_root": settings.lake_root, "spark": spark_conf}))
    return path


EDGE_EVENTS = [
    ((1,), D(2024, 1, 10, 9)),  # the oldest event: the first cut-off is 2024-02-01
    ((1,), D(2024, 2, 1)),  # exactly at the cut-off: history
    ((1,), D(2024, 3, 2)),  # exactly at 2024-02-01 + 30 days: inside the horizon
    ((2,), D(2024, 1, 20)),
    ((2,), D(2024, 3, 2) + US),  # one microsecond past the horizon of 2024-02-01
    ((3,), D(2024, 2, 15, 12)),  # a tie: two events at the same time, first seen after 2024-02-01
    ((3,), D(2024, 2, 15, 12)),
    ((4,), D(2024, 3, 1)),  # the first event exactly at a cut-off: active at it
    ((6,), D(2024, 5, 5)),  # the newest keyed event: cut-offs up to 2024-04-01 have a full horizon
    ((None,), D(2024, 12, 31)),  # no key: nobody's event, does not extend the range
    ((5,), None),  # no time
]


@pytest.fixture(scope="module")
def edge_run(spark, conf):
    """The edge events in a table, labelled once with a 30-day horizon: (args, summary)."""
    events_table, out_table = "silver.labels_edge_events", "ml.labels_edge"
    _write_events(spark, events_table, EDGE_EVENTS, "customer_id INT")
    args = ["--events-table", events_table, "--entity-keys", "customer_id", "--event-time", "ts", "--horizon-days", "30",
            "--output-table", out_table]  # fmt: skip
    code, out, err = _labels(conf, *args)
    assert code == 0, err
    return args, json.loads(out)


def test_labels_match_the_python_loop_on_edges_and_ties(spark, edge_run):
    _, summary = edge_run
    assert summary["cutoffs"] == ["2024-02-01", "2024-03-01", "2024-04-01"] and summary["skipped_cutoffs"] == []
    expected = _reference(EDGE_EVENTS, ["customer_id"], 30)
    assertDataFrameEqual(spark.table("ml.labels_edge"), spark.createDataFrame(expected, "customer_id INT, label_ts TIMESTAMP, churned INT"))
    by_key = {(r[0], r[1]): r[2] for r in expected}
    # The documented edges, spelled out: the reference must agree with the help text too.
    assert by_key[(1, D(2024, 2, 1))] == 0 and by_key[(2, D(2024, 2, 1))] == 1
    assert (3, D(2024, 2, 1)) not in by_key and by_key[(4, D(2024, 3, 1))] == 1  # 4 is active at 2024-03-01, then silent
    assert summary["rows"] == len(expected) and summary["churned"] == sum(r[2] for r in expected)


def test_rerun_on_the_same_events_writes_nothing_and_new_events_rewrite(spark, conf, unique_name):
    events_table, out_table = f"silver.{unique_name}_events", f"ml.{unique_name}"
    _write_events(spark, events_table, EDGE_EVENTS, "customer_id INT")
    args = ["--events-table", events_table, "--entity-keys", "customer_id", "--event-time", "ts", "--horizon-days", "30",
            "--output-table", out_table]  # fmt: skip
    first = json.loads(_labels(conf, *args)[1])
    again = json.loads(_labels(conf, *args)[1])
    assert first["written"] and not again["written"] and again["version"] == first["version"]
    more = [*EDGE_EVENTS, ((2,), D(2024, 4, 10))]  # customer 2 comes back in April: not churned at 2024-04-01
    _write_events(spark, events_table, more, "customer_id INT")
    changed = json.loads(_labels(conf, *args)[1])
    assert changed["written"] and changed["version"] == first["version"] + 1
    expected = spark.createDataFrame(_reference(more, ["customer_id"], 30), "customer_id INT, label_ts TIMESTAMP, churned INT")
    assertDataFrameEqual(spark.table(out_table), expected)


def test_composite_keys_and_explicit_cutoff_range_match_the_python_loop(spark, conf, unique_name):
    rng = random.Random(11)
    start = D(2023, 11, 1)
    events = [
        ((rng.choice(["a", "b"]), rng.randint(1, 12)), start + dt.timedelta(days=rng.randint(0, 240), hours=rng.choice([0, 0, 7])))
        for _ in range(300)
    ]
    events_table, out_table = f"silver.{unique_name}_events", f"ml.{unique_name}"
    _write_events(spark, events_table, events, "store STRING, customer_id INT")
    first, last = dt.date(2023, 12, 15), dt.date(2024, 9, 1)
    code, out, err = _labels(conf, "--events-table", events_table, "--entity-keys", "store,customer_id", "--event-time", "ts",
                             "--first-cutoff", str(first), "--last-cutoff", str(last), "--output-table", out_table)  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    # Data ends by 2024-06-28: the cut-offs from 2024-04-01 on have no full 90-day horizon.
    assert summary["cutoffs"][0] == "2024-01-01" and summary["skipped_cutoffs"][-1] == "2024-09-01"
    expected = _reference(events, ["store", "customer_id"], 90, first, last)
    schema = "store STRING, customer_id INT, label_ts TIMESTAMP, churned INT"
    assertDataFrameEqual(spark.table(out_table), spark.createDataFrame(expected, schema))


@pytest.mark.parametrize(
    ("table", "keys", "time_col", "message"),
    [
        ("silver.labels_no_such_table", "customer_id", "ts", "--events-table: table silver.labels_no_such_table does not exist"),
        ("silver.labels_edge_events", "customer_no", "ts", "--entity-keys: column(s) customer_no not in silver.labels_edge_events"),
        ("ml.labels_edge", "customer_id", "churned", "--event-time: column 'churned' of ml.labels_edge is int, not a timestamp or date"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(conf, edge_run, table, keys, time_col, message):
    code, out, err = _labels(conf, "--events-table", table, "--entity-keys", keys, "--event-time", time_col)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("mlops-spark labels: error: " + message), err


def test_no_cutoff_with_a_full_horizon_is_exit_code_2(spark, conf, unique_name):
    table = f"silver.{unique_name}"
    _write_events(spark, table, [((1,), D(2024, 1, 5)), ((1,), D(2024, 3, 1))], "customer_id INT")
    code, _, err = _labels(conf, "--events-table", table, "--entity-keys", "customer_id", "--event-time", "ts")
    assert code == 2 and len(err.splitlines()) == 1
    assert "no monthly cut-off in range has a full 90-day horizon before the newest event" in err
