"""``python -m benchmarks <name> [--rows N]``: run one benchmark; its JSON result is the last line.

``python -m benchmarks all`` runs every benchmark one after the other, each in its own
process (each builds its own SparkSession on its own temporary lake), then prints a
summary table and, last, a JSON list of the results. ``--list`` names the benchmarks.
Exit codes: 0 ok, 1 a benchmark failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import harness

_NOT_BENCHMARKS = {"harness", "__main__"}


def available() -> list[str]:
    """Names of the benchmark modules in this package (every module but the harness)."""
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name not in _NOT_BENCHMARKS and not m.name.startswith("_"))


def run_one(name: str, rows: int | None) -> dict[str, Any]:
    """Import ``benchmarks.<name>``, call its ``run(rows)`` and check the result's contract."""
    module = importlib.import_module(f"benchmarks.{name}")
    return harness.check_result(module.run(rows))


def run_all(rows: int | None) -> int:
    """Run every benchmark in a child process; print a summary and the JSON list last."""
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in available():
        cmd = [sys.executable, "-m", "benchmarks", name] + (["--rows", str(rows)] if rows is not None else [])
        print(f"=== {name}", flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=harness.REPO_ROOT)
        lines = proc.stdout.rstrip().splitlines()
        print("\n".join(lines[:-1]), flush=True)
        try:
            if proc.returncode != 0:
                raise ValueError(f"exit code {proc.returncode}")
            results.append(harness.check_result(json.loads(lines[-1])))
        except (ValueError, IndexError) as exc:
            print(f"benchmark {name} failed: {exc}", file=sys.stderr)
            failed.append(name)
    print("=== summary")
    for res in results:
        ratios = ", ".join(f"{k}={v}" for k, v in res["ratios"].items())
        print(f"{res['name']:<16} rows={res['rows']}  project={res['seconds']['project']}s  {ratios}  peak_rss_mb={res['peak_rss_mb']}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    print(json.dumps(results, separators=(", ", ": ")), flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="benchmark to run, or 'all' for every one in turn")
    parser.add_argument("--rows", type=int, default=None, help="data size (default: each benchmark's own; ignored by 'startup')")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    names = available()
    if args.list:
        print("\n".join(names))
        return 0
    if not args.name:
        parser.print_usage(sys.stderr)
        print(f"python -m benchmarks: error: name a benchmark ({', '.join(names)}) or 'all'", file=sys.stderr)
        return 2
    if args.rows is not None and args.rows <= 0:
        print(f"python -m benchmarks: error: --rows {args.rows} must be positive", file=sys.stderr)
        return 2
    if args.name == "all":
        return run_all(args.rows)
    if args.name not in names:
        print(f"python -m benchmarks: error: no benchmark '{args.name}' (have: {', '.join(names)})", file=sys.stderr)
        return 2
    res = run_one(args.name, args.rows)
    harness.print_json(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
