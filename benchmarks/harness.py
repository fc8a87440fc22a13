"""Helpers every benchmark uses: a timer, peak memory, a session on a temporary lake, output.

A benchmark module ``benchmarks/<name>.py`` exposes ``run(rows: int | None) -> dict``
returning :func:`result` (the project and its baselines timed in the same process on
the same data) and prints :func:`print_table`; ``python -m benchmarks <name>`` prints
the JSON line last.

Peak memory (``peak_rss_mb``) is the SUM of the peak resident set (``VmHWM``) of the
Python driver, the Spark JVM (the py4j gateway) and the JVM's live descendants (the
Python workers of UDFs and ``mapInArrow``). Summing per-process peaks over-counts when
the peaks did not coincide, so the figure is an upper bound, never an under-estimate.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_KEYS = ("name", "rows", "seconds", "ratios", "peak_rss_mb")

T = TypeVar("T")


@dataclass
class Timer:
    """Wall-clock stopwatch: ``with Timer() as t: ...`` then ``t.seconds``."""

    seconds: float = 0.0
    _began: float = field(default=0.0, repr=False)

    def __enter__(self) -> Timer:
        self._began = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._began


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Call ``fn()`` and return ``(its result, wall seconds)``."""
    with Timer() as t:
        value = fn()
    return value, t.seconds


def repeats() -> int:
    """Timed runs per contender where a benchmark takes the best of several (``$MLOPS_BENCH_REPEAT``, default 2).

    One run per contender favours the later ones: they run in a JVM the earlier ones have
    compiled (JIT) and on files they brought into the page cache. The best of two gives
    every contender a warm run.
    """
    raw = os.environ.get("MLOPS_BENCH_REPEAT", "2")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"MLOPS_BENCH_REPEAT={raw!r}: expected a whole number of runs, e.g. 2") from None
    if value < 1:
        raise ValueError(f"MLOPS_BENCH_REPEAT={raw!r}: at least one run is needed")
    return value


def best_of(fn: Callable[[], object], repeat: int | None = None) -> float:
    """Fastest wall time of ``repeat`` calls of ``fn`` (default :func:`repeats`; the run least
    disturbed by other load and by a cold JVM)."""
    return min(timed(fn)[1] for _ in range(repeats() if repeat is None else max(1, repeat)))


# --- memory -------------------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` from /proc (Linux); empty elsewhere."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*") if Path(f"/proc/{pid}/task").exists() else []:
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid``."""
    out, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def jvm_pid(spark: Any) -> int | None:
    """Process id of the session's JVM (the py4j gateway), asked from the JVM itself."""
    try:
        return int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    except Exception:  # a remote (Connect) session has no local JVM
        return None


