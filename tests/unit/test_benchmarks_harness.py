"""The benchmark harness: result contract, table and JSON output, memory measurement, the runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from benchmarks import harness
from benchmarks.__main__ import available, main
from tests.support import REPO_ROOT


def test_result_has_the_contract_keys_and_project_over_baseline_ratios():
    res = harness.result("x", 100, {"project": 2.0, "duckdb": 4.0, "pandas": 1.0}, 512.5)
    assert res == {
        "name": "x",
        "rows": 100,
        "seconds": {"project": 2.0, "duckdb": 4.0, "pandas": 1.0},
        "ratios": {"project/duckdb": 0.5, "project/pandas": 2.0},
        "peak_rss_mb": 512.5,
    }
    assert harness.check_result(res) is res


def test_result_without_a_project_time_is_refused():
    with pytest.raises(ValueError, match="'project'"):
        harness.result("x", 1, {"duckdb": 1.0}, 1.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x", "rows": 1, "seconds": {"project": 1.0}, "ratios": {}},
        {"name": "x", "rows": 1, "seconds": {"project": 1.0, "b": 2.0}, "ratios": {}, "peak_rss_mb": 1.0},
        {"name": "x", "rows": 1, "seconds": {"b": 2.0}, "ratios": {"project/b": 1.0}, "peak_rss_mb": 1.0},
        [1, 2],
    ],
    ids=["missing_peak_rss", "missing_ratio", "missing_project", "not_a_dict"],
)
def test_check_result_rejects_broken_results(bad):
    with pytest.raises(ValueError):
        harness.check_result(bad)


def test_json_line_is_one_parseable_line(capsys):
    res = harness.result("x", None, {"project": 1.0, "b": 2.0}, 3.0)
    harness.print_json(res)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out) == res


def test_table_lists_every_contender_with_its_seconds_and_extras(capsys):
    res = harness.result("x", 1000, {"project": 1.5, "duckdb": 3.0}, 3.0)
    harness.print_table(res, {"project": {"rows/s": 666.6667}, "duckdb": {"rows/s": 333.3333}})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "benchmark x  rows=1,000  peak_rss_mb=3.0"
    assert lines[2].split() == ["project", "1.500", "1.000", "666.667"]
    assert lines[3].split() == ["duckdb", "3.000", "0.500", "333.333"]


def test_timer_measures_wall_time():
    import time

    value, seconds = harness.timed(lambda: time.sleep(0.05) or 7)
    assert value == 7 and 0.05 <= seconds < 1.0


def test_peak_rss_adds_the_spark_jvm_and_its_python_workers(spark):
    spark.range(4).mapInArrow(lambda batches: batches, "id long").collect()  # starts a Python worker
    python_only = harness.peak_rss_mb()
    with_jvm = harness.peak_rss_mb(spark)
    jvm = harness.jvm_pid(spark)
    assert jvm is not None and jvm != os.getpid()
    assert with_jvm > python_only + 100  # a JVM's resident set is well over 100 MiB
    assert harness.descendants(jvm)  # the Python worker daemon runs under the JVM


def test_bench_settings_use_a_lake_in_the_given_folder_with_two_cores(tmp_path):
    s = harness.bench_settings(tmp_path, shuffle_partitions=3)
    assert (s.lake_root, s.spark.master, s.spark.ui_enabled, s.spark.shuffle_partitions) == (str(tmp_path / "lake"), "local[2]", False, 3)


def test_available_benchmarks_exclude_the_harness():
    names = available()
    assert {"startup", "datagen"} <= set(names)
    assert "harness" not in names and "__main__" not in names


def test_unknown_benchmark_is_one_line_and_exit_code_2(capsys):
    assert main(["no_such_benchmark"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"python -m benchmarks: error: no benchmark 'no_such_benchmark' (have: {', '.join(available())})"
    ]


def test_list_option_prints_the_benchmarks():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--list"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == available()


def test_best_of_takes_the_fastest_of_the_configured_runs(monkeypatch):
    pauses = iter([0.2, 0.0, 0.2])
    calls = []

    def run():
        calls.append(1)
        time.sleep(next(pauses))

    monkeypatch.setenv("MLOPS_BENCH_REPEAT", "3")
    assert harness.best_of(run) < 0.1 and len(calls) == 3
    monkeypatch.setenv("MLOPS_BENCH_REPEAT", "0")
    with pytest.raises(ValueError, match="MLOPS_BENCH_REPEAT='0': at least one run"):
        harness.best_of(run)
    monkeypatch.setenv("MLOPS_BENCH_REPEAT", "two")
    with pytest.raises(ValueError, match="MLOPS_BENCH_REPEAT='two': expected a whole number"):
        harness.repeats()
