"""Exact empirical-CDF statistics of numeric columns, without shuffling or sorting raw values.

:func:`compare` computes, per feature, the exact quantiles of the reference that cut the PSI
bins, the bin counts of both sides, the two-sample Kolmogorov-Smirnov statistic and the
1-Wasserstein distance. Besides a row count and the first rows of each side, every Spark
job is a scan of each side in which the Python workers (``mapInArrow``) reduce their rows
to small aggregates; nothing is shuffled but those.

The algorithm, per feature, with ``n`` reference and ``m`` current non-null values:

1. Edges: quantiles of the first ``SAMPLE_ROWS`` rows of each side, each gap cut evenly into
   ``SUBDIVIDE``, give about ``(n + m) / VALUES_PER_BIN`` (at most ``LEVEL_BINS``) bins
   ``(-inf, e_1), [e_1, e_2), ..., [e_k, inf)``; every distinct value is an edge when the
   sides are that small. Only the work depends on the edges; every result is exact.
2. Pass 1: each worker sorts chunks of its rows (numpy) and adds, per bin and side, the
   count, the sum, the minimum and the maximum of the values; the per-task arrays are
   merged by one small grouped shuffle. The CDFs are then exact at every edge, so is
   ``D = F_ref - F_cur``.
3. Inside a bin ``D`` starts at ``D_a`` and ends at ``D_b`` (both exact); it rises by at most
   the bin's reference mass ``r/n`` and falls by at most its current mass ``c/m``, so
   ``max(D_a - c/m, D_b - r/n) <= D <= min(D_a + r/n, D_b + c/m)``. A bin is settled when
   its values are all equal (one CDF step), or when it can neither raise the KS statistic
   above the largest exact ``|D|`` found so far nor hold a sign change of ``D``: then
   ``integral |D| = |integral D|``, and ``integral_a^b F = F(a-) (b - a) + sum(b - v) / n``
   is exact from the count and the sum. A bin also stays open while it holds a reference
   quantile that is neither its minimum nor its maximum, or a PSI edge inside its values.
4. Further passes, over the features with open bins only: open bins with at most
   ``COLLECT_BIN`` values, or all of them when they fit in ``MAX_VALUES``, have their raw
   values brought to the driver, where the union is sorted within each bin (scipy's
   formulas restricted to the bin) and reduced at once to the bin's exact ``max |D|``,
   ``integral |D|``, quantiles and counts below them; larger open bins are split into
   sub-bins of about ``SUB_BIN`` values (evenly between their minimum and maximum, at
   the maximum itself and at any PSI edge inside) whose aggregates the next pass
   computes. A bin whose values are not all equal always splits at its maximum, so every
   pass makes progress and the loop ends.

Driver memory is bounded whatever the row count: per feature, 8 numbers for each of at
most ``LEVEL_BINS + MAX_PASS_BINS * (passes - 1)`` bins (about 1 MiB per 16,000 bins),
plus at most ``MAX_VALUES`` raw values (128 MiB as float64) during one pass, dropped once
reduced. Typical data takes two or three passes; identical samples are the worst case
(``D`` is 0 at every edge, so no bin settles without its values) and take about
``2 * rows / MAX_VALUES`` collecting passes, each within the same bound.

NaN counts as missing, like null. Counts are exact integers; ``D`` is compared in exact
integer arithmetic (``R m - C n``), so the choice of bins never depends on rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

LEVEL_BINS = 1 << 17
"""At most this many bins per feature in pass 1 (cut at sample quantiles of both sides, see
:func:`_sample_edges`)."""
VALUES_PER_BIN = 128
"""Pass 1 aims at this many values per bin (both sides), within ``LEVEL_BINS``."""
SUBDIVIDE = 16
"""Pass-1 bins per gap between two sample quantiles."""
SAMPLE_ROWS = 40_000
"""Rows sampled per side for the pass-1 edges."""
COLLECT_BIN = 64
"""An open bin with at most this many values (both sides) is collected rather than split."""
SUB_BIN = 32
"""Target values per sub-bin when an open bin is split."""
MAX_SPLIT = 1024
"""At most this many sub-bins per split bin."""
MAX_PASS_BINS = 1 << 18
"""At most this many new sub-bins per feature per pass."""
CHUNK_ROWS = 1 << 19
"""Rows a worker sorts at a time."""
MAX_VALUES = 1 << 24
"""At most this many raw values reach the driver per pass (128 MiB as float64)."""

_IGNORE, _STATS, _COLLECT = 0, 1, 2
_SCHEMA = "side int, feature int, count binary, total binary, low binary, high binary, values binary"


@dataclass
class Comparison:
    """Exact results for one feature.

    Attributes:
        rows: rows of each side (nulls included): ``(reference, current)``.
        non_null: non-null, non-NaN values of each side.
        edges: the reference's exact quantiles at ``1/bins .. (bins-1)/bins``
            (``np.quantile(method="inverted_cdf")``), deduplicated and sorted.
        counts: per side, values in ``(-inf, e_1), [e_1, e_2), ..., [e_k, inf)``.
        ks_statistic: ``max |F_ref - F_cur|`` (NaN when a side has no values).
        wasserstein: ``integral |F_ref - F_cur| dx`` (NaN when a side has no values).
        passes: scans of the data it took (pass 1 included).
    """

    rows: tuple[int, int]
    non_null: tuple[int, int]
    edges: list[float]
    counts: tuple[list[int], list[int]]
    ks_statistic: float
    wasserstein: float
    passes: int


@dataclass
class _State:
    """Driver-side aggregates of one feature: ``K`` inner edges, ``K + 1`` bins, per side."""

    edges: np.ndarray
    count: np.ndarray  # (2, K+1) int64
    total: np.ndarray  # (2, K+1) float64
    low: np.ndarray  # (2, K+1), +inf when empty
    high: np.ndarray  # (2, K+1), -inf when empty
    collected: np.ndarray  # (K+1,) bool: the bin's raw values came and were reduced to the next three
    scaled: np.ndarray  # (K+1,) int64: exact max |D| * n * m inside a collected bin
    peak: np.ndarray  # (K+1,) exact max |D| inside a collected bin
    integral: np.ndarray  # (K+1,) exact integral |D| over a collected bin
    known: dict[int, tuple[float, int, int]]  # quantile rank in a collected bin -> (value, values < it per side)

    def left(self) -> np.ndarray:
        return np.concatenate([[-np.inf], self.edges])

    def right(self) -> np.ndarray:
        return np.concatenate([self.edges, [np.inf]])

    def before(self) -> np.ndarray:
        """(2, K+1): values of each side below each bin."""
        return np.cumsum(self.count, axis=1) - self.count


# --- the worker side ----------------------------------------------------------------------


def _scan(batches: Iterator[pa.RecordBatch], side: int, requests: dict[int, tuple[np.ndarray, np.ndarray]]) -> Iterator[pa.RecordBatch]:
    """One partition: per requested feature, aggregates of its ``_STATS`` intervals and the raw
    values of its ``_COLLECT`` intervals. ``requests[i] = (points, kinds)``: interval ``j`` is
    ``[points[j-1], points[j])`` with open ends, ``kinds[j]`` what to do with it.

    Batches are gathered into chunks of ``CHUNK_ROWS`` rows: a sorted chunk much larger than
    the number of intervals makes the binary searches cache-friendly.
    """
    acc: dict[int, tuple] = {}
    for i, (points, _) in requests.items():
        k = len(points) + 1
        acc[i] = (np.zeros(k, np.int64), np.zeros(k), np.full(k, np.inf), np.full(k, -np.inf), [])
    for chunk in _chunks(batches):
        for i, (points, kinds) in requests.items():
            v = chunk.column(i).to_numpy()  # nulls arrive as NaN
            v = v[~np.isnan(v)]
            v.sort()
            if v.size:
                _add(v, points, kinds, acc[i])
    out = []
    for i, (_, kinds) in requests.items():
        count, total, low, high, values = acc[i]
        s = kinds == _STATS
        arrays = (count[s], total[s], low[s], high[s], np.concatenate(values or [np.empty(0)]))
        out.append((side, i, *[a.tobytes() for a in arrays]))
    names = _arrow_schema().names
    yield pa.RecordBatch.from_pylist([dict(zip(names, row, strict=True)) for row in out], schema=_arrow_schema())


def _chunks(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.Table]:
    buffered: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        buffered.append(batch)
        size += batch.num_rows
        if size >= CHUNK_ROWS:
            yield pa.Table.from_batches(buffered).combine_chunks()
            buffered, size = [], 0
    if buffered:
        yield pa.Table.from_batches(buffered).combine_chunks()


def _add(v: np.ndarray, points: np.ndarray, kinds: np.ndarray, acc: tuple) -> None:
    """Add the sorted values ``v`` to one feature's accumulators (work in the number of intervals,
    but for the sort: one binary search per point, not per value)."""
    count, total, low, high, values = acc
    bounds = np.concatenate([[0], np.searchsorted(v, points, side="left"), [v.size]])
    sizes = np.diff(bounds)
    ids = np.flatnonzero(sizes)
    starts, ends = bounds[ids], bounds[ids + 1]
    count[ids] += sizes[ids]
    total[ids] += np.add.reduceat(v, starts)
    low[ids] = np.minimum(low[ids], v[starts])
    high[ids] = np.maximum(high[ids], v[ends - 1])
    wanted = kinds == _COLLECT
    if wanted[ids].any():
        values.append(v[np.repeat(wanted, sizes)])


def _arrow_schema() -> pa.Schema:
    return pa.schema(
        [("side", pa.int32()), ("feature", pa.int32())] + [(n, pa.binary()) for n in ("count", "total", "low", "high", "values")]
    )


def _merge(table: pa.Table) -> pa.Table:
    """All partitions' rows of one (side, feature) summed into one row."""
    rows = table.to_pylist()
    first = rows[0]

    def arrays(name: str, dtype: type) -> list[np.ndarray]:
        return [np.frombuffer(r[name], dtype) for r in rows]

    merged = {
        "side": first["side"],
        "feature": first["feature"],
        "count": np.sum(arrays("count", np.int64), axis=0).tobytes(),
        "total": np.sum(arrays("total", np.float64), axis=0).tobytes(),
        "low": np.min(arrays("low", np.float64), axis=0).tobytes(),
        "high": np.max(arrays("high", np.float64), axis=0).tobytes(),
        "values": np.concatenate(arrays("values", np.float64)).tobytes(),
    }
    return pa.Table.from_pylist([merged], schema=_arrow_schema())


