"""docs/configuration.md is generated from the settings models and cannot go stale."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from mlops_spark.config.base import Section
from mlops_spark.config.loader import env_layer, load_settings
from mlops_spark.config.reference import REFERENCE_PATH, definition_files, generate, main, settings_entries, undocumented, walk
from mlops_spark.config.settings import Settings
from tests.support import REPO_ROOT


def _models_reachable(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """Every model class reachable through field annotations, found without the generator."""
    if model in seen:
        return seen
    seen.add(model)
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            tp = stack.pop()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                _models_reachable(tp, seen)
            stack.extend(typing.get_args(tp))
    return seen


def test_committed_reference_equals_the_generated_one() -> None:
    committed = (REPO_ROOT / REFERENCE_PATH).read_text(encoding="utf-8")
    assert committed == generate(), "docs/configuration.md is stale: run `make docs` and commit it"


def test_every_settings_and_definition_field_has_a_description() -> None:
    models: set[type[BaseModel]] = set()
    for root in [Settings, *(d.model for d in definition_files())]:
        _models_reachable(root, models)
    names = {m.__name__ for m in models}
    assert {"SparkSettings", "MonitoringSettings", "RetrainStep", "LabelSource", "Aggregation", "ColumnSpec"} <= names
    missing = sorted(f"{m.__name__}.{name}" for m in models for name, f in m.model_fields.items() if not (f.description or "").strip())
    assert missing == []


def test_every_settings_field_is_in_the_reference() -> None:
    paths = {e.path for e in settings_entries()}
    for section, field in Settings.model_fields.items():
        sub = typing.get_args(field.annotation) or (field.annotation,)
        model = next((t for t in sub if isinstance(t, type) and issubclass(t, Section)), None)
        expected = {f"{section}.{name}" for name in model.model_fields} if model else {section}
        assert expected <= paths, f"missing from the reference: {sorted(expected - paths)}"


def test_documented_environment_variables_set_their_keys() -> None:
    entries = [e for e in settings_entries() if e.env]
    assert len(entries) > 40
    for entry in entries:
        if entry.env == "MLOPS_ENV":  # selects conf/<env>.yaml; the loader reads it itself
            assert load_settings(conf_dir=REPO_ROOT / "conf", environ={"MLOPS_ENV": "dev"}).env == "dev"
            continue
        sample = "[]" if entry.type.startswith("list") else "{}" if entry.type.startswith("dict") else "x1"
        node: object = env_layer({entry.env: sample})
        for part in entry.path.split("."):
            assert isinstance(node, dict) and part in node, f"{entry.env} does not set {entry.path}"
            node = node[part]
        assert node == (json.loads(sample) if sample != "x1" else sample)


def test_walk_lists_nested_items_and_reports_undocumented_fields() -> None:
    class Item(Section):
        step: str
        """Documented."""

    class Demo(Section):
        items: list[Item] = Field(default_factory=list)
        """The items."""

        bare: int = 3

    entries = list(walk(Demo, ["demo"], env=True))
    assert [(e.path, e.type, e.default, e.env) for e in entries] == [
        ("demo.items", "list[Item]", "[]", "MLOPS_DEMO__ITEMS"),
        ("demo.items[].step", "str", "required", None),
        ("demo.bare", "int", "3", "MLOPS_DEMO__BARE"),
    ]
    assert undocumented(entries) == ["demo.bare"]


def test_check_exits_1_with_one_line_when_the_file_is_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "configuration.md"
    out.write_text("# old\n", encoding="utf-8")
    assert main(["--check", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} is stale" in err
    assert main(["--output", str(out)]) == 0
    assert main(["--check", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == generate()
