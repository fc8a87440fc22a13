"""Data drift between a reference and a current DataFrame, computed in Spark.

Only aggregates reach the driver (bin edges, bin counts, per-feature maxima and
sums, category counts); raw columns never do.

Numeric features (cast to double; NaN counts as missing):

- ``psi``: Population Stability Index over ``bins`` bins cut at the reference's exact
  quantiles (``np.quantile(x, p, method="inverted_cdf")``, found from a
  ``percentile_approx`` bracket: see :func:`reference_edges`; duplicate edges are merged,
  so a feature with few distinct values gets fewer bins). Bins are ``[e_i, e_{i+1})`` with open ends, exactly as
  ``np.histogram(x, [-inf, e_1, ..., e_k, inf])``. Empty bins take share
  ``epsilon`` instead of 0, where the textbook formula divides by zero:
  ``sum((q - p) * ln(q / p))``, ``p`` reference shares, ``q`` current shares.
- ``js_distance``: Jensen-Shannon distance of the same binned shares, base 2
  (0 = identical, 1 = disjoint), as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
- ``ks_statistic``: the exact two-sample Kolmogorov-Smirnov statistic
  ``max_x |F_ref(x) - F_cur(x)|``: the union of both samples is sorted per feature and
  the empirical CDFs are running counts over a RANGE frame, so tied values share one
  CDF value (as ``scipy.stats.ks_2samp``); equal to scipy's statistic up to float
  rounding.
- ``ks_pvalue``: ``scipy.stats.kstwo.sf(d, round(n*m/(n+m)))`` on the driver from the
  statistic and the two counts, i.e. ``ks_2samp(method="asymp")``, the method scipy
  itself uses for samples above 10,000 rows.
- ``wasserstein``: the exact 1-Wasserstein distance ``integral |F_ref - F_cur| dx``,
  summed over the same sorted union (``scipy.stats.wasserstein_distance``).
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
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlops_spark.errors import SchemaMismatchError


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


def reference_edges(reference: DataFrame, features: Sequence[str], bins: int, accuracy: int) -> dict[str, list[float]]:
    """Inner bin edges per feature: the reference's exact ``1/bins .. (bins-1)/bins``
    quantiles, deduplicated and sorted.

    The quantile at ``p`` of ``n`` values is the smallest value ``v`` with at least
    ``ceil(p * n)`` values ``<= v`` (``np.quantile(..., method="inverted_cdf")``). Exact,
    because an approximate edge that lands on the other side of a run of tied values
    (integer-valued features) moves that run's whole mass to the next bin and changes the
    PSI by far more than the sketch's rank error. Three aggregation passes over
    ``reference``, none of which brings raw columns to the driver: ``percentile_approx``
    (relative rank error ``1/accuracy``) brackets each quantile between the approximate
    quantiles at ``p -/+ 2/accuracy``; a second pass counts the values below each bracket;
    a third counts the distinct values inside the brackets (about ``4n/accuracy`` of them
    per edge, fewer with ties), from which the driver picks the exact quantile.
    """
    probs = [i / bins for i in range(1, bins)]
    delta = 2.0 / accuracy

    def clipped(p: float) -> float:  # rounded, so that the same probability is the same dict key
        return min(1.0, max(0.0, round(p, 12)))

    grid = sorted({clipped(p + d) for p in probs for d in (-delta, 0.0, delta)})
    aggs = [F.percentile_approx(f, grid, accuracy).alias(f"__q{i}") for i, f in enumerate(features)]
    aggs += [F.count(f).alias(f"__n{i}") for i, f in enumerate(features)]
    row = reference.agg(*aggs).first().asDict()  # type: ignore[union-attr]
    brackets: list[tuple[int, int, float, float, int]] = []  # (feature, prob index, low, high, rank k)
    approx: dict[tuple[int, int], float] = {}
    for i in range(len(features)):
        values, n = row[f"__q{i}"], int(row[f"__n{i}"])
        if not values or n == 0:
            continue
        at = dict(zip(grid, values, strict=True))
        for j, p in enumerate(probs):
            approx[(i, j)] = float(at[clipped(p)])
            brackets.append((i, j, float(at[clipped(p - delta)]), float(at[clipped(p + delta)]), max(1, math.ceil(p * n - 1e-9))))
    exact = _exact_quantiles(reference, features, brackets)
    edges: dict[str, set[float]] = {f: set() for f in features}
    for i, j, *_ in brackets:
        # Only if the sketch broke its error bound would a bracket miss its quantile: keep the approximation then.
        edges[features[i]].add(exact.get((i, j), approx[(i, j)]))
    return {f: sorted(e) for f, e in edges.items()}


def _exact_quantiles(
    reference: DataFrame, features: Sequence[str], brackets: Sequence[tuple[int, int, float, float, int]]
) -> dict[tuple[int, int], float]:
    """``(feature, prob) -> exact quantile`` for every bracket that holds it (see :func:`reference_edges`)."""
    if not brackets:
        return {}
    below = reference.agg(
        *[F.count(F.when(F.col(features[i]) < F.lit(lo), F.lit(1))).alias(f"__b{b}") for b, (i, _, lo, _, _) in enumerate(brackets)]
    ).first().asDict()  # type: ignore[union-attr]
    inside = F.filter(
        F.array(
            *[
                F.when(
                    (F.col(features[i]) >= F.lit(lo)) & (F.col(features[i]) <= F.lit(hi)),
                    F.struct(F.lit(b).alias("b"), F.col(features[i]).alias("v")),
                )
                for b, (i, _, lo, hi, _) in enumerate(brackets)
            ]
        ),
        lambda x: x.isNotNull(),
    )
    counted = reference.select(F.inline(inside)).groupBy("b", "v").count().collect()
    by_bracket: dict[int, list[tuple[float, int]]] = {}
    for r in counted:
        by_bracket.setdefault(int(r["b"]), []).append((float(r["v"]), int(r["count"])))
    out: dict[tuple[int, int], float] = {}
    for b, (i, j, _, _, k) in enumerate(brackets):
        running = int(below[f"__b{b}"])
        for value, count in sorted(by_bracket.get(b, [])):
            running += count
            if running >= k:
                out[(i, j)] = value
                break
    return out


def _bin_conditions(column: str, edges: list[float]) -> list[F.Column]:
    c = F.col(column)
    if not edges:
        return [c.isNotNull()]
    conds = [c < F.lit(edges[0])]
    conds += [(c >= F.lit(lo)) & (c < F.lit(hi)) for lo, hi in itertools.pairwise(edges)]
    conds.append(c >= F.lit(edges[-1]))
    return conds


def histogram(df: DataFrame, edges: dict[str, list[float]]) -> tuple[int, dict[str, int], dict[str, list[int]]]:
    """Row count, non-null count per feature and bin counts per feature in ONE pass.

    Returns:
        ``(rows, non_null, counts)`` with ``counts[feature][i]`` the rows in bin ``i``.
    """
    exprs = [F.count(F.lit(1)).alias("__rows")]
    for i, (f, e) in enumerate(edges.items()):
        exprs.append(F.count(F.col(f)).alias(f"__nn{i}"))
        exprs += [F.count(F.when(cond, F.lit(1))).alias(f"__b{i}_{j}") for j, cond in enumerate(_bin_conditions(f, e))]
    row = df.agg(*exprs).first().asDict()  # type: ignore[union-attr]
    non_null = {f: int(row[f"__nn{i}"]) for i, f in enumerate(edges)}
    counts = {f: [int(row[f"__b{i}_{j}"]) for j in range(len(e) + 1)] for i, (f, e) in enumerate(edges.items())}
    return int(row["__rows"]), non_null, counts


def _long(df: DataFrame, features: Sequence[str], side: int) -> DataFrame:
    # A short feature index and a byte flag keep the shuffled rows small (13 bytes of payload).
    pairs = [F.struct(F.lit(i).cast(T.ShortType()).alias("feature"), F.col(f).alias("value")) for i, f in enumerate(features)]
    flag = F.lit(side).cast(T.ByteType())
    return df.select(F.inline(F.array(*pairs))).where(F.col("value").isNotNull()).withColumn("is_ref", flag)


def ks_and_wasserstein(
    reference: DataFrame, current: DataFrame, features: Sequence[str], n_reference: dict[str, int], n_current: dict[str, int]
) -> dict[str, tuple[float, float]]:
    """Exact KS statistic and 1-Wasserstein distance per feature over the sorted union.

    Input columns: the numeric ``features`` (double, nulls ignored) of both frames;
    ``n_reference`` / ``n_current`` their non-null counts. One shuffle by feature and
    one sort by value; the RANGE frame makes tied values one CDF step.

    Returns:
        feature -> ``(ks_statistic, wasserstein)``; NaN when a side has no values.
    """
    usable = [f for f in features if n_reference.get(f) and n_current.get(f)]
    result = {f: (math.nan, math.nan) for f in features}
    if not usable:
        return result
    union = _long(reference, usable, 1).unionByName(_long(current, usable, 0))
    n_ref = F.create_map(*[x for i, f in enumerate(usable) for x in (F.lit(i).cast(T.ShortType()), F.lit(float(n_reference[f])))])[
        F.col("feature")
    ]
    n_cur = F.create_map(*[x for i, f in enumerate(usable) for x in (F.lit(i).cast(T.ShortType()), F.lit(float(n_current[f])))])[
        F.col("feature")
    ]
    ordered = Window.partitionBy("feature").orderBy("value")
    upto = ordered.rangeBetween(Window.unboundedPreceding, Window.currentRow)
    # lead() has its own fixed frame (one row ahead); Spark rejects any other frame for it.
    stepped = union.select(
        "feature",
        "value",
        (F.sum("is_ref").over(upto) / n_ref - F.sum(1 - F.col("is_ref")).over(upto) / n_cur).alias("diff"),
        (F.lead("value").over(ordered) - F.col("value")).alias("gap"),
    )
    rows = stepped.groupBy("feature").agg(
        F.max(F.abs("diff")).alias("ks"), F.sum(F.abs("diff") * F.coalesce(F.col("gap"), F.lit(0.0))).alias("w")
    )
    for r in rows.collect():
        result[usable[r["feature"]]] = (float(r["ks"]), float(r["w"]))
    return result


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:.4g}, {hi:.4g})"


def numeric_drift(
    reference: DataFrame, current: DataFrame, features: Sequence[str], bins: int = 10, epsilon: float = 1e-4, accuracy: int = 10000
) -> list[FeatureDrift]:
    """Drift metrics of numeric ``features`` (see the module docstring).

    Raises:
        SchemaMismatchError: a feature column is missing from either frame.
    """
    if not features:
        return []
    ref = _numeric(reference, features, "reference")
    cur = _numeric(current, features, "current window")
    edges = reference_edges(ref, features, bins, accuracy)
    ref_rows, ref_nn, ref_counts = histogram(ref, edges)
    cur_rows, cur_nn, cur_counts = histogram(cur, edges)
    ks_w = ks_and_wasserstein(ref, cur, features, ref_nn, cur_nn)
    out = []
    for f in features:
        e = edges[f]
        bounds = [-math.inf, *e, math.inf]
        ref_null = 1 - ref_nn[f] / ref_rows if ref_rows else math.nan
        cur_null = 1 - cur_nn[f] / cur_rows if cur_rows else math.nan
        ks, wd = ks_w[f]
        metrics = {
            "psi": psi(ref_counts[f], cur_counts[f], epsilon),
            "js_distance": js_distance(ref_counts[f], cur_counts[f]),
            "ks_statistic": ks,
            "ks_pvalue": ks_pvalue(ks, ref_nn[f], cur_nn[f]),
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
                _shares(ref_counts[f]),
                _shares(cur_counts[f]),
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
