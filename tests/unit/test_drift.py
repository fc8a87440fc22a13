"""Drift metrics in Spark against numpy/scipy references on random data.

Tolerances: KS statistic and Wasserstein 1e-9 (KS 1e-12 in the binned-algorithm tests; exact
algorithms, float rounding only); KS p-value 1e-9 relative (same formula); PSI and JS 1e-9
(the reference edges are exact order statistics, also when the sample that places the
first-pass bins is small); bin edges and counts equal; chi-square 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyspark.sql import types as T
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlops_spark.errors import SchemaMismatchError
from mlops_spark.monitoring import drift, ecdf

EPS = 1e-4


def _frame(spark, columns: dict[str, list]):
    names = list(columns)
    rows = list(zip(*columns.values(), strict=True))
    schema = T.StructType([T.StructField(n, T.DoubleType(), True) for n in names])
    return spark.createDataFrame(rows, schema)


def _numpy_psi(ref: np.ndarray, cur: np.ndarray, edges: list[float]) -> float:
    bins = [-np.inf, *edges, np.inf]
    p, _ = np.histogram(ref, bins)
    q, _ = np.histogram(cur, bins)
    p = np.where(p == 0, EPS, p / p.sum())
    q = np.where(q == 0, EPS, q / q.sum())
    return float(np.sum((q - p) * np.log(q / p)))


def _exact_edges(ref: np.ndarray, bins: int) -> list[float]:
    # The inverted-CDF quantile: an element of the data, the smallest x with rank >= p*n.
    s = np.sort(ref)
    n = len(s)
    return sorted({float(s[max(math.ceil(p * n) - 1, 0)]) for p in [i / bins for i in range(1, bins)]})


@pytest.fixture(scope="module")
def shifted(spark):
    rng = np.random.default_rng(7)
    ref = rng.normal(0, 1, 1500)
    cur = rng.normal(0.4, 1.3, 900)
    # Ties across both sides and within each (rounded values): one CDF step per distinct value.
    ref_t = np.round(rng.normal(0, 1, 1500), 1)
    cur_t = np.round(rng.normal(0.1, 1, 900), 1)
    ref_df = _frame(spark, {"x": ref.tolist(), "t": ref_t.tolist()})
    cur_df = _frame(spark, {"x": cur.tolist(), "t": cur_t.tolist()})
    result = {d.feature: d for d in drift.numeric_drift(ref_df, cur_df, ["x", "t"], bins=10, epsilon=EPS, accuracy=100000)}
    return {"x": (ref, cur), "t": (ref_t, cur_t)}, result


@pytest.mark.parametrize("feature", ["x", "t"])
def test_ks_statistic_matches_scipy_including_ties(shifted, feature):
    data, result = shifted
    expected = stats.ks_2samp(*data[feature], method="asymp")
    assert result[feature].metrics["ks_statistic"] == pytest.approx(expected.statistic, abs=1e-9)


@pytest.mark.parametrize("feature", ["x", "t"])
def test_ks_pvalue_matches_scipy_asymp(shifted, feature):
    data, result = shifted
    expected = stats.ks_2samp(*data[feature], method="asymp")
    assert result[feature].metrics["ks_pvalue"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("feature", ["x", "t"])
def test_wasserstein_matches_scipy(shifted, feature):
    data, result = shifted
    assert result[feature].metrics["wasserstein"] == pytest.approx(stats.wasserstein_distance(*data[feature]), abs=1e-9)


@pytest.mark.parametrize("feature", ["x", "t"])
def test_psi_matches_numpy_histogram_on_reference_deciles(shifted, feature):
    (ref, cur), result = shifted[0][feature], shifted[1]
    assert result[feature].metrics["psi"] == pytest.approx(_numpy_psi(ref, cur, _exact_edges(ref, 10)), rel=1e-9)


def test_js_distance_matches_scipy_on_the_same_bins(shifted):
    (ref, cur), result = shifted[0]["x"], shifted[1]
    bins = [-np.inf, *_exact_edges(ref, 10), np.inf]
    p, _ = np.histogram(ref, bins)
    q, _ = np.histogram(cur, bins)
    assert result["x"].metrics["js_distance"] == pytest.approx(float(jensenshannon(p / p.sum(), q / q.sum(), base=2)), rel=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_edges_are_exact_quantiles_even_with_a_coarse_sketch_and_ties_on_the_edges(spark, seed):
    # 20,000 rows, sketch accuracy 100 (rank error up to 200 rows): integer values put a run of
    # about 2,000 ties on every decile, where an approximate edge lands on either side at random.
    rng = np.random.default_rng(seed)
    n = 20_000
    columns = {
        "ints": np.floor(rng.random(n) * 10),
        "normal": rng.normal(0, 1, n),
        "few": rng.choice([0.0, 1.0, 5.0], n, p=[0.05, 0.9, 0.05]),
    }
    df = _frame(spark, {k: v.tolist() for k, v in columns.items()})
    edges = drift.reference_edges(df, list(columns), bins=10, accuracy=100)
    for name, values in columns.items():
        expected = sorted({float(q) for q in np.quantile(values, [i / 10 for i in range(1, 10)], method="inverted_cdf")})
        assert edges[name] == expected, name
        assert edges[name] == _exact_edges(values, 10), name


def test_identical_samples_have_zero_drift(spark):
    values = np.random.default_rng(1).normal(size=500).tolist()
    df = _frame(spark, {"x": values})
    (d,) = drift.numeric_drift(df, df, ["x"], accuracy=100000)
    assert {k: d.metrics[k] for k in ("psi", "js_distance", "ks_statistic", "wasserstein")} == {
        "psi": 0.0,
        "js_distance": 0.0,
        "ks_statistic": 0.0,
        "wasserstein": 0.0,
    }


def test_empty_current_bin_uses_epsilon_instead_of_dividing_by_zero(spark):
    ref = list(range(100))
    cur = [5.0] * 50  # every current row in the first decile
    (d,) = drift.numeric_drift(_frame(spark, {"x": [float(v) for v in ref]}), _frame(spark, {"x": cur}), ["x"], accuracy=100000)
    assert d.metrics["psi"] == pytest.approx(_numpy_psi(np.array(ref, float), np.array(cur), _exact_edges(np.array(ref, float), 10)))
    assert math.isfinite(d.metrics["psi"])


def test_nulls_and_nan_are_missing_and_change_the_null_rate(spark):
    ref = _frame(spark, {"x": [1.0, 2.0, 3.0, 4.0]})
    cur = _frame(spark, {"x": [1.0, None, float("nan"), 4.0]})
    (d,) = drift.numeric_drift(ref, cur, ["x"], accuracy=100000)
    assert (d.metrics["null_rate"], d.metrics["null_rate_change"]) == (0.5, 0.5)
    assert d.metrics["ks_statistic"] == pytest.approx(stats.ks_2samp([1, 2, 3, 4], [1, 4]).statistic)


def test_all_null_current_gives_nan_distances_not_an_error(spark):
    ref = _frame(spark, {"x": [1.0, 2.0]})
    cur = _frame(spark, {"x": [None, None]})
    (d,) = drift.numeric_drift(ref, cur, ["x"])
    assert math.isnan(d.metrics["ks_statistic"]) and math.isnan(d.metrics["psi"]) and d.metrics["null_rate"] == 1.0


def test_missing_feature_column_names_the_side_and_column(spark):
    ref = _frame(spark, {"x": [1.0]})
    cur = _frame(spark, {"y": [1.0]})
    with pytest.raises(SchemaMismatchError, match=r"current window: missing feature column.* x"):
        drift.numeric_drift(ref, cur, ["x"])


def test_categorical_chi2_and_psi_match_scipy_with_unseen_category(spark):
    schema = T.StructType([T.StructField("c", T.StringType(), True)])
    ref_vals = ["a"] * 50 + ["b"] * 30 + ["c"] * 20 + [None] * 10
    cur_vals = ["a"] * 20 + ["b"] * 30 + ["d"] * 10
    ref = spark.createDataFrame([(v,) for v in ref_vals], schema)
    cur = spark.createDataFrame([(v,) for v in cur_vals], schema)
    (d,) = drift.categorical_drift(ref, cur, ["c"], epsilon=EPS)
    table = np.array([[50, 30, 20, 0], [20, 30, 0, 10]])
    expected = stats.chi2_contingency(table, correction=False)
    p = np.where(table[0] == 0, EPS, table[0] / table[0].sum())
    q = np.where(table[1] == 0, EPS, table[1] / table[1].sum())
    assert d.labels == ["a", "b", "c", "d"]
    assert d.metrics["chi2_statistic"] == pytest.approx(expected.statistic, rel=1e-9)
    assert d.metrics["chi2_pvalue"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert d.metrics["psi"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-9)
    assert d.metrics["null_rate_change"] == pytest.approx(10 / 110)


# --- exactness of the binned algorithm (mlops_spark.monitoring.ecdf) against scipy / numpy ------------

# Tiny limits: a few bins in pass 1 and small budgets, so that bins are split and collected over several passes.
FORCED = ecdf.Limits(level_bins=64, sample_rows=100, collect_bin=16, sub_bin=8, max_split=16, max_pass_bins=256, max_values=400)


def _present(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def _assert_matches_scipy_and_numpy(result: ecdf.Comparison, ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> None:
    r, c = _present(ref), _present(cur)
    assert result.non_null == (r.size, c.size)
    assert result.ks_statistic == pytest.approx(stats.ks_2samp(r, c).statistic, abs=1e-12)
    assert result.wasserstein == pytest.approx(stats.wasserstein_distance(r, c), abs=1e-9, rel=1e-12)
    edges = sorted({float(q) for q in np.quantile(r, [i / bins for i in range(1, bins)], method="inverted_cdf")})
    assert result.edges == edges
    cut = [-np.inf, *edges, np.inf]
    assert result.counts == (np.histogram(r, cut)[0].tolist(), np.histogram(c, cut)[0].tolist())


def _with_missing(rng: np.random.Generator, values: np.ndarray) -> list:
    # Nulls and NaN both count as missing.
    out: list = values.tolist()
    for i in np.flatnonzero(rng.random(values.size) < 0.04):
        out[i] = None if i % 2 else float("nan")
    return out


def _mixed(seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n, m = 1500 + 100 * seed, 900
    ref = {
        "normal": rng.normal(size=n),
        "rounded": np.round(rng.normal(size=n), 1),  # ties within and across sides
        "ints": np.floor(rng.random(n) * 10),  # heavy ties; the current side has values beyond the reference's
        "cauchy": rng.standard_cauchy(n),  # heavy tails: bins far from the bulk
        "same": rng.normal(size=n),  # same distribution: D crosses zero many times
    }
    cur = {
        "normal": rng.normal(0.2, 1.2, size=m),
        "rounded": np.round(rng.normal(0.1, 1, size=m), 1),
        "ints": np.floor(rng.random(m) * 12),
        "cauchy": rng.standard_cauchy(m) * 1.5,
        "same": rng.normal(size=m),
    }
    return ref, cur


def _compare(spark, ref: dict[str, np.ndarray | list], cur: dict[str, np.ndarray | list], limits: ecdf.Limits | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    ref_df = _frame(spark, {k: _with_missing(rng, np.asarray(v, float)) for k, v in ref.items()})
    cur_df = _frame(spark, {k: _with_missing(rng, np.asarray(v, float)) for k, v in cur.items()})
    result = ecdf.compare(ref_df, cur_df, list(ref), 10, limits)
    # The frames hold the values with the missing ones put in: read them back for the references.
    data = {
        side: {k: np.array([np.nan if x is None else x for x in df.select(k).toPandas()[k]], float) for k in ref}
        for side, df in (("ref", ref_df), ("cur", cur_df))
    }
    return result, data


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_data_with_ties_nulls_and_heavy_tails_matches_scipy_over_refining_passes(spark, seed):
    result, data = _compare(spark, *_mixed(seed), limits=FORCED, seed=seed)
    assert max(r.passes for r in result.values()) >= 3  # bins were split, then collected
    for name, got in result.items():
        _assert_matches_scipy_and_numpy(got, data["ref"][name], data["cur"][name])


def test_random_data_with_default_limits_matches_scipy(spark):
    result, data = _compare(spark, *_mixed(4), seed=4)
    for name, got in result.items():
        _assert_matches_scipy_and_numpy(got, data["ref"][name], data["cur"][name])


def test_values_exactly_on_bin_edges_and_identical_samples(spark):
    # Integer values: every pass-1 edge is a value of both sides; the identical column has D = 0 at every edge.
    rng = np.random.default_rng(11)
    ints = np.floor(rng.random(3000) * 40)
    ref = {"on_edges": ints, "identical": ints, "halves": ints / 2}
    cur = {"on_edges": np.floor(rng.random(3000) * 40), "identical": ints, "halves": np.floor(rng.random(3000) * 40) / 2}
    result, data = _compare(spark, ref, cur, limits=FORCED, seed=11)
    for name, got in result.items():
        _assert_matches_scipy_and_numpy(got, data["ref"][name], data["cur"][name])
    same = _frame(spark, {"ints": ints.tolist(), "normal": rng.normal(size=3000).tolist()})
    for got in ecdf.compare(same, same, ["ints", "normal"], 10, FORCED).values():
        assert (got.ks_statistic, got.wasserstein) == (0.0, 0.0)


def test_one_value_per_side_constant_features_and_an_empty_side(spark):
    ref = _frame(spark, {"one": [2.5, None], "const": [3.0, 3.0], "shift": [1.0, 1.0], "empty": [1.0, 2.0]})
    cur = _frame(spark, {"one": [float("nan"), -1.0], "const": [3.0, 3.0], "shift": [4.0, 4.0], "empty": [None, float("nan")]})
    result = ecdf.compare(ref, cur, ["one", "const", "shift", "empty"], 10, FORCED)
    assert (result["one"].ks_statistic, result["one"].wasserstein) == (stats.ks_2samp([2.5], [-1.0]).statistic, 3.5)
    assert (result["const"].ks_statistic, result["const"].wasserstein) == (0.0, 0.0)
    assert (result["shift"].ks_statistic, result["shift"].wasserstein) == (1.0, stats.wasserstein_distance([1, 1], [4, 4]))
    assert math.isnan(result["empty"].ks_statistic) and math.isnan(result["empty"].wasserstein)
    assert (result["empty"].edges, result["empty"].counts) == ([1.0, 2.0], ([0, 1, 1], [0, 0, 0]))
    assert result["empty"].non_null == (2, 0)
