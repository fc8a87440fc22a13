"""Data drift between a reference and a current DataFrame, computed in Spark.

Only aggregates reach the driver (per-bin counts, sums, minima and maxima, category
counts), plus the raw values of the few numeric bins that aggregates cannot settle,
within a fixed budget per pass: see :mod:`mlops_spark.monitoring.ecdf`, which computes
every numeric metric below exactly, without shuffling or sorting the raw values.

Numeric features (cast to double; null and NaN count as missing):

- ``psi``: Population Stability Index over ``bins`` bins cut at the reference's exact
  quantiles (``np.quantile(x, p, method="inverted_cdf")``; see :func:`reference_edges`;
  duplicate edges are merged, so a feature with few distinct values gets fewer bins).
  Bins are ``[e_i, e_{i+1})`` with open ends, exactly as
  ``np.histogram(x, [-inf, e_1, ..., e_k, inf])``. Empty bins take share
  ``epsilon`` instead of 0, where the textbook formula divides by zero:
  ``sum((q - p) * ln(q / p))``, ``p`` reference shares, ``q`` current shares.
- ``js_distance``: Jensen-Shannon distance of the same binned shares, base 2
  (0 = identical, 1 = disjoint), as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
- ``ks_statistic``: the exact two-sample Kolmogorov-Smirnov statistic
  ``max_x |F_ref(x) - F_cur(x)|`` over the empirical CDFs (tied values are one CDF step),
  as ``scipy.stats.ks_2samp(...).statistic``, equal up to float rounding.
- ``ks_pvalue``: ``scipy.stats.kstwo.sf(d, round(n*m/(n+m)))`` on the driver from the
  statistic and the two counts, i.e. ``ks_2samp(method="asymp")``, the method scipy
  itself uses for samples above 10,000 rows.
- ``wasserstein``: the exact 1-Wasserstein distance ``integral |F_ref - F_cur| dx``
  (``scipy.stats.wasserstein_distance``), equal up to float rounding.
- ``null_rate`` (current) and ``null_rate_change`` (absolute change from the reference).

Categorical features (cast to string; null counts as missing): ``psi`` over the
union of categories (same epsilon), ``chi2_statistic`` / ``chi2_pvalue`` of the 2 x K
contingency table (``scipy.stats.chi2_contingency(correction=False)``), and the
null rates.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlops_spark.errors import SchemaMismatchError
from mlops_spark.monitoring import ecdf


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature: its metrics and what the report plots.

    Attributes:
        feature: column name.
        kind: ``numeric`` or ``categorical``.
        metrics: metric name -> value (NaN when undefined, e.g. an empty side).
        labels: bin labels (numeric: ``[lo, hi)`` intervals; categorical: categories).
        reference_share: share of the reference's non-null rows per bin.
        current_share: share of the current window's non-null rows per bin.
    """

    feature: str
    kind: str
    metrics: dict[str, float]
    labels: list[str] = field(default_factory=list)
    reference_share: list[float] = field(default_factory=list)
    current_share: list[float] = field(default_factory=list)


