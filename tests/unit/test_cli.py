"""The CLI: every step listed with help; user errors are one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlops_spark.cli import STEPS, build_parser, main

EXPECTED_STEPS = {"ingest", "validate", "features", "training-set", "train", "score", "monitor", "retrain", "demo"}


def test_help_lists_every_step():
    out = subprocess.run([sys.executable, "-m", "mlops_spark.cli", "--help"], capture_output=True, text=True, check=True)
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert listed >= EXPECTED_STEPS


@pytest.mark.parametrize("step", sorted(s.name for s in STEPS))
def test_every_step_help_documents_every_option(step, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([step, "--help"])
    assert exit_info.value.code == 0
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "step").choices[step]
    undocumented = [a.option_strings or a.dest for a in sub._actions if not a.help]
    assert undocumented == []


@pytest.fixture
def bad_conf_dir(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text("lake_root: ./lake\n")
    (tmp_path / "local.yaml").write_text("spark:\n  shuffle_partitions: lots\n")
    return tmp_path


def test_bad_config_file_gives_one_line_and_exit_code_2(bad_conf_dir, capsys):
    code = main(["config", "show", "--conf-dir", str(bad_conf_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "local.yaml: spark.shuffle_partitions" in err[0]


def test_bad_environment_value_gives_one_line_and_exit_code_2_in_a_real_process(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MLOPS_SPARK__UI_ENABLED": "maybe"}
    proc = subprocess.run([sys.executable, "-m", "mlops_spark.cli", "config", "show"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "mlops-spark config: error: environment: MLOPS_SPARK__UI_ENABLED: spark.ui_enabled: "
        "Input should be a valid boolean, unable to interpret input (got 'maybe')"
    ]


def test_config_show_prints_resolved_settings_with_secrets_masked(capsys, monkeypatch):
    monkeypatch.setenv("MLOPS_S3__SECRET_ACCESS_KEY", "topsecret-value")
    assert main(["config", "show", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"secret_access_key": "**********"' in out and "topsecret-value" not in out


def test_bad_run_date_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "show", "--run-date", "2024-13-01"])
    assert exit_info.value.code == 2
    assert "'2024-13-01' is not a date in YYYY-MM-DD form" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["config", "show", "--run-dat", "2024-01-01"], ["demo", "--row", "10"]])
def test_abbreviated_options_are_rejected_not_expanded(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"unrecognized arguments: {argv[-2]}" in capsys.readouterr().err


def test_a_step_that_is_not_built_yet_says_so_with_exit_code_2(capsys, monkeypatch):
    import mlops_spark.cli as cli

    monkeypatch.setattr(cli, "STEPS", (*cli.STEPS, cli.Step("future-step", "a later issue", None)))
    assert cli.main(["future-step"]) == 2
    assert capsys.readouterr().err.strip() == "mlops-spark future-step: error: 'future-step' is not implemented yet"


def test_a_monitoring_alert_is_an_alert_line_with_exit_code_3_not_an_error(capsys, monkeypatch, tmp_path):
    import types

    import mlops_spark.cli as cli
    from mlops_spark.errors import MonitoringAlert

    def run_command(args, settings):
        raise MonitoringAlert("2 threshold breach(es) for m v1 on 2026-01-01 (retrain not due); alert /reports/a.json")

    step = types.ModuleType("alerting_step")
    step.add_arguments = lambda parser: None  # type: ignore[attr-defined]
    step.run_command = run_command  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "alerting_step", step)
    monkeypatch.setattr(cli, "STEPS", (*cli.STEPS, cli.Step("alerting-step", "raises an alert", "alerting_step")))
    monkeypatch.setenv("MLOPS_LAKE_ROOT", str(tmp_path / "lake"))
    assert cli.main(["alerting-step"]) == 3
    assert capsys.readouterr().err.strip() == (
        "mlops-spark alerting-step: alert: 2 threshold breach(es) for m v1 on 2026-01-01 (retrain not due); alert /reports/a.json"
    )


def test_java_missing_gives_one_line_and_exit_code_2_in_a_real_process(tmp_path):
    # A PATH with Python's folder but no java, no JAVA_HOME: the step fails before starting Spark.
    env = {"PATH": str(Path(sys.executable).parent), "MLOPS_LAKE_ROOT": str(tmp_path / "lake")}
    argv = [sys.executable, "-m", "mlops_spark.cli", "features", "--feature-set", "customer_spend", "--plain-logs"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=Path(__file__).parents[2])
    errors = [line for line in proc.stderr.splitlines() if " INFO " not in line]
    assert proc.returncode == 2
    assert errors == [
        "mlops-spark features: error: java not found on PATH and JAVA_HOME is not set: install Java 17 (e.g. openjdk-17-jre-headless)"
    ]


def test_java_home_without_java_is_named(tmp_path, monkeypatch):
    from mlops_spark.errors import MissingDependencyError
    from mlops_spark.spark.session import check_java

    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(MissingDependencyError, match=f"JAVA_HOME={tmp_path} has no bin/java"):
        check_java()
