"""Row rules: every rule in one projection, checked against a plain Python reference."""

from __future__ import annotations

import random

import pytest
from pyspark.sql import Row
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark.validate.rules import apply_rules, summarize
from mlops_spark.validate.suite import Suite

SCHEMA = T.StructType(
    [
        T.StructField("k", T.StringType()),
        T.StructField("ts", T.LongType()),
        T.StructField("amount", T.DoubleType()),
        T.StructField("cat", T.StringType()),
        T.StructField("code", T.StringType()),
        T.StructField("id", T.LongType()),
    ]
)

SUITE = Suite.model_validate(
    {
        "name": "t",
        "date_column": "d",
        "rules": [
            {"name": "amount_present", "kind": "not_null", "column": "amount", "action": "quarantine"},
            {"name": "amount_positive", "kind": "range", "column": "amount", "min": 0, "strict_min": True, "action": "quarantine"},
            {"name": "known_cat", "kind": "in_set", "column": "cat", "values": ["a", "b"], "action": "warn"},
            {"name": "not_cancelled", "kind": "regex", "column": "code", "pattern": "^C", "must_match": False, "action": "quarantine"},
            {"name": "small_amount", "kind": "expression", "sql": "amount < 100", "action": "fail"},
            {"name": "dup_k", "kind": "unique", "columns": ["k"], "order_by": ["ts"], "action": "quarantine"},
        ],
    }
)
ACTION_OF = {r.name: r.action for r in SUITE.rules}


def _random_rows(n: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    pick = rng.choice
    return [
        (
            pick(["k1", "k2", "k3", "k4", None]),
            pick([1, 2, 2, 3, None]),  # ties and nulls in the ordering column
            pick([-1.0, 0.0, 5.0, 50.0, 150.0, None]),
            pick(["a", "b", "z", None]),
            pick(["C1", "A1", "1C", None]),
            i,
        )
        for i in range(n)
    ]


def _reference(rows: list[tuple]) -> list[Row]:
    """The same rules as plain Python loops."""

    def nulls_first(v):
        return (v is not None, v)

    later_duplicates = set()
    by_key: dict[str, list[tuple]] = {}
    for row in rows:
        if row[0] is not None:
            by_key.setdefault(row[0], []).append(row)
    for group in by_key.values():
        # order_by ts, then every other column in schema order, nulls first
        ordered = sorted(group, key=lambda r: (nulls_first(r[1]), nulls_first(r[2]), nulls_first(r[3]), nulls_first(r[4]), r[5]))
        later_duplicates.update(r[5] for r in ordered[1:])
    out = []
    for _k, _ts, amount, cat, code, id_ in rows:
        failed = []
        if amount is None:
            failed.append("amount_present")
        if amount is not None and not amount > 0:
            failed.append("amount_positive")
        if cat is not None and cat not in ("a", "b"):
            failed.append("known_cat")
        if code is not None and code.startswith("C"):
            failed.append("not_cancelled")
        if amount is not None and not amount < 100:
            failed.append("small_amount")
        if id_ in later_duplicates:
            failed.append("dup_k")
        actions = {ACTION_OF[n] for n in failed}
        action = next((a for a in ("fail", "quarantine", "warn") if a in actions), "pass")
        out.append(Row(id=id_, _failed_rules=failed, _dq_warnings=[n for n in failed if ACTION_OF[n] == "warn"], _dq_action=action))
    return out


def test_every_rule_matches_a_python_reference_on_random_rows_with_nulls_and_ties(spark):
    rows = _random_rows(400, seed=7)
    flagged = spark.createDataFrame(rows, SCHEMA).repartition(3).transform(apply_rules, SUITE.rules)
    assertDataFrameEqual(flagged.select("id", "_failed_rules", "_dq_warnings", "_dq_action"), _reference(rows))


def test_rule_outcome_does_not_depend_on_partitioning(spark):
    df = spark.createDataFrame(_random_rows(200, seed=3), SCHEMA)
    one = df.coalesce(1).transform(apply_rules, SUITE.rules)
    many = df.repartition(5, "code").transform(apply_rules, SUITE.rules)
    assertDataFrameEqual(one, many)


def test_a_row_breaking_several_rules_lists_all_of_them_in_suite_order(spark):
    df = spark.createDataFrame([("k", 1, 500.0, "z", "C9", 1)], SCHEMA)
    out = df.transform(apply_rules, SUITE.rules)
    assertDataFrameEqual(
        out.select("_failed_rules", "_dq_warnings", "_dq_action"),
        [Row(_failed_rules=["known_cat", "not_cancelled", "small_amount"], _dq_warnings=["known_cat"], _dq_action="fail")],
    )


def test_nulls_pass_every_rule_but_not_null(spark):
    df = spark.createDataFrame([(None, None, None, None, None, 1)], SCHEMA)
    out = df.transform(apply_rules, SUITE.rules)
    assertDataFrameEqual(out.select("_failed_rules", "_dq_action"), [Row(_failed_rules=["amount_present"], _dq_action="quarantine")])


def test_first_duplicate_by_order_is_kept_and_ties_are_broken_by_the_other_columns(spark):
    rows = [("k", 2, 5.0, "a", "A", 1), ("k", 1, 9.0, "a", "A", 2), ("k", 1, 6.0, "a", "A", 3), ("j", 1, 5.0, "a", "A", 4)]
    out = spark.createDataFrame(rows, SCHEMA).transform(apply_rules, SUITE.rules)
    assertDataFrameEqual(
        out.select("id", "_failed_rules"),
        [Row(id=1, _failed_rules=["dup_k"]), Row(id=2, _failed_rules=["dup_k"]), Row(id=3, _failed_rules=[]), Row(id=4, _failed_rules=[])],
    )


def test_no_rules_pass_every_row(spark):
    df = spark.createDataFrame([("k", 1, 5.0, "a", "A", 1)], SCHEMA)
    out = df.transform(apply_rules, [])
    assertDataFrameEqual(
        out.select("_failed_rules", "_dq_warnings", "_dq_action"), [Row(_failed_rules=[], _dq_warnings=[], _dq_action="pass")]
    )


def test_summary_counts_match_a_python_loop(spark):
    rows = _random_rows(300, seed=11)
    flagged = spark.createDataFrame(rows, SCHEMA).transform(apply_rules, SUITE.rules)
    summary = flagged.transform(summarize, SUITE.rules).first().asDict()
    ref = _reference(rows)
    expected = {
        "rows_in": len(ref),
        "rows_fail": sum(r._dq_action == "fail" for r in ref),
        "rows_quarantined": sum(r._dq_action == "quarantine" for r in ref),
        "rows_warned": sum(bool(r._dq_warnings) for r in ref),
        **{f"rule_{i}": sum(rule.name in r._failed_rules for r in ref) for i, rule in enumerate(SUITE.rules)},
    }
    assert summary == expected


@pytest.mark.parametrize(
    ("bound", "value", "broken"), [("min", 0.0, False), ("min", -0.5, True), ("max", 10.0, False), ("max", 10.5, True)]
)
def test_range_bounds_are_inclusive_unless_strict(spark, bound, value, broken):
    suite = Suite.model_validate(
        {
            "name": "t",
            "date_column": "d",
            "rules": [{"name": "r", "kind": "range", "column": "amount", "min": 0, "max": 10, "action": "warn"}],
        }
    )
    df = spark.createDataFrame([("k", 1, value, "a", "A", 1)], SCHEMA).transform(apply_rules, suite.rules)
    assert df.first()["_failed_rules"] == (["r"] if broken else [])
