"""`mlops-spark validate` in a real process: a bad suite is one line and exit 2, before Spark starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT


def _validate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"lake_root: {tmp_path / 'lake'}\n")
    cmd = [sys.executable, "-m", "mlops_spark.cli", "validate", "--conf", str(conf), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, env={"PATH": "/usr/bin:/bin"})


def test_unknown_suite_exits_2_with_one_line(tmp_path):
    proc = _validate(tmp_path, "--table", "bronze.transactions", "--suite", "no_such_suite")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlops-spark validate: error: suite 'no_such_suite' not found at ")


def test_suite_with_an_unknown_rule_kind_exits_2_naming_the_file(tmp_path):
    suite = tmp_path / "bad.yaml"
    suite.write_text("name: bad\ndate_column: d\nrules:\n  - {name: r, kind: sometimes_null, column: x, action: warn}\n")
    proc = _validate(tmp_path, "--table", "bronze.transactions", "--suite", str(suite))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"mlops-spark validate: error: {suite}: rules.0: unknown kind 'sometimes_null' "
        "(one of 'not_null', 'range', 'in_set', 'regex', 'unique', 'expression')"
    ]
