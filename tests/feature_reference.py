"""Independent references for the window engine: DuckDB RANGE window SQL and plain Python loops.

Both use the documented convention: a window ``W`` at time ``t`` holds events with
``t - W < ts <= t``, i.e. ``RANGE BETWEEN (W - 1 microsecond) PRECEDING AND CURRENT ROW``
over integer microseconds.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd

from mlops_spark.features.spec import FeatureSet, window_micros

_SQL_FUNCTION = {
    "count": "count({c})",
    "count_events": "count(*)",
    "sum": "sum({c})",
    "avg": "avg({c})",
    "min": "min({c})",
    "max": "max({c})",
    "stddev": "stddev_samp({c})",
    "distinct_count": "count(DISTINCT {c})",
}


def random_events(seed: int, entities: int = 40, events: int = 1500, start: str = "2024-01-01") -> pd.DataFrame:
    """Events on a 6-hour grid (many ties and events exactly on 1d/7d edges), ~10% null values,
    a few single-event entities, values spanning several magnitudes.

    Columns: event_id (str), customer_id (int64), event_ts (datetime64[us]), amount (float, nullable),
    category (str, nullable).
    """
    rng = np.random.default_rng(seed)
    base = pd.Timestamp(start)
    cust = rng.integers(0, entities, events)
    cust[:5] = entities + np.arange(5)  # single-event entities
    steps = rng.integers(0, 4 * 40, events)  # 6-hour grid over 40 days
    jitter = np.where(rng.random(events) < 0.2, rng.integers(1, 3_600_000_000, events), 0)
    ts = base + pd.to_timedelta(steps * 6 * 3_600_000_000 + jitter, unit="us")
    amount = np.round(rng.lognormal(3, 1.5, events), 2)
    amount[rng.random(events) < 0.1] = np.nan
    cats = np.array(["food", "toys", "books", "garden", "tech"])[rng.integers(0, 5, events)].astype(object)
    cats[rng.random(events) < 0.1] = None
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(events)],
            "customer_id": cust.astype("int64"),
            "event_ts": ts.astype("datetime64[us]"),
            "amount": amount,
            "category": cats,
        }
    )


def duckdb_per_event(pdf: pd.DataFrame, spec: FeatureSet, id_column: str) -> pd.DataFrame:
    """Per-event features with DuckDB window SQL (every function but ``last``, which is a Python loop).

    Returns ``id_column`` plus every aggregate feature, in ``spec`` order, and the ratios.
    """
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    ts = spec.timestamp
    df = pdf.assign(__ts_us=pdf[ts].astype("datetime64[us]").astype("int64"))
    con.register("ev", df)
    keys = ", ".join(f'"{k}"' for k in spec.entity)
    selects = []
    for name, column, fn, window in spec.aggregate_features():
        if fn == "last":
            continue
        w = window_micros(window)
        frame = "UNBOUNDED PRECEDING" if w is None else f"{w - 1} PRECEDING"
        expr = _SQL_FUNCTION[fn].format(c=f'"{column}"')
        selects.append(f'{expr} OVER (PARTITION BY {keys} ORDER BY __ts_us RANGE BETWEEN {frame} AND CURRENT ROW) AS "{name}"')
    sql = f'SELECT "{id_column}", {", ".join(selects)} FROM ev'
    out = con.execute(sql).df().merge(duckdb_last(con, spec, id_column), on=id_column, how="left")
    con.close()
    for r in spec.ratios:
        num, den = out[r.numerator].astype("float64"), out[r.denominator].astype("float64")
        out[r.name] = (num / den).where(den != 0)
    return out[[id_column, *spec.feature_names()]]


def duckdb_last(con: duckdb.DuckDBPyConnection, spec: FeatureSet, id_column: str) -> pd.DataFrame:
    """``last`` features in SQL: the latest time with a non-null value in the window (a RANGE
    window ``max``), joined to the largest value among the entity's events at that time."""
    keys = [f'"{k}"' for k in spec.entity]
    out = con.execute(f'SELECT "{id_column}" FROM ev').df()
    for name, column, fn, window in spec.aggregate_features():
        if fn != "last":
            continue
        w = window_micros(window)
        frame = "UNBOUNDED PRECEDING" if w is None else f"{w - 1} PRECEDING"
        c = f'"{column}"'
        on = " AND ".join(f"w.{k} = g.{k}" for k in keys)
        sql = f"""
            WITH w AS (
                SELECT "{id_column}", {", ".join(keys)},
                       max(CASE WHEN {c} IS NOT NULL THEN __ts_us END)
                           OVER (PARTITION BY {", ".join(keys)} ORDER BY __ts_us RANGE BETWEEN {frame} AND CURRENT ROW) AS lt
                FROM ev),
            g AS (SELECT {", ".join(keys)}, __ts_us, max({c}) AS v FROM ev WHERE {c} IS NOT NULL GROUP BY ALL)
            SELECT w."{id_column}", g.v AS "{name}" FROM w LEFT JOIN g ON {on} AND w.lt = g.__ts_us
        """
        out = out.merge(con.execute(sql).df(), on=id_column, how="left")
    return out


def loop_aggregate(values: list, fn: str, n_events: int) -> object:
    """One aggregate over the non-null ``values`` of a window, like SQL (plain Python)."""
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if fn == "count_events":
        return n_events
    if fn == "count":
        return len(vals)
    if fn == "distinct_count":
        return len(set(vals))
    if not vals:
        return None
    if fn == "sum":
        return math.fsum(vals)
    if fn == "avg":
        return math.fsum(vals) / len(vals)
    if fn == "min":
        return min(vals)
    if fn == "max":
        return max(vals)
    if fn == "stddev":
        if len(vals) < 2:
            return None
        mean = math.fsum(vals) / len(vals)
        return math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    raise ValueError(fn)


def loop_at_queries(events: pd.DataFrame, queries: pd.DataFrame, spec: FeatureSet, query_ts: str) -> pd.DataFrame:
    """Features at query points by brute force: for each query, filter the entity's events with
    ``t - W < ts <= t`` and aggregate (``last``: latest time, largest value among ties)."""
    ts = events[spec.timestamp].astype("datetime64[us]").astype("int64").to_numpy()
    rows = []
    for _, q in queries.iterrows():
        t = pd.Timestamp(q[query_ts]).value // 1000
        same = np.ones(len(events), dtype=bool)
        for k in spec.entity:
            same &= (events[k] == q[k]).to_numpy()
        out = dict(q)
        for name, column, fn, window in spec.aggregate_features():
            w = window_micros(window)
            m = same & (ts <= t) & ((ts > t - w) if w is not None else True)
            sub = events.loc[m]
            if fn == "last":
                valid = sub[sub[column].notna()]
                if valid.empty:
                    out[name] = None
                else:
                    vts = valid[spec.timestamp].astype("datetime64[us]").astype("int64")
                    out[name] = max(valid.loc[vts == vts.max(), column])
            else:
                out[name] = loop_aggregate(list(sub[column]), fn, len(sub))
        rows.append(out)
    return pd.DataFrame(rows)
