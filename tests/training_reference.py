"""Independent references for the as-of join: a plain Python loop and DuckDB's ASOF LEFT JOIN.

Timestamps are plain integers (microseconds since the epoch) on this side, so the
references never depend on time-zone conversions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

MINUTE = 60_000_000
BASE = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z in microseconds


@dataclass
class RefSource:
    """A feature source for the references: rows (key, ts, *features), feature names, ttl (us)."""

    name: str
    rows: list[tuple]
    features: list[str]
    ttl: int | None


def _null_first(value: object) -> tuple:
    return (value is not None, value)


def python_asof(labels: Sequence[tuple], sources: Sequence[RefSource]) -> list[tuple]:
    """For each label (key, ts, *rest): rest + per source its features and matched ts.

    The newest feature row with ts <= label ts; ties on ts: the row greatest by its
    features (nulls first); older than ttl -> nulls.
    """
    out = []
    for key, ts, *rest in labels:
        row = [key, ts, *rest]
        for src in sources:
            best = None
            if key is not None and ts is not None:
                for fkey, fts, *values in src.rows:
                    if fkey is None or fts is None or fkey != key or fts > ts:
                        continue
                    rank = (fts, [_null_first(v) for v in values])
                    if best is None or rank > best[0]:
                        best = (rank, fts, values)
            if best is not None and (src.ttl is None or best[1] >= ts - src.ttl):
                row += [*best[2], best[1]]
            else:
                row += [None] * len(src.features) + [None]
        out.append(tuple(row))
    return out


def duckdb_asof(labels: pa.Table, sources: Sequence[tuple[str, pa.Table, list[str], int | None]], key: str = "customer_id") -> list[tuple]:
    """The same join with DuckDB's ``ASOF LEFT JOIN``, TTL applied after the match.

    ``labels`` and each source table have ``key`` and ``ts`` (BIGINT microseconds).
    """
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.register("labels", labels)
    select = ["l.*"]
    joins = []
    for i, (_name, table, features, ttl) in enumerate(sources):
        alias = f"s{i}"
        con.register(f"src{i}", table)
        fresh = f"{alias}.ts >= l.ts - {int(ttl)}" if ttl is not None else "TRUE"
        select += [f"CASE WHEN {fresh} THEN {alias}.{f} END AS {alias}_{f}" for f in features]
        select.append(f"CASE WHEN {fresh} THEN {alias}.ts END AS {alias}_ts")
        joins.append(f"ASOF LEFT JOIN src{i} {alias} ON l.{key} = {alias}.{key} AND l.ts >= {alias}.ts")
    sql = f"SELECT {', '.join(select)} FROM labels l {' '.join(joins)}"
    rows = con.execute(sql).fetchall()
    con.close()
    return rows


def random_case(seed: int, labels: int = 300, entities: int = 12, with_feature_ties: bool = True) -> tuple[list[tuple], list[RefSource]]:
    """Random labels and three sources with ties, nulls, duplicate labels and different TTLs.

    Labels: (customer_id, ts, label, note); sources: a (no TTL), b (10 min), c (3 min).
    """
    rng = random.Random(seed)

    def ts() -> int:
        return BASE + rng.randrange(0, 60) * MINUTE

    def key() -> int | None:
        return None if rng.random() < 0.03 else rng.randrange(entities)

    label_rows = []
    for i in range(labels):
        row = (key(), None if rng.random() < 0.03 else ts(), rng.randrange(2), f"n{i % 7}")
        label_rows.append(row)
        if rng.random() < 0.1:
            label_rows.append(row)  # exact duplicate label row

    def feature_rows(n: int, make: object) -> list[tuple]:
        rows: list[tuple] = []
        used: set[tuple] = set()
        while len(rows) < n:
            k, t = key(), ts()
            if rng.random() < 0.02:
                t = None
            if not with_feature_ties and (k, t) in used:
                continue
            used.add((k, t))
            rows.append((k, t, *make()))  # type: ignore[operator]
        return rows

    def maybe(v: object) -> object:
        return None if rng.random() < 0.1 else v

    a = RefSource("a", feature_rows(250, lambda: (maybe(round(rng.uniform(-5, 5), 3)), maybe(rng.choice("xyz")))), ["fa1", "fa2"], None)
    b = RefSource("b", feature_rows(150, lambda: (maybe(rng.randrange(100)),)), ["fb1"], 10 * MINUTE)
    c = RefSource("c", feature_rows(100, lambda: (maybe(round(rng.uniform(0, 1), 3)),)), ["fc1"], 3 * MINUTE)
    return label_rows, [a, b, c]
