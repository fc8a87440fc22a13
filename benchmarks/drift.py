"""Drift: 20 numeric features, reference vs current (``--rows`` N each, default 10,000,000).

Data: ``spark.range`` with seeded ``randn``/``rand`` expressions (normal, log-normal,
uniform, integer-valued with many ties), written once as Parquet per side and read
back by every contender. Half of the features carry a planted drift in the current
side (shifted mean, scaled spread, moved mass).

Contenders:
  ``project``      :func:`mlops_spark.monitoring.drift.numeric_drift`: exact deciles, PSI,
                   JS, KS and Wasserstein from per-bin aggregates (count, sum, min, max)
                   of a few scans of each side in the Python workers, plus the raw
                   values of the bins those cannot settle (``ecdf.compare``); no shuffle
                   of raw values.
  ``numpy_scipy``  the textbook way: collect each column of both sides to numpy (Arrow),
                   exact deciles with ``np.quantile``, ``np.histogram`` PSI (same epsilon),
                   ``scipy.stats.ks_2samp``. Computes fewer metrics (no JS, no Wasserstein).

Accuracy: PSI of both must agree within 1% (relative) on features with PSI >= 0.01 and
within 1e-4 absolute elsewhere; the KS statistic within 1e-4 (both are exact, so the
differences are float rounding). The table prints the largest differences.
"""

from __future__ import annotations

import subprocess
from typing import Any

import numpy as np

from benchmarks import harness

DEFAULT_ROWS = 10_000_000
FEATURES = [f"f{i:02d}" for i in range(20)]
EPSILON = 1e-4


def _feature_exprs(drifted: bool) -> list[Any]:
    from pyspark.sql import functions as F

    cols = []
    for i, name in enumerate(FEATURES):
        seed = 1000 + i + (500 if drifted else 0)
        shift = drifted and i % 2 == 0
        kind = i % 4
        if kind == 0:
            c = F.randn(seed) * (1.3 if shift else 1.0) + (0.3 if shift else 0.0)
        elif kind == 1:
            c = F.exp(F.randn(seed) * 0.5 + (0.2 if shift else 0.0))
        elif kind == 2:
            c = F.rand(seed) * 100 + (10 if shift else 0)
        else:
            # Integer-valued: heavy ties, the case where naive KS implementations go wrong.
            c = F.floor(F.rand(seed) * (12 if shift else 10))
        cols.append(c.cast("double").alias(name))
    return cols


def _write(spark: Any, tmp: Any, rows: int) -> tuple[str, str]:
    paths = []
    for side, drifted in (("reference", False), ("current", True)):
        path = str(tmp / side)
        spark.range(rows, numPartitions=8).select(*_feature_exprs(drifted)).write.mode("overwrite").parquet(path)
        paths.append(path)
    return paths[0], paths[1]


def _numpy_scipy(spark: Any, ref_path: str, cur_path: str) -> dict[str, tuple[float, float]]:
    from scipy import stats

    ref_df, cur_df = spark.read.parquet(ref_path), spark.read.parquet(cur_path)
    out = {}
    for f in FEATURES:
        ref = ref_df.select(f).toPandas()[f].to_numpy()
        cur = cur_df.select(f).toPandas()[f].to_numpy()
        # Same edges as the project's definition: the smallest value with rank >= p*n.
        edges = np.unique(np.quantile(ref, [i / 10 for i in range(1, 10)], method="inverted_cdf"))
        bins = np.concatenate([[-np.inf], edges, [np.inf]])
        p, _ = np.histogram(ref, bins)
        q, _ = np.histogram(cur, bins)
        p = np.where(p == 0, EPSILON, p / p.sum())
        q = np.where(q == 0, EPSILON, q / q.sum())
        out[f] = (float(np.sum((q - p) * np.log(q / p))), float(stats.ks_2samp(ref, cur, method="asymp").statistic))
    return out


def _project(spark: Any, ref_path: str, cur_path: str) -> dict[str, tuple[float, float]]:
    from mlops_spark.monitoring import drift

    result = drift.numeric_drift(spark.read.parquet(ref_path), spark.read.parquet(cur_path), FEATURES, bins=10, epsilon=EPSILON)
    return {d.feature: (d.metrics["psi"], d.metrics["ks_statistic"]) for d in result}


def _differences(project: dict[str, tuple[float, float]], baseline: dict[str, tuple[float, float]]) -> dict[str, float]:
    rel = [abs(project[f][0] - baseline[f][0]) / baseline[f][0] for f in FEATURES if baseline[f][0] >= 0.01]
    small = [abs(project[f][0] - baseline[f][0]) for f in FEATURES if baseline[f][0] < 0.01]
    ks = [abs(project[f][1] - baseline[f][1]) for f in FEATURES]
    return {"psi_max_rel_diff": max(rel, default=0.0), "psi_max_abs_diff_small": max(small, default=0.0), "ks_max_abs_diff": max(ks)}


def run(rows: int | None) -> dict[str, Any]:
    """Time the project and ``numpy_scipy`` on the same Parquet data; check PSI within 1%."""
    n = rows or DEFAULT_ROWS
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    with harness.bench_tmpdir("mlops-bench-drift-") as tmp:
        spark = harness.bench_spark(tmp, app_name="mlops-spark-benchmark-drift", shuffle_partitions=8)
        try:
            ref_path, cur_path = _write(spark, tmp, n)
            project, t_project = harness.timed(lambda: _project(spark, ref_path, cur_path))
            baseline, t_baseline = harness.timed(lambda: _numpy_scipy(spark, ref_path, cur_path))
            peak = harness.peak_rss_mb(spark)
        finally:
            spark.stop()
    diffs = _differences(project, baseline)
    res = harness.result("drift", n, {"project": t_project, "numpy_scipy": t_baseline}, peak)
    harness.print_table(res, {"project": diffs})
    print(f"machine load during the run: {load}")
    drifted = sorted(f for f in FEATURES if baseline[f][0] >= 0.01)
    print(f"features with PSI >= 0.01 (planted drift): {len(drifted)}; PSI within 1%: {diffs['psi_max_rel_diff'] <= 0.01}")
    return res


if __name__ == "__main__":
    run(None)
