"""Vectorised numpy kernel of the one-pass window engine (no Spark here).

Rows arrive sorted by (entity segment, timestamp). For every window the kernel finds,
per row ``i``, the row range ``[lo_i, hi_i]`` of its entity with
``ts_i - W < ts <= ts_i`` by binary search (``hi_i`` is the last row tied with ``ts_i``,
so tied rows get identical results: SQL RANGE semantics). Then:

- count / sum / avg / stddev: differences of prefix sums (``O(1)`` per row) of values
  shifted by their entity's mean (the running prefix stays near 0, so sums and means are
  exact to ~1e-15 relative). stddev uses long-double prefixes of the shifted values and
  their squares: the variance's absolute error is ~1e-19 x the chunk's sum of squared
  deviations, i.e. below 1e-12 relative for typical windows, but a window of nearly equal
  values inside a widely spread entity can see ~1e-7 relative (DuckDB's streaming
  ``stddev_samp`` drifts ~1e-6 relative on values near 1e9, where this kernel is exact).
- min / max: a sparse table evaluated level by level (``O(n log L)`` time, ``O(n)``
  memory, ``L`` the longest window in rows) instead of storing every level.
- distinct count (exact): each value occurrence ``j`` with previous occurrence ``p_j``
  is new for exactly the rows with ``p_j < lo_i <= j <= hi_i``; since ``lo`` and ``hi``
  are non-decreasing that is one contiguous row range, added with a difference array.
- last: forward-filled index of the latest non-null row, checked against ``lo_i``.

Rows with ``is_event`` false are query points: they get results but contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_I64_SAFE = 2**62


@dataclass
class Column:
    """One input column: ``values`` (float64 for numeric, int64 codes ordered like the values
    otherwise) and ``valid`` (non-null and an event row)."""

    values: np.ndarray
    valid: np.ndarray
    numeric: bool


@dataclass
class Result:
    """A feature: ``values`` and ``null`` mask (for ``last`` on codes, ``values`` are codes)."""

    values: np.ndarray
    null: np.ndarray


def segments(new_entity: np.ndarray) -> np.ndarray:
    """Segment id per row from a boolean 'first row of an entity' array (row 0 must be True)."""
    return np.cumsum(new_entity, dtype=np.int64) - 1


def _keys(seg: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, int, np.ndarray | None]:
    """A sortable int64 key of (seg, ts): direct when it fits, else via a dense rank of ts."""
    tmin, tmax = int(ts.min()), int(ts.max())
    span = tmax - tmin + 2
    nseg = int(seg[-1]) + 1
    if nseg * span < _I64_SAFE:
        return seg * span + (ts - tmin), span, None
    uniq = np.unique(ts)
    return seg * (len(uniq) + 1) + np.searchsorted(uniq, ts), len(uniq) + 1, uniq


def bounds(seg: np.ndarray, ts: np.ndarray, windows: list[int | None]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Row ranges of each window.

    Returns:
        ``hi`` (last row tied with each row) and one ``lo`` array per window
        (first row of the entity with ``ts > ts_i - W``; the entity's first row for ``None``).
    """
    key, span, uniq = _keys(seg, ts)
    hi = np.searchsorted(key, key, side="right") - 1
    first = np.searchsorted(seg, seg, side="left")
    los = []
    tmin = int(ts.min())
    for w in windows:
        if w is None:
            los.append(first)
            continue
        start = ts - (w - 1)  # first timestamp inside the window: ts - W < t
        offset = np.maximum(start - tmin, 0) if uniq is None else np.searchsorted(uniq, start, side="left")
        target = seg * span + offset
        los.append(np.maximum(np.searchsorted(key, target, side="left"), first))
    return hi, los


def _prefix(x: np.ndarray, dtype: type = np.int64) -> np.ndarray:
    out: np.ndarray = np.zeros(len(x) + 1, dtype=dtype)
    np.cumsum(x, dtype=dtype, out=out[1:])
    return out


