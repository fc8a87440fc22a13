"""Suite files: the shipped suites load; a bad suite is a ConfigError naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_spark.errors import ConfigError, UsageError
from mlops_spark.validate.suite import load_suite, resolve_suite_path
from tests.support import REPO_ROOT

SUITES = REPO_ROOT / "conf" / "expectations"

GOOD = """
name: s
date_column: d
columns: {d: date, x: long}
rules:
  - {name: x_present, kind: not_null, column: x, action: quarantine}
"""


@pytest.mark.parametrize("name", ["transactions", "online_retail"])
def test_shipped_suite_loads(name):
    suite = load_suite(resolve_suite_path(name, SUITES))
    assert suite.name == name and suite.rules


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_unknown_rule_kind_is_a_config_error_naming_the_file(tmp_path):
    path = _write(tmp_path, GOOD.replace("kind: not_null", "kind: bogus"))
    with pytest.raises(ConfigError, match=rf"^{path}: rules\.0: unknown kind 'bogus'"):
        load_suite(path)


def test_unknown_action_is_a_config_error_naming_the_file(tmp_path):
    path = _write(tmp_path, GOOD.replace("action: quarantine", "action: drop"))
    with pytest.raises(ConfigError, match=rf"^{path}: rules\.0\.not_null\.action: "):
        load_suite(path)


def test_unknown_key_is_a_config_error(tmp_path):
    path = _write(tmp_path, GOOD + "colour: blue\n")
    with pytest.raises(ConfigError, match=rf"^{path}: colour: Extra inputs are not permitted"):
        load_suite(path)


def test_unknown_expectation_type_is_a_config_error(tmp_path):
    path = _write(tmp_path, GOOD + "expectations:\n  - {type: expect_the_moon, kwargs: {column: x}}\n")
    with pytest.raises(ConfigError, match=rf"^{path}: expectations\.0: unknown expectation type 'expect_the_moon'"):
        load_suite(path)


def test_bad_expectation_arguments_are_a_config_error(tmp_path):
    path = _write(tmp_path, GOOD + "expectations:\n  - {type: expect_column_values_to_be_between, kwargs: {colum: x}}\n")
    with pytest.raises(ConfigError, match=rf"^{path}: expectations\.0 \(expect_column_values_to_be_between\): "):
        load_suite(path)


def test_rule_on_an_undeclared_column_is_a_config_error(tmp_path):
    path = _write(tmp_path, GOOD.replace("column: x", "column: y"))
    with pytest.raises(ConfigError, match="rule 'x_present' uses columns not declared under columns: y"):
        load_suite(path)


def test_unknown_suite_is_a_usage_error_listing_the_available_ones():
    with pytest.raises(UsageError, match=r"suite 'nope' not found at .*nope\.yaml \(available: online_retail, transactions\)"):
        resolve_suite_path("nope", SUITES)