def _cores(df: DataFrame) -> int:
    return max(1, int(df.sparkSession.sparkContext.defaultParallelism))


def _pass(sides: Sequence[DataFrame], features: Sequence[str], requests: dict[int, tuple[np.ndarray, np.ndarray]]) -> list[dict]:
    """One scan of each side for ``requests`` (feature index -> points, kinds); merged rows."""
    wanted = sorted(requests)
    scans = []
    for side, df in enumerate(sides):
        # One task per core: each task's aggregates have the size of the request, whatever its rows.
        cols = df.select(*[F.col(features[i]).cast(T.DoubleType()) for i in wanted]).coalesce(_cores(df))
        local = {j: requests[i] for j, i in enumerate(wanted)}

        def scan(batches: Iterator[pa.RecordBatch], side: int = side, local: dict = local) -> Iterator[pa.RecordBatch]:
            return _scan(batches, side, local)

        scans.append(cols.mapInArrow(scan, _SCHEMA))
    union = scans[0]
    for other in scans[1:]:
        union = union.unionByName(other)
    rows = union.groupBy("side", "feature").applyInArrow(_merge, _SCHEMA).collect()
    out = []
    for r in rows:
        out.append(
            {
                "side": r["side"],
                "feature": wanted[r["feature"]],
                "count": np.frombuffer(r["count"], np.int64),
                "total": np.frombuffer(r["total"], np.float64),
                "low": np.frombuffer(r["low"], np.float64),
                "high": np.frombuffer(r["high"], np.float64),
                "values": np.frombuffer(r["values"], np.float64),
            }
        )
    return out


