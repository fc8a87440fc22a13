"""Training-set definitions: validation errors and feature sets inlined for reproducibility."""

from __future__ import annotations

import pytest
import yaml

from mlops_spark.errors import ConfigError
from mlops_spark.features.spec import load_feature_set
from mlops_spark.training.definition import inline_feature_sets, parse_definition

LABELS = {"table": "ml.labels", "entity_keys": ["customer_id"]}
SPEC = {
    "name": "spend",
    "source": "silver.tx",
    "entity": ["customer_id"],
    "timestamp": "event_ts",
    "aggregations": [{"column": "amount", "functions": ["sum"], "windows": ["7d"]}],
}


def test_named_feature_set_is_inlined_into_the_definition(tmp_path):
    (tmp_path / "spend.yaml").write_text(yaml.safe_dump(SPEC))
    definition = parse_definition({"name": "t", "labels": LABELS, "exact_windows": [{"feature_set": "spend"}]})
    inlined = inline_feature_sets(definition, tmp_path)
    assert inlined.exact_windows[0].feature_set == load_feature_set(tmp_path / "spend.yaml").model_dump(mode="json")
    assert inlined.exact_windows[0].events_table() == "silver.tx"


def test_definition_without_any_feature_source_is_rejected():
    with pytest.raises(ConfigError, match="give at least one feature lookup"):
        parse_definition({"name": "t", "labels": LABELS}, "t.yaml")


def test_definition_with_a_bad_ttl_names_the_field():
    with pytest.raises(ConfigError, match=r"t.yaml: features.0.ttl: .*'30 days' is not a duration"):
        parse_definition({"name": "t", "labels": LABELS, "features": [{"table": "features.x", "ttl": "30 days"}]}, "t.yaml")


def test_lookups_with_the_same_name_are_rejected():
    with pytest.raises(ConfigError, match="share the name"):
        parse_definition({"name": "t", "labels": LABELS, "features": [{"table": "features.x"}, {"table": "other.x"}]}, "t.yaml")
