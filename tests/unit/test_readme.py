"""The README documents what exists: every step, commands the parser accepts, real paths, a loadable example."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from benchmarks.__main__ import available as available_benchmarks
from mlops_spark.cli import STEPS, build_parser
from mlops_spark.datagen import TRANSACTION_SCHEMA
from mlops_spark.features.pipeline import prepare_events
from mlops_spark.features.spec import load_feature_set
from tests.support import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = re.compile(r"```yaml\n# conf/features/(?P<name>\w+)\.yaml\n(?P<body>.*?)```", re.S)


def _code_lines() -> list[str]:
    """Lines of the README's bash code blocks, with continuation lines joined and comments cut."""
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def _feature_example(tmp_path: Path) -> tuple[str, Path]:
    matches = list(EXAMPLE.finditer(README))
    assert len(matches) == 1, "README: expected one ```yaml block starting with '# conf/features/<name>.yaml'"
    path = tmp_path / f"{matches[0]['name']}.yaml"
    path.write_text(matches[0]["body"], encoding="utf-8")
    return matches[0]["name"], path


def test_every_cli_step_is_in_the_readme_table() -> None:
    table = set(re.findall(r"^\| `([a-z-]+)` \| ", README, re.M))
    assert table == {s.name for s in STEPS}


def test_documented_commands_parse_with_the_real_cli() -> None:
    parser = build_parser()
    commands = []
    for line in _code_lines():
        words = shlex.split(line)
        while words and "=" in words[0]:  # leading VAR=value assignments
            words = words[1:]
        if not words or "<" in line:
            continue
        if words[0].endswith("mlops-spark"):
            commands.append((words[1:], False))
        elif words[0].endswith("spark-submit.sh"):
            commands.append((words[1:], True))  # jobs/<step>.py pass their arguments to the same parser
    assert len(commands) >= 15
    for argv, submitted in commands:
        if submitted:
            assert (REPO_ROOT / "jobs" / f"{argv[0].replace('-', '_')}.py").is_file(), f"no job file for {argv[0]}"
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # --help prints and exits 0
                parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code != 0:
                pytest.fail(f"README command is rejected by the CLI: mlops-spark {' '.join(argv)}")


def test_documented_make_targets_and_benchmarks_exist() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    used = set(re.findall(r"`make ([a-z-]+)", README)) | {w.split()[1] for w in _code_lines() if w.startswith("make ")}
    assert used and used <= targets, f"README names make targets that do not exist: {sorted(used - targets)}"
    benchmarks = {m.group(1) for line in _code_lines() for m in [re.search(r"-m benchmarks (\w+)", line)] if m}
    assert benchmarks and benchmarks <= set(available_benchmarks())


def test_documented_paths_exist() -> None:
    roots = ("conf/", "docs/", "jobs/", "schedules/", "mlops_spark/", "benchmarks/", "notebooks/", "tests/", "jvm/", ".ci/")
    paths = {
        p.split("#")[0] for p in re.findall(r"[`(]((?:\./)?[\w.-]+(?:/[\w.<>*-]+)+/?)", README) if p.removeprefix("./").startswith(roots)
    }
    paths |= {"spark-submit.sh", "Makefile", "constraints.txt", "pyproject.toml"}
    assert len(paths) > 20
    missing = []
    for path in sorted(paths):
        pattern = re.sub(r"<[^>]+>", "*", path.removeprefix("./"))
        if not any(REPO_ROOT.glob(pattern.rstrip("/"))):
            missing.append(path)
    assert missing == []


def test_feature_set_example_loads_with_the_project_loader(tmp_path: Path) -> None:
    name, path = _feature_example(tmp_path)
    spec = load_feature_set(path)
    assert spec.name == name
    listed = re.search(r"so this set writes\s+(.*?)\.\s", README, re.S)
    assert listed is not None
    assert spec.feature_names() == re.findall(r"`(\w+)`", listed.group(1))


def test_feature_set_example_fits_the_transactions_source(spark, tmp_path: Path) -> None:
    _, path = _feature_example(tmp_path)
    spec = load_feature_set(path)
    assert spec.source == "silver.transactions"
    events = prepare_events(spark.createDataFrame([], TRANSACTION_SCHEMA), spec)
    assert events.columns == ["customer_id", "event_ts", "amount", "is_web"]