# --- the driver side ----------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The knobs of :func:`compare` (defaults: the module constants). Results never depend on them."""

    level_bins: int = LEVEL_BINS
    sample_rows: int = SAMPLE_ROWS
    collect_bin: int = COLLECT_BIN
    sub_bin: int = SUB_BIN
    max_split: int = MAX_SPLIT
    max_pass_bins: int = MAX_PASS_BINS
    max_values: int = MAX_VALUES


def _sample_edges(sides: Sequence[DataFrame], features: Sequence[str], limits: Limits) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Pass-1 inner edges per feature (see :func:`_first_edges`) from the first ``sample_rows`` rows
    of each side: Spark reads only those (a random sample reads every row). If they are not
    typical, the bins are unequal and more passes follow, with the same results.

    Also returns the rows of each side (nulls included; 0 for a missing side), counted once here.
    """
    counts = [df.count() for df in sides]
    rows = sum(counts)
    level = min(limits.level_bins, max(SUBDIVIDE, rows // VALUES_PER_BIN))
    samples: list[list[np.ndarray]] = [[] for _ in features]
    for df in sides:
        table = df.select(*[F.col(f).cast(T.DoubleType()) for f in features]).limit(limits.sample_rows).toArrow()
        for i in range(len(features)):
            v = table.column(i).to_numpy(zero_copy_only=False)
            samples[i].append(v[~np.isnan(v)])
    edges = [_first_edges(s, rows <= limits.sample_rows, level, limits.level_bins) for s in samples]
    return edges, (counts[0], counts[1] if len(counts) > 1 else 0)


def _first_edges(samples: list[np.ndarray], complete: bool, level: int, most: int) -> np.ndarray:
    """Every distinct value when the samples are the whole data and there are at most ``most``
    (pass 1 then settles every bin); else about ``level`` edges: the samples' quantiles, each gap
    cut evenly into ``SUBDIVIDE`` (a sample places the coarse edges well, not the fine ones)."""
    values = np.concatenate(samples) if samples else np.empty(0)
    distinct = np.unique(values[np.isfinite(values)])
    if complete and distinct.size <= most:
        return distinct
    probs = np.arange(1, level // (len(samples) * SUBDIVIDE)) / max(1, level // (len(samples) * SUBDIVIDE))
    cuts = [np.quantile(v, probs, method="inverted_cdf") for v in samples if v.size and probs.size]
    q = np.unique(np.concatenate(cuts)) if cuts else np.empty(0)
    q = q[np.isfinite(q)]
    if q.size < 2:
        return q
    steps = np.arange(SUBDIVIDE) / SUBDIVIDE
    return np.unique(np.concatenate([(q[:-1, None] + np.diff(q)[:, None] * steps).ravel(), q]))


def _inside(st: _State, raw: Sequence[np.ndarray], n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin, from the sorted raw values ``raw`` of some whole bins: exact ``max |D| * n * m``,
    ``max |D|`` and ``integral |D|`` (0 for bins without values). Scipy's formulas (``ks_2samp``,
    ``wasserstein_distance``) restricted to those bins: ``D`` at every distinct value ``x`` is
    exact from the counts below its bin and the bin's values up to ``x``; it holds until the
    next distinct value or the bin's end."""
    size = st.edges.size + 1
    scaled, peak, integral = np.zeros(size, np.int64), np.zeros(size), np.zeros(size)
    u = np.unique(np.concatenate(raw))
    if not u.size:
        return scaled, peak, integral
    left, right = st.left(), st.right()
    j = np.searchsorted(st.edges, u, side="right")
    before = st.before()
    below = [before[s][j] + np.searchsorted(raw[s], u, side="right") - np.searchsorted(raw[s], left[j], side="left") for s in (0, 1)]
    d = below[0] / n - below[1] / m
    np.maximum.at(scaled, j, np.abs(below[0] * m - below[1] * n))
    np.maximum.at(peak, j, np.abs(d))
    last = np.append(j[1:] != j[:-1], True)  # the bin's last distinct value
    first = np.insert(j[1:] != j[:-1], 0, True)
    end = np.where(last, np.where(np.isfinite(right[j]), right[j], u), np.append(u[1:], 0.0))
    part = np.abs(d) * (end - u)
    d_before = before[0][j] / n - before[1][j] / m
    start = np.where(np.isfinite(left[j]), left[j], u)
    part += np.where(first, np.abs(d_before) * (u - start), 0.0)
    integral += np.bincount(j, weights=part, minlength=size)
    return scaled, peak, integral


