"""Notebooks are committed without outputs: a diff shows code and text, never stale results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def executed_cells(path: Path) -> list[str]:
    """Where ``path`` holds results of a run: cells with outputs or an execution count."""
    found = []
    for index, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        if cell.get("outputs"):
            found.append(f"cell {index}: {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index}: execution_count {cell['execution_count']}")
    return found


def test_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"analyst_feature_tables.ipynb", "data_scientist_training.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    found = executed_cells(path)
    assert not found, f"{path.name} has outputs; strip them (jupyter nbconvert --clear-output --inplace {path.name}): {found}"


def test_executed_cells_finds_outputs_and_counts(tmp_path: Path) -> None:
    notebook = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# title"},
            {"cell_type": "code", "metadata": {}, "source": "1", "execution_count": None, "outputs": []},
            {"cell_type": "code", "metadata": {}, "source": "2", "execution_count": 3, "outputs": []},
            {
                "cell_type": "code",
                "metadata": {},
                "source": "print(4)",
                "execution_count": None,
                "outputs": [{"output_type": "stream", "name": "stdout", "text": "4\n"}],
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "run.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    assert executed_cells(path) == ["cell 2: execution_count 3", "cell 3: 1 output(s)"]