def psi(reference_counts: Sequence[float], current_counts: Sequence[float], epsilon: float) -> float:
    """PSI of two count vectors over the same bins; empty bins count as ``epsilon`` share."""
    p = np.asarray(reference_counts, dtype=float)
    q = np.asarray(current_counts, dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    p = np.where(p == 0, epsilon, p / p.sum())
    q = np.where(q == 0, epsilon, q / q.sum())
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2) of two count vectors over the same bins."""
    p = np.asarray(reference_counts, dtype=float)
    q = np.asarray(current_counts, dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2))


def ks_pvalue(statistic: float, n_reference: int, n_current: int) -> float:
    """Two-sided asymptotic p-value, as ``scipy.stats.ks_2samp(method="asymp")``."""
    if n_reference == 0 or n_current == 0 or math.isnan(statistic):
        return math.nan
    m, n = sorted([float(n_reference), float(n_current)], reverse=True)
    return float(np.clip(stats.kstwo.sf(statistic, np.round(m * n / (m + n))), 0.0, 1.0))


def _numeric(df: DataFrame, features: Sequence[str], where: str) -> DataFrame:
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise SchemaMismatchError(f"{where}: missing feature column(s) {', '.join(missing)}")
    cols = []
    for f in features:
        c = F.col(f).cast(T.DoubleType())
        cols.append(F.when(F.isnan(c), F.lit(None).cast(T.DoubleType())).otherwise(c).alias(f))
    return df.select(*cols)


def reference_edges(reference: DataFrame, features: Sequence[str], bins: int, accuracy: int = 10000) -> dict[str, list[float]]:
    """Inner bin edges per feature: the reference's exact ``1/bins .. (bins-1)/bins``
    quantiles, deduplicated and sorted.

    The quantile at ``p`` of ``n`` values is the smallest value ``v`` with at least
    ``ceil(p * n)`` values ``<= v`` (``np.quantile(..., method="inverted_cdf")``). Exact,
    because an approximate edge that lands on the other side of a run of tied values
    (integer-valued features) moves that run's whole mass to the next bin and changes the
    PSI by far more than any sketch's rank error. Found by :func:`ecdf.compare` from exact
    per-bin counts, minima and maxima, with the raw values of the few bins that hold a
    quantile; ``accuracy`` only tunes the work (``4 * accuracy`` rows of each side place the
    first bins), never the edges.
    """
    result = ecdf.compare(_numeric(reference, features, "reference"), None, features, bins, _limits(accuracy))
    return {f: result[f].edges for f in features}


def _limits(accuracy: int) -> ecdf.Limits:
    return ecdf.Limits(sample_rows=4 * accuracy)


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:.4g}, {hi:.4g})"


def numeric_drift(
    reference: DataFrame, current: DataFrame, features: Sequence[str], bins: int = 10, epsilon: float = 1e-4, accuracy: int = 10000
) -> list[FeatureDrift]:
    """Drift metrics of numeric ``features`` (see the module docstring).

    Everything comes from one :func:`ecdf.compare`: a row count and a ``4 * accuracy``-row
    sample of each side, then typically two to three scans of each side; driver memory is
    bounded as documented there.

    Raises:
        SchemaMismatchError: a feature column is missing from either frame.
    """
    if not features:
        return []
    ref = _numeric(reference, features, "reference")
    cur = _numeric(current, features, "current window")
    exact = ecdf.compare(ref, cur, features, bins, _limits(accuracy))
    out = []
    for f in features:
        x = exact[f]
        (ref_rows, cur_rows), (ref_nn, cur_nn) = x.rows, x.non_null
        ref_counts, cur_counts = x.counts
        bounds = [-math.inf, *x.edges, math.inf]
        ref_null = 1 - ref_nn / ref_rows if ref_rows else math.nan
        cur_null = 1 - cur_nn / cur_rows if cur_rows else math.nan
        ks, wd = x.ks_statistic, x.wasserstein
        metrics = {
            "psi": psi(ref_counts, cur_counts, epsilon),
            "js_distance": js_distance(ref_counts, cur_counts),
            "ks_statistic": ks,
            "ks_pvalue": ks_pvalue(ks, ref_nn, cur_nn),
            "wasserstein": wd,
            "null_rate": cur_null,
            "null_rate_change": abs(cur_null - ref_null),
        }
        out.append(
            FeatureDrift(
                f,
                "numeric",
                metrics,
                [_interval(lo, hi) for lo, hi in itertools.pairwise(bounds)],
                _shares(ref_counts),
                _shares(cur_counts),
            )
        )
    return out


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def category_counts(reference: DataFrame, current: DataFrame, features: Sequence[str]) -> DataFrame:
    """Counts per (feature, category) of both sides, nulls excluded.

    Output columns: ``feature`` string, ``value`` string, ``n_reference`` long, ``n_current`` long.
    """

    def long(df: DataFrame, side: int) -> DataFrame:
        pairs = [F.struct(F.lit(f).alias("feature"), F.col(f).cast(T.StringType()).alias("value")) for f in features]
        return df.select(F.inline(F.array(*pairs))).where(F.col("value").isNotNull()).withColumn("is_ref", F.lit(side))

    return (
        long(reference, 1)
        .unionByName(long(current, 0))
        .groupBy("feature", "value")
        .agg(F.sum("is_ref").cast("long").alias("n_reference"), F.sum(1 - F.col("is_ref")).cast("long").alias("n_current"))
        .select("feature", "value", "n_reference", "n_current")
    )


def categorical_drift(reference: DataFrame, current: DataFrame, features: Sequence[str], epsilon: float = 1e-4) -> list[FeatureDrift]:
    """Drift metrics of categorical ``features``: PSI, chi-square, null rates.

    Raises:
        SchemaMismatchError: a feature column is missing from either frame.
    """
    if not features:
        return []
    for where, df in (("reference", reference), ("current window", current)):
        missing = [f for f in features if f not in df.columns]
        if missing:
            raise SchemaMismatchError(f"{where}: missing feature column(s) {', '.join(missing)}")
    totals = [F.count(F.lit(1)).alias("__rows"), *[F.count(F.col(f)).alias(f) for f in features]]
    ref_t = reference.agg(*totals).first().asDict()  # type: ignore[union-attr]
    cur_t = current.agg(*totals).first().asDict()  # type: ignore[union-attr]
    table: dict[str, list[tuple[str, int, int]]] = {f: [] for f in features}
    for r in category_counts(reference, current, features).collect():
        table[r["feature"]].append((r["value"], int(r["n_reference"]), int(r["n_current"])))
    out = []
    for f in features:
        cats = sorted(table[f])
        labels = [c[0] for c in cats]
        ref_c = [c[1] for c in cats]
        cur_c = [c[2] for c in cats]
        chi2, pval = _chi2(ref_c, cur_c)
        ref_null = 1 - ref_t[f] / ref_t["__rows"] if ref_t["__rows"] else math.nan
        cur_null = 1 - cur_t[f] / cur_t["__rows"] if cur_t["__rows"] else math.nan
        metrics = {
            "psi": psi(ref_c, cur_c, epsilon),
            "chi2_statistic": chi2,
            "chi2_pvalue": pval,
            "null_rate": cur_null,
            "null_rate_change": abs(cur_null - ref_null),
        }
        out.append(FeatureDrift(f, "categorical", metrics, labels, _shares(ref_c), _shares(cur_c)))
    return out


def _chi2(reference_counts: list[int], current_counts: list[int]) -> tuple[float, float]:
    if not reference_counts or sum(reference_counts) == 0 or sum(current_counts) == 0:
        return math.nan, math.nan
    if len(reference_counts) == 1:
        return 0.0, 1.0
    res = stats.chi2_contingency(np.array([reference_counts, current_counts]), correction=False)
    return float(res.statistic), float(res.pvalue)


def split_features(df: DataFrame, features: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(numeric, categorical)`` by the column types of ``df`` (booleans and strings are categorical)."""
    types = dict(df.dtypes)
    numeric = [
        f
        for f in features
        if types.get(f) in {"double", "float", "int", "bigint", "smallint", "tinyint"} or str(types.get(f, "")).startswith("decimal")
    ]
    return numeric, [f for f in features if f not in numeric]