def _targets(n: int, bins: int) -> list[int]:
    """1-based ranks of the quantiles at ``1/bins .. (bins-1)/bins`` (inverted CDF)."""
    return [max(1, math.ceil(j / bins * n - 1e-9)) for j in range(1, bins)] if n else []


@dataclass
class _Assessment:
    open: np.ndarray  # bins that need more data
    splits: np.ndarray  # PSI edges inside an open bin's values: split there
    quantiles: list[float] | None  # None while one is undecided


def _assess(st: _State, n: int, m: int, bins: int, distances: bool) -> _Assessment:
    c = st.count
    rb, cb = st.before()
    ra, ca = rb + c[0], cb + c[1]
    lo, hi = np.minimum(st.low[0], st.low[1]), np.maximum(st.high[0], st.high[1])
    settled = st.collected | (lo >= hi)
    need = np.zeros(lo.size, bool)
    if distances:
        db, da = rb * m - cb * n, ra * m - ca * n
        bound = max(int(np.abs(da).max()), int(st.scaled.max()))
        upper = np.minimum(db + c[0] * m, da + c[1] * n)
        lower = np.maximum(db - c[1] * n, da - c[0] * m)
        need |= (np.maximum(upper, -lower) > bound) | ((lower < 0) & (upper > 0))
    quantiles: list[float] = []
    splits: list[float] = []
    targets = _targets(n, bins)
    for k in targets:
        j = int(np.searchsorted(ra, k, side="left"))
        if k in st.known:
            q = st.known[k][0]
        elif st.low[0, j] == st.high[0, j] or k == rb[j] + 1:
            q = float(st.low[0, j])
        elif k == ra[j]:
            q = float(st.high[0, j])
        else:
            need[j] = True
            continue
        quantiles.append(q)
        # The bin counts below a PSI edge need the edge to be a bin edge, or the bin's values.
        if not st.collected[j] and any(st.low[s, j] < q <= st.high[s, j] for s in (0, 1)):
            need[j] = True
            splits.append(q)
    decided = len(quantiles) == len(targets)
    return _Assessment(~settled & need, np.asarray(splits, float), quantiles if decided else None)