def peak_rss_mb(spark: Any = None) -> float:
    """Sum of the peak RSS of this process, the session's JVM and the JVM's live descendants, in MiB.

    Without ``spark`` only this Python process counts. Uses ``VmHWM`` from
    ``/proc/<pid>/status`` (Linux); falls back to ``ru_maxrss`` for this process.
    """
    kb = _status_kb(os.getpid(), "VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pid = jvm_pid(spark) if spark is not None else None
    if pid:
        kb += _status_kb(pid, "VmHWM")
        kb += sum(_status_kb(child, "VmHWM") for child in descendants(pid))
    return round(kb / 1024.0, 1)


# --- sessions -----------------------------------------------------------------------------


def bench_settings(tmpdir: str | Path, **spark_overrides: Any) -> Any:
    """Settings of the ``local`` environment on a lake in ``tmpdir``: local[2], UI off, 2g driver.

    ``spark_overrides`` update the ``spark`` section (e.g. ``shuffle_partitions=8``).
    Environment variables are ignored so every run measures the same configuration.
    """
    from mlops_spark.config import load_settings

    spark_section: dict[str, Any] = {
        "master": "local[2]",
        "ui_enabled": False,
        "shuffle_partitions": 4,
        "driver_memory": "2g",
        "conf": {"spark.ui.showConsoleProgress": "false"},
    }
    spark_section.update(spark_overrides)
    overrides = {"lake_root": str(Path(tmpdir) / "lake"), "spark": spark_section}
    return load_settings(env="local", conf_dir=REPO_ROOT / "conf", overrides=overrides, environ={})


def bench_spark(tmpdir: str | Path, app_name: str = "mlops-spark-benchmark", **spark_overrides: Any) -> Any:
    """A session through the project's factory (:func:`mlops_spark.spark.session.get_spark`) on ``tmpdir``."""
    from mlops_spark.spark.session import get_spark

    return get_spark(bench_settings(tmpdir, **spark_overrides), app_name=app_name)


@contextmanager
def bench_tmpdir(prefix: str = "mlops-bench-") -> Iterator[Path]:
    """A temporary folder removed afterwards (``$MLOPS_BENCH_TMP`` chooses its parent)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("MLOPS_BENCH_TMP")))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- results ------------------------------------------------------------------------------


def result(name: str, rows: int | None, seconds: Mapping[str, float], peak_rss: float) -> dict[str, Any]:
    """The result dict of a benchmark; ``ratios`` are ``project/<baseline>`` for every baseline.

    Raises:
        ValueError: ``seconds`` has no ``project`` entry.
    """
    if "project" not in seconds:
        raise ValueError(f"benchmark {name}: seconds must have a 'project' entry, got {sorted(seconds)}")
    secs = {k: round(float(v), 3) for k, v in seconds.items()}
    ratios = {f"project/{k}": round(secs["project"] / v, 3) if v else None for k, v in secs.items() if k != "project"}
    return {"name": name, "rows": rows, "seconds": secs, "ratios": ratios, "peak_rss_mb": peak_rss}


def check_result(res: Any) -> dict[str, Any]:
    """Validate the contract of a benchmark's return value.

    Raises:
        ValueError: keys missing or extra, or seconds/ratios malformed.
    """
    if not isinstance(res, dict) or tuple(sorted(res)) != tuple(sorted(RESULT_KEYS)):
        got = sorted(res) if isinstance(res, dict) else type(res).__name__
        raise ValueError(f"a benchmark must return a dict with keys {list(RESULT_KEYS)}, got {got}")
    if "project" not in res["seconds"]:
        raise ValueError("seconds must have a 'project' entry")
    for baseline in res["seconds"]:
        if baseline != "project" and f"project/{baseline}" not in res["ratios"]:
            raise ValueError(f"ratios lack 'project/{baseline}'")
    return res


def print_table(res: Mapping[str, Any], extra: Mapping[str, Mapping[str, Any]] | None = None, file: Any = None) -> None:
    """Print a small aligned table: one line per contender with seconds, ratio and extra columns.

    Args:
        res: a :func:`result` dict.
        extra: per contender, more columns (e.g. ``{"project": {"rows/s": 1.2e6}}``).
        file: where to print (default stdout).
    """
    out = file or sys.stdout
    extra = extra or {}
    columns = ["seconds", "project/this", *sorted({k for cols in extra.values() for k in cols})]
    rows_label = "-" if res["rows"] is None else f"{res['rows']:,}"
    print(f"benchmark {res['name']}  rows={rows_label}  peak_rss_mb={res['peak_rss_mb']}", file=out)
    lines = [["contender", *columns]]
    for who, secs in res["seconds"].items():
        ratio = f"{res['seconds']['project'] / secs:.3f}" if secs else "-"
        cells = [who, f"{secs:.3f}", ratio]
        for col in columns[2:]:
            value = extra.get(who, {}).get(col, "")
            if isinstance(value, float):
                value = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
            cells.append(str(value))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns) + 1)]
    for line in lines:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))), file=out)
    print("(project/this: project seconds / this contender's seconds; below 1 the project is faster)", file=out)


def print_json(res: Mapping[str, Any], file: Any = None) -> None:
    """Print the result as one compact JSON line (the last line of a benchmark run)."""
    print(json.dumps(dict(res), separators=(", ", ": ")), file=file or sys.stdout, flush=True)
