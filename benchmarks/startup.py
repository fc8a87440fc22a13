"""Cold SparkSession start-up: the project's factory vs a bare ``SparkSession.builder.getOrCreate()``.

Each contender starts in a fresh Python process (a cold JVM) and is timed from the
process launch until its session has run a first trivial job, so interpreter start,
imports, JVM launch and (for the project) Delta, the jars, the embedded Derby
metastore and the creation of the configured databases on a new lake all count.
The bare baseline (``bare_pyspark``) gets the same master (``local[2]``) and the UI
off, nothing else. Each contender runs ``REPEAT`` times and the fastest run counts
(the least disturbed by other load). ``--rows`` does not apply.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from benchmarks import harness

REPEAT = 2

_PROJECT = """
import json, sys, time
from benchmarks.harness import bench_spark, peak_rss_mb
began = time.perf_counter()
spark = bench_spark(sys.argv[1], app_name="bench-startup")
spark.range(1).count()
session = time.perf_counter() - began
print(json.dumps({"ready": time.time(), "session": session, "peak_rss_mb": peak_rss_mb(spark)}))
spark.stop()
"""

_BARE = """
import json, sys, time
from pyspark.sql import SparkSession
from benchmarks.harness import peak_rss_mb
began = time.perf_counter()
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
spark.range(1).count()
session = time.perf_counter() - began
print(json.dumps({"ready": time.time(), "session": session, "peak_rss_mb": peak_rss_mb(spark)}))
spark.stop()
"""


def _cold_start(code: str) -> dict[str, float]:
    with harness.bench_tmpdir("mlops-bench-startup-") as tmp:
        launched = time.time()
        proc = subprocess.run([sys.executable, "-c", code, str(tmp)], cwd=tmp, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"start-up child failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"total": out["ready"] - launched, "session": out["session"], "peak_rss_mb": out["peak_rss_mb"]}


def run(rows: int | None = None) -> dict[str, Any]:
    """Time both cold starts ``REPEAT`` times each (alternating); ``rows`` is ignored."""
    runs: dict[str, list[dict[str, float]]] = {"bare_pyspark": [], "project": []}
    for _ in range(REPEAT):
        for who, code in (("bare_pyspark", _BARE), ("project", _PROJECT)):
            # The child imports the benchmarks package from the repository root.
            runs[who].append(_cold_start(f"import sys; sys.path.insert(0, {str(harness.REPO_ROOT)!r})\n{code}"))
    best = {who: min(r, key=lambda x: x["total"]) for who, r in runs.items()}
    res = harness.result(
        "startup",
        None,
        {"project": best["project"]["total"], "bare_pyspark": best["bare_pyspark"]["total"]},
        max(r["peak_rss_mb"] for r in best.values()),
    )
    harness.print_table(
        res,
        {who: {"session s": round(b["session"], 3), "peak_rss_mb": b["peak_rss_mb"]} for who, b in best.items()},
    )
    return res