class _Numeric:
    """Prefix sums of one numeric column shifted by its entity's mean.

    The shifted values sum to ~0 over each entity, so the running prefix stays small and
    float64 differences stay exact to ~1e-15 relative of the values (a plain prefix of
    raw amounts over a million rows would lose ~1e-8 absolute). Squares use long double.
    """

    def __init__(self, col: Column, seg: np.ndarray) -> None:
        valid = col.valid
        nseg = int(seg[-1]) + 1
        counts = np.bincount(seg, weights=valid, minlength=nseg)
        sums = np.bincount(seg, weights=np.where(valid, col.values, 0.0), minlength=nseg)
        self.ref = np.divide(sums, counts, out=np.zeros(nseg), where=counts > 0)[seg]
        self.d = np.where(valid, col.values - self.ref, 0.0)
        self.count = _prefix(valid)
        self.d1 = _prefix(self.d, np.float64)
        self._d1l: np.ndarray | None = None
        self._d2: np.ndarray | None = None
        self._windows: dict[int | None, tuple[np.ndarray, np.ndarray]] = {}

    def squares(self) -> tuple[np.ndarray, np.ndarray]:
        """Long-double prefixes of the shifted values and their squares (stddev only: the
        difference of sums of squares needs the extra digits)."""
        if self._d1l is None or self._d2 is None:
            d = self.d.astype(np.longdouble)
            self._d1l, self._d2 = _prefix(d, np.longdouble), _prefix(d * d, np.longdouble)
        return self._d1l, self._d2

    def window(self, w: int | None, lo: np.ndarray, h1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Count of values and sum of shifted values per row for window ``w``."""
        if w not in self._windows:
            self._windows[w] = (self.count[h1] - self.count[lo], self.d1[h1] - self.d1[lo])
        return self._windows[w]


def _minmax(values: np.ndarray, valid: np.ndarray, lo: np.ndarray, hi: np.ndarray, want_min: bool, want_max: bool) -> tuple:
    """Range min and max over ``[lo, hi]``: sparse-table levels built and consumed one at a time."""
    n = len(values)
    length = hi - lo + 1
    level = np.frexp(length.astype(np.float64))[1] - 1  # floor(log2(length)), exact below 2**53
    order = np.argsort(level, kind="stable")
    cuts = np.searchsorted(level[order], np.arange(int(level.max()) + 2))
    # Arrays of the unwanted side stay empty and untouched.
    out_min, out_max = np.empty(n if want_min else 0), np.empty(n if want_max else 0)
    tmin = np.where(valid, values, np.inf) if want_min else out_min
    tmax = np.where(valid, values, -np.inf) if want_max else out_max
    for k in range(len(cuts) - 1):
        rows = order[cuts[k] : cuts[k + 1]]
        if len(rows):
            a, b = lo[rows], hi[rows] - (1 << k) + 1
            if want_min:
                out_min[rows] = np.minimum(tmin[a], tmin[b])
            if want_max:
                out_max[rows] = np.maximum(tmax[a], tmax[b])
        step = 1 << k
        if k + 1 < len(cuts) - 1:
            if want_min:
                tmin = np.minimum(tmin[:-step], tmin[step:])
            if want_max:
                tmax = np.maximum(tmax[:-step], tmax[step:])
    return (out_min if want_min else None), (out_max if want_max else None)


def _distinct(codes: np.ndarray, valid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    n = len(codes)
    idx = np.flatnonzero(valid)
    order = idx[np.argsort(codes[idx], kind="stable")]  # by value, then position
    same = np.zeros(len(order), dtype=bool)
    same[1:] = codes[order[1:]] == codes[order[:-1]]
    prev = np.full(n, -1, dtype=np.int64)
    prev[order[1:][same[1:]]] = order[:-1][same[1:]]
    j = idx
    a = np.searchsorted(lo, prev[j], side="right")
    b = np.searchsorted(lo, j, side="right")
    c = np.searchsorted(hi, j, side="left")
    start = np.maximum(a, c)
    keep = start < b
    diff = np.bincount(start[keep], minlength=n + 1) - np.bincount(b[keep], minlength=n + 1)
    return np.cumsum(diff[:n])


def _tie_max(values: np.ndarray, valid: np.ndarray, seg: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Per row: the largest valid value among rows of the same entity and timestamp."""
    n = len(values)
    new = np.ones(n, dtype=bool)
    new[1:] = (seg[1:] != seg[:-1]) | (ts[1:] != ts[:-1])
    starts = np.flatnonzero(new)
    fill = -np.inf if values.dtype.kind == "f" else np.iinfo(np.int64).min
    groups = np.maximum.reduceat(np.where(valid, values, fill), starts)
    return groups[np.cumsum(new) - 1]


def compute(
    seg: np.ndarray,
    ts: np.ndarray,
    is_event: np.ndarray,
    columns: dict[str, Column],
    features: list[tuple[str, str, str, int | None]],
) -> dict[str, Result]:
    """Evaluate every ``(name, column, function, window_us)`` for every row.

    Args:
        seg: entity segment id per row, non-decreasing.
        ts: event time in microseconds, non-decreasing within a segment.
        is_event: False for query rows (evaluated, never counted).
        columns: input columns by name.
        features: what to compute; ``window_us`` ``None`` means lifetime.

    Returns:
        Feature name -> values and null mask. Counts are int64, the rest float64
        (``last`` of a non-numeric column: int64 codes).
    """
    windows = list(dict.fromkeys(f[3] for f in features))
    hi, los = bounds(seg, ts, windows)
    lo_of = dict(zip(windows, los, strict=True))
    events = _prefix(is_event)
    prefixed = {f[1] for f in features if f[2] in ("sum", "avg", "stddev", "count")}
    numeric = {c: _Numeric(col, seg) for c, col in columns.items() if col.numeric and c in prefixed}
    out: dict[str, Result] = {}
    minmax_cache: dict[tuple[str, int | None], tuple] = {}
    h1 = hi + 1
    for name, column, fn, w in features:
        lo = lo_of[w]
        col = columns[column]
        if fn == "count_events":
            v = events[h1] - events[lo]
            out[name] = Result(v, np.zeros(len(v), dtype=bool))
            continue
        if fn in ("count", "sum", "avg", "stddev") and col.numeric:
            p = numeric[column]
            n, d1 = p.window(w, lo, h1)
            if fn == "count":
                out[name] = Result(n, np.zeros(len(n), dtype=bool))
            elif fn == "sum":
                out[name] = Result(p.ref * n + d1, n == 0)
            elif fn == "avg":
                out[name] = Result(p.ref + d1 / np.maximum(n, 1), n == 0)
            else:
                p1, p2 = p.squares()
                d1l = p1[h1] - p1[lo]
                d2 = p2[h1] - p2[lo]
                nn = np.maximum(n, 2).astype(np.longdouble)
                resid = d2 - d1l * d1l / nn
                # Below the rounding bound of the prefix difference the true residual is
                # indistinguishable from 0 (all values equal): report exactly 0, not sqrt(noise).
                noise = 8 * np.finfo(np.longdouble).eps * (p2[h1] + p2[lo])
                var = np.where(resid > noise, resid, 0) / (nn - 1)
                out[name] = Result(np.sqrt(var).astype(np.float64), n < 2)
        elif fn == "count":
            c = _prefix(col.valid)
            v = c[h1] - c[lo]
            out[name] = Result(v, np.zeros(len(v), dtype=bool))
        elif fn in ("min", "max"):
            key = (column, w)
            if key not in minmax_cache:
                minmax_cache[key] = _minmax(col.values, col.valid, lo, hi, True, True)
            n = _prefix(col.valid)
            empty = (n[h1] - n[lo]) == 0
            mn, mx = minmax_cache[key]
            out[name] = Result(mn if fn == "min" else mx, empty)
        elif fn == "distinct_count":
            v = _distinct(col.values, col.valid, lo, hi)
            out[name] = Result(v, np.zeros(len(v), dtype=bool))
        elif fn == "last":
            pos = np.maximum.accumulate(np.where(col.valid, np.arange(len(seg)), -1))[hi]
            ok = pos >= lo
            tie = _tie_max(col.values, col.valid, seg, ts)
            out[name] = Result(tie[np.maximum(pos, 0)], ~ok)
        else:  # pragma: no cover - the spec validates functions
            raise ValueError(f"unknown function {fn}")
    return out