@dataclass
class _Plan:
    points: np.ndarray  # the request of :func:`_scan`
    kinds: np.ndarray
    collect: np.ndarray  # bins whose values come
    edges: np.ndarray  # new inner edges inside split bins


def _plan(states: dict[int, _State], views: dict[int, _Assessment], limits: Limits) -> dict[int, _Plan]:
    """The next pass: per feature, open bins to collect (all, if their values fit in ``max_values``;
    else the small ones while they fit) and open bins to split (``sub_bin`` values per sub-bin, at
    most ``max_pass_bins`` new bins per feature); what is left waits for the pass after."""
    sizes = {i: states[i].count.sum(axis=0) for i in views}
    everything = sum(int(sizes[i][v.open].sum()) for i, v in views.items()) <= limits.max_values
    budget = limits.max_values
    plans = {}
    for i, view in views.items():
        st, size = states[i], sizes[i]
        left, right = st.left(), st.right()
        lo, hi = np.minimum(st.low[0], st.low[1]), np.maximum(st.high[0], st.high[1])
        finite = np.isfinite(lo) & np.isfinite(hi)
        idx = np.flatnonzero(view.open)
        small = everything | (size[idx] <= limits.collect_bin)
        fits = np.cumsum(np.where(small, size[idx], 0)) <= budget
        # A bin that holds +-inf cannot be split evenly: it is collected, over the budget if need be.
        collect = idx[(small & fits) | ~finite[idx]]
        budget -= int(size[collect].sum())
        rest = idx[~(small & fits) & finite[idx]]
        parts = np.clip(size[rest] // limits.sub_bin, 2, limits.max_split)
        keep = np.cumsum(parts) <= limits.max_pass_bins
        keep[:1] = True
        split, parts = rest[keep], parts[keep]
        step = np.arange(parts.sum()) - np.repeat(np.cumsum(parts) - parts, parts)
        owner = np.repeat(split, parts)
        new = lo[owner] + (hi[owner] - lo[owner]) * step / np.repeat(parts, parts)
        # hi itself, so that the run of values equal to hi becomes a one-value bin: progress.
        new = np.unique(np.concatenate([new, hi[split], view.splits]))
        where = np.searchsorted(st.edges, new, side="right")
        new = new[np.isin(where, split) & (new > left[where]) & np.isfinite(new)]
        chosen = np.concatenate([collect, split])
        if not chosen.size:
            continue
        points = np.unique(np.concatenate([left[chosen], right[chosen], new]))
        points = points[np.isfinite(points)]
        owner = np.searchsorted(st.edges, np.concatenate([[-np.inf], points]), side="right")
        kinds = np.full(owner.size, _IGNORE, np.int8)
        kinds[np.isin(owner, collect)] = _COLLECT
        kinds[np.isin(owner, split)] = _STATS
        plans[i] = _Plan(points, kinds, collect, new)
    return plans


def _apply(st: _State, plan: _Plan, results: dict[int, dict], bins: int, distances: bool) -> _State:
    """The state after a pass: split bins replaced by their sub-bins; collected bins reduced to
    their exact KS and Wasserstein parts and quantiles, and their values dropped."""
    n, m = (int(x) for x in st.count.sum(axis=1))
    raw = [np.sort(results[s]["values"]) if s in results else np.empty(0) for s in (0, 1)]
    collected, scaled, peak, integral = st.collected.copy(), st.scaled.copy(), st.peak.copy(), st.integral.copy()
    known = dict(st.known)
    if plan.collect.size:
        collected[plan.collect] = True
        if distances:
            parts = _inside(st, raw, n, m)
            for arr, part in zip((scaled, peak, integral), parts, strict=True):
                arr[plan.collect] = part[plan.collect]
        before, left = st.before(), st.left()
        ra = before[0] + st.count[0]
        for k in _targets(n, bins):
            j = int(np.searchsorted(ra, k, side="left"))
            if collected[j] and k not in known:
                start = [int(np.searchsorted(raw[s], left[j], side="left")) for s in (0, 1)]
                q = float(raw[0][start[0] + k - before[0, j] - 1])
                below = [int(before[s, j] + np.searchsorted(raw[s], q, side="left") - start[s]) for s in (0, 1)]
                known[k] = (q, below[0], below[1])
    if not plan.edges.size:
        return _State(st.edges, st.count, st.total, st.low, st.high, collected, scaled, peak, integral, known)
    edges = np.unique(np.concatenate([st.edges, plan.edges]))
    new_left = np.concatenate([[-np.inf], edges])
    parent = np.searchsorted(st.edges, new_left, side="right")
    fresh = np.isin(parent, np.searchsorted(st.edges, plan.edges, side="right"))  # inside a split bin
    stat_index = np.cumsum(plan.kinds == _STATS) - 1
    where = stat_index[np.searchsorted(plan.points, new_left[fresh], side="right")]
    arrays = []
    for name, empty in (("count", 0), ("total", 0.0), ("low", np.inf), ("high", -np.inf)):
        arr = getattr(st, name)[:, parent].copy()
        for s in (0, 1):
            arr[s, fresh] = results[s][name][where] if s in results else empty
        arrays.append(arr)
    count, total, low, high = arrays
    return _State(edges, count, total, low, high, collected[parent], scaled[parent], peak[parent], integral[parent], known)


def _finish(st: _State, rows: tuple[int, int], n: int, m: int, quantiles: list[float], distances: bool, passes: int) -> Comparison:
    """Exact results once no bin is open (see the module docstring)."""
    c = st.count
    before = st.before()
    edges = sorted(set(quantiles))
    counts: list[list[int]] = []
    known = {q: (ref, cur) for q, ref, cur in st.known.values()}
    for s in (0, 1):
        below = []
        for e in edges:
            j = int(np.searchsorted(st.edges, e, side="right"))
            if st.collected[j]:
                below.append(known[e][s])
            else:
                below.append(int(before[s, j]) + (int(c[s, j]) if e > st.high[s, j] else 0))
        counts.append(np.diff([0, *below, (n, m)[s]]).astype(int).tolist())
    ks = wd = math.nan
    if distances:
        left, right = st.left(), st.right()
        rb, cb = before
        d_before, d_after = rb / n - cb / m, (rb + c[0]) / n - (cb + c[1]) / m
        lo, hi = np.minimum(st.low[0], st.low[1]), np.maximum(st.high[0], st.high[1])
        a = np.where(np.isfinite(left), left, lo)
        b = np.where(np.isfinite(right), right, hi)
        with np.errstate(invalid="ignore"):
            # Where D keeps one sign: integral of F over [a, b) = F(a-) (b - a) + sum(b - v) / n.
            signed = d_before * (b - a) + (c[0] * b - st.total[0]) / n - (c[1] * b - st.total[1]) / m
            single = np.abs(d_before) * (lo - a) + np.abs(d_after) * (b - lo)
            empty = np.abs(d_before) * np.where(np.isfinite(b - a), b - a, 0.0)
        part = np.where(c.sum(axis=0) == 0, empty, np.where(lo == hi, single, np.abs(signed)))
        part = np.where(st.collected, st.integral, part)
        ks = max(float(np.abs(d_after).max()), float(st.peak.max()))
        wd = float(np.sum(part))
    return Comparison(rows, (n, m), edges, (counts[0], counts[1]), ks, wd, passes)


def compare(
    reference: DataFrame, current: DataFrame | None, features: Sequence[str], bins: int = 10, limits: Limits | None = None
) -> dict[str, Comparison]:
    """Exact quantile edges, bin counts, KS statistic and 1-Wasserstein distance per feature.

    Input columns: the numeric ``features`` of both frames, cast to double; null and NaN are
    missing. ``current=None`` computes the reference's edges and counts only (no distances).

    Returns:
        feature -> :class:`Comparison`.
    """
    limits = limits or Limits()
    sides = [reference] if current is None else [reference, current]
    distances = current is not None
    states: dict[int, _State] = {}
    first, rows = _sample_edges(sides, features, limits)
    requests = {i: (e, np.full(e.size + 1, _STATS, np.int8)) for i, e in enumerate(first)}
    results = _by_feature(_pass(sides, features, requests))
    for i, e in enumerate(first):
        res = results[i]
        count, total, low, high = (
            np.stack([res[s][name] if s in res else np.full(e.size + 1, empty) for s in (0, 1)])
            for name, empty in (("count", 0), ("total", 0.0), ("low", np.inf), ("high", -np.inf))
        )
        size = e.size + 1
        states[i] = _State(e, count, total, low, high, np.zeros(size, bool), np.zeros(size, np.int64), np.zeros(size), np.zeros(size), {})
    passes = 1
    while True:
        nm = {i: (int(st.count[0].sum()), int(st.count[1].sum())) for i, st in states.items()}
        views = {i: _assess(st, *nm[i], bins, distances and min(nm[i]) > 0) for i, st in states.items()}
        plans = _plan(states, {i: v for i, v in views.items() if v.open.any()}, limits)
        if not plans:
            break
        results = _by_feature(_pass(sides, features, {i: (p.points, p.kinds) for i, p in plans.items()}))
        for i, plan in plans.items():
            states[i] = _apply(states[i], plan, results[i], bins, distances and min(nm[i]) > 0)
        passes += 1
    out = {}
    for i, f in enumerate(features):
        n, m = nm[i]
        out[f] = _finish(states[i], rows, n, m, views[i].quantiles or [], distances and min(n, m) > 0, passes)
    return out


def _by_feature(rows: list[dict]) -> dict[int, dict[int, dict]]:
    out: dict[int, dict[int, dict]] = {}
    for r in rows:
        out.setdefault(r["feature"], {})[r["side"]] = r
    return out
