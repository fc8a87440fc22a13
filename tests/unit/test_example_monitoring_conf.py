"""The shipped monitoring example: its retrain loop is made of commands the CLI accepts."""

from __future__ import annotations

import yaml

from mlops_spark.cli import build_parser
from tests.support import REPO_ROOT


def test_every_retrain_step_of_the_monitoring_example_parses_with_the_cli():
    conf = yaml.safe_load((REPO_ROOT / "conf" / "examples" / "monitoring.yaml").read_text())
    steps = conf["monitoring"]["retrain_steps"]
    assert [s["step"] for s in steps] == ["ingest", "validate", "features", "training-set", "train", "score"]
    parser = build_parser()
    for step in steps:
        args = parser.parse_args([step["step"], *step["args"], "--run-date", "2024-06-01"])
        assert args.step == step["step"]
