"""The numpy model behind :mod:`mlops_spark.datagen`: customers and chunks of transactions.

Pure functions of their arguments (no Spark, no I/O) so that a chunk of rows is the
same whichever executor, partition or core computes it:

- a customer's attributes are a counter-based hash of ``(seed, customer_id, attribute)``,
  so any worker can compute any customer without a join or a broadcast;
- chunk ``c`` of transactions draws from ``numpy.random.default_rng([seed, c, ...])``.

The retail model: customers belong to a segment (``vip``, ``regular``, ``occasional``)
that sets the median of a lognormal spend level (typical basket amount) and a
lognormal purchase frequency (expected purchases per week). Purchases follow a
weekly (weekend peak, quiet Sunday) and yearly (December peak) seasonality and a
diurnal hour profile. Lower spend/frequency customers churn more often; in the
``DECAY_DAYS`` before a churner's ``churn_date`` their purchase rate falls linearly
to zero and nothing is bought on or after it, so recent-activity features predict
churn.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SEGMENTS = ("vip", "regular", "occasional")
SEGMENT_SHARE = (0.10, 0.50, 0.40)
SEGMENT_SPEND = (80.0, 35.0, 18.0)  # median basket amount per segment
SEGMENT_FREQUENCY = (3.0, 1.0, 0.3)  # median purchases per week per segment

COUNTRIES = ("GB", "DE", "FR", "NL", "IE", "ES", "IT", "US")
COUNTRY_WEIGHTS = (0.45, 0.12, 0.11, 0.08, 0.07, 0.07, 0.05, 0.05)

CATEGORIES = ("grocery", "home", "fashion", "electronics", "toys", "beauty", "sports", "books")
CATEGORY_WEIGHTS = (0.30, 0.15, 0.15, 0.08, 0.09, 0.10, 0.07, 0.06)
CATEGORY_PRICE = (0.6, 1.2, 1.0, 2.5, 0.9, 0.8, 1.3, 0.5)  # relative basket size
# After planted drift, shifted rows draw categories from the reversed mix.
DRIFT_CATEGORY_WEIGHTS = tuple(reversed(CATEGORY_WEIGHTS))
# Categories of malformed records: none of them is in CATEGORIES.
MALFORMED_CATEGORIES = ("UNKNOWN", "??", "Grocery ", "n/a")

CHANNELS = ("web", "store", "mobile")
CHANNEL_WEIGHTS = (0.40, 0.35, 0.25)

WEEKDAY_FACTOR = np.array([0.9, 0.95, 1.0, 1.0, 1.1, 1.25, 0.8])  # Monday .. Sunday
YEARLY_AMPLITUDE = 0.3  # purchase rate in early December is 1.3x, in early June 0.7x
YEARLY_PEAK_DAY = 334.0  # day of year of the peak (1 December)
HOUR_WEIGHTS = np.array([1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 4, 6, 7, 8, 9, 8, 7, 7, 8, 9, 10, 9, 7, 5, 3, 2], dtype=float)
_MAX_RATE = float(WEEKDAY_FACTOR.max()) * (1 + YEARLY_AMPLITUDE)

DECAY_DAYS = 56  # a churner's purchase rate falls to zero over the 8 weeks before churn_date
MIN_TENURE_DAYS = 28  # nobody churns in their first four weeks in the range
SIGNUP_LOOKBACK_DAYS = 365  # about half the customers signed up before the range starts
NO_DATE = np.iinfo(np.int32).min  # "null" marker for churn days in numpy arrays

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_US_PER_DAY = 86_400_000_000


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijection of uint64 that scrambles every bit."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _key(seed: int, stream: int) -> np.uint64:
    return mix64(np.array([seed], dtype=np.uint64) * _GOLDEN + np.uint64(stream))[0]


def hash_uniform(seed: int, stream: int, ids: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers that depend only on ``(seed, stream, id)``."""
    h = mix64(ids.astype(np.uint64) * _GOLDEN + _key(seed, stream))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _hash_normal(seed: int, stream: int, ids: np.ndarray) -> np.ndarray:
    u1 = hash_uniform(seed, stream, ids)
    u2 = hash_uniform(seed, stream + 1, ids)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def _pick(weights: tuple[float, ...] | np.ndarray, u: np.ndarray) -> np.ndarray:
    cum = np.cumsum(np.asarray(weights, dtype=float))
    return np.minimum(np.searchsorted(cum / cum[-1], u, side="right"), len(cum) - 1).astype(np.int32)


@dataclass(frozen=True)
class Customers:
    """Attributes of customers ``ids`` (parallel numpy arrays; days are days since 1970-01-01)."""

    ids: np.ndarray
    segment: np.ndarray
    country: np.ndarray
    spend_level: np.ndarray
    frequency: np.ndarray
    signup_day: np.ndarray
    churn_day: np.ndarray  # NO_DATE when the customer does not churn in the range
    favourite_category: np.ndarray
    preferred_channel: np.ndarray
    active_from: np.ndarray  # first day purchases are possible (signup or range start)
    active_to: np.ndarray  # exclusive: churn day or range end


def customers_model(seed: int, ids: np.ndarray, start_day: int, days: int) -> Customers:
    """Attributes of the customers ``ids`` for a range of ``days`` days from ``start_day``."""
    ids = ids.astype(np.int64)
    segment = _pick(SEGMENT_SHARE, hash_uniform(seed, 1, ids))
    spend = np.asarray(SEGMENT_SPEND)[segment] * np.exp(0.45 * _hash_normal(seed, 2, ids))
    frequency = np.asarray(SEGMENT_FREQUENCY)[segment] * np.exp(0.5 * _hash_normal(seed, 4, ids))
    country = _pick(COUNTRY_WEIGHTS, hash_uniform(seed, 6, ids))
    end_day = start_day + days
    signup_span = SIGNUP_LOOKBACK_DAYS + max(1, int(0.8 * days))
    signup = (start_day - SIGNUP_LOOKBACK_DAYS + np.floor(hash_uniform(seed, 7, ids) * signup_span)).astype(np.int32)
    active_from = np.maximum(signup, start_day).astype(np.int32)
    # Annual churn probability falls with frequency and spend (logistic), turned into the
    # probability of churning within the range's length.
    logit = -2.0 - 0.9 * np.log(frequency) - 0.5 * np.log(spend / 30.0)
    p_year = 1.0 / (1.0 + np.exp(-logit))
    p_range = 1.0 - (1.0 - p_year) ** (days / 365.0)
    earliest = active_from + MIN_TENURE_DAYS
    can_churn = earliest < end_day
    churns = (hash_uniform(seed, 8, ids) < p_range) & can_churn
    span = np.maximum(end_day - earliest, 1)
    churn_day = np.where(churns, earliest + np.floor(hash_uniform(seed, 9, ids) * span), NO_DATE).astype(np.int32)
    active_to = np.where(churns, churn_day, end_day).astype(np.int32)
    return Customers(
        ids=ids,
        segment=segment,
        country=country,
        spend_level=np.round(spend, 2),
        frequency=np.round(frequency, 4),
        signup_day=signup,
        churn_day=churn_day,
        favourite_category=_pick(CATEGORY_WEIGHTS, hash_uniform(seed, 10, ids)),
        preferred_channel=_pick(CHANNEL_WEIGHTS, hash_uniform(seed, 11, ids)),
        active_from=active_from,
        active_to=active_to,
    )


CUSTOMER_ARROW_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("signup_date", pa.date32()),
        ("segment", pa.string()),
        ("country", pa.string()),
        ("spend_level", pa.float64()),
        ("frequency", pa.float64()),
        ("churn_date", pa.date32()),
    ]
)


def customers_batch(seed: int, first_id: int, last_id: int, start_day: int, days: int) -> pa.RecordBatch:
    """Customers ``first_id`` .. ``last_id`` (inclusive) as an Arrow batch (``CUSTOMER_ARROW_SCHEMA``)."""
    c = customers_model(seed, np.arange(first_id, last_id + 1, dtype=np.int64), start_day, days)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(c.ids, pa.int64()),
            pa.array(c.signup_day, pa.date32()),
            pc.take(pa.array(SEGMENTS), pa.array(c.segment)),
            pc.take(pa.array(COUNTRIES), pa.array(c.country)),
            pa.array(c.spend_level, pa.float64()),
            pa.array(c.frequency, pa.float64()),
            pa.array(c.churn_day, pa.date32(), mask=c.churn_day == NO_DATE),
        ],
        schema=CUSTOMER_ARROW_SCHEMA,
    )


@dataclass(frozen=True)
class ChunkParams:
    """Everything a chunk of transactions depends on (the determinism key)."""

    seed: int
    rows: int
    customers: int
    start_day: int
    days: int
    chunk_rows: int
    # Defect rates in planting order: null customer, negative amount, late, malformed, duplicate.
    defect_rates: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    late_days: int = 3
    drift_day: int | None = None
    drift_amount_scale: float = 1.0
    drift_category_shift: float = 0.0

    @property
    def chunks(self) -> int:
        return max(1, math.ceil(self.rows / self.chunk_rows)) if self.rows else 0

    def bounds(self, chunk: int) -> tuple[int, int]:
        """Global row range ``[first, end)`` of ``chunk``; chunk sizes differ by at most one."""
        return chunk * self.rows // self.chunks, (chunk + 1) * self.rows // self.chunks


def defect_count(rate: float, first: int, end: int) -> int:
    """Rows of a defect planted in global rows ``[first, end)``; sums telescope to ``floor(rate * rows)``."""
    return math.floor(rate * end) - math.floor(rate * first)


class _CustomerCache:
    """Per-worker cache of the customer model and its sampling weights (Spark reuses Python workers)."""

    def __init__(self, size: int = 2) -> None:
        self._items: OrderedDict[tuple[int, int, int, int], tuple[Customers, np.ndarray]] = OrderedDict()
        self._size = size

    def get(self, seed: int, customers: int, start_day: int, days: int) -> tuple[Customers, np.ndarray]:
        key = (seed, customers, start_day, days)
        if key not in self._items:
            c = customers_model(seed, np.arange(1, customers + 1, dtype=np.int64), start_day, days)
            length = (c.active_to - c.active_from).astype(float)
            ramp = np.where(c.churn_day != NO_DATE, np.minimum(DECAY_DAYS, length), 0.0)
            # Expected purchases ~ frequency x active days, less half the decay ramp for churners.
            weights = np.cumsum(c.frequency * np.maximum(length - ramp / 2.0, 0.5))
            self._items[key] = (c, weights)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        self._items.move_to_end(key)
        return self._items[key]


_CACHE = _CustomerCache()

TRANSACTION_ARROW_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("customer_id", pa.int64()),
        ("event_ts", pa.timestamp("us", tz="UTC")),
        ("amount", pa.float64()),
        ("quantity", pa.int32()),
        ("category", pa.string()),
        ("country", pa.string()),
        ("channel", pa.string()),
        ("landing_date", pa.date32()),
    ]
)


def _transaction_ids(seed: int, seq: np.ndarray) -> pa.Array:
    """``T`` + 16 hex digits of a seeded bijection of the global row number: unique, stable."""
    h = mix64(seq.astype(np.uint64) * _GOLDEN + _key(seed, 99))
    digits = h.astype(">u8").view(np.uint8).reshape(-1, 8)
    chars = np.empty((len(seq), 17), dtype=np.uint8)
    chars[:, 0] = ord("T")
    chars[:, 1::2] = _HEX[digits >> 4]
    chars[:, 2::2] = _HEX[digits & 15]
    return pa.array(chars.view("S17").ravel(), pa.binary()).cast(pa.string())


def _event_days(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, churn: np.ndarray) -> np.ndarray:
    """Days in ``[lo, hi)`` drawn by rejection from weekly x yearly seasonality x churn decay."""
    out = np.empty(len(lo), dtype=np.int64)
    pending = np.arange(len(lo))
    for _ in range(1000):
        day = np.floor(lo[pending] + rng.random(len(pending)) * (hi[pending] - lo[pending])).astype(np.int64)
        weekday = WEEKDAY_FACTOR[(day + 3) % 7]  # 1970-01-01 was a Thursday
        season = 1.0 + YEARLY_AMPLITUDE * np.cos(2 * np.pi * ((day % 365.25) - YEARLY_PEAK_DAY) / 365.25)
        c = churn[pending]
        decay = np.where(c != NO_DATE, np.clip((c - day) / DECAY_DAYS, 0.0, 1.0), 1.0)
        accept = rng.random(len(pending)) * _MAX_RATE < weekday * season * decay
        out[pending[accept]] = day[accept]
        pending = pending[~accept]
        if not len(pending):
            return out
    out[pending] = day[~accept]  # practically unreachable: keeps the loop bounded
    return out


def transactions_batch(p: ChunkParams, chunk: int) -> pa.RecordBatch:
    """Transactions of ``chunk`` as an Arrow batch (``TRANSACTION_ARROW_SCHEMA``).

    Defects are planted at exact counts (:func:`defect_count`) on distinct rows; a
    duplicate copies every column of a clean row of the same chunk.
    """
    first, end = p.bounds(chunk)
    n = end - first
    rng = np.random.default_rng([p.seed, chunk, 20240101])
    cust, cum_weights = _CACHE.get(p.seed, p.customers, p.start_day, p.days)
    idx = np.minimum(np.searchsorted(cum_weights, rng.random(n) * cum_weights[-1], side="right"), p.customers - 1)

    day = _event_days(rng, cust.active_from[idx], cust.active_to[idx], cust.churn_day[idx])
    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    seconds = hour * 3600 + rng.integers(0, 3600, size=n)
    event_us = day * _US_PER_DAY + seconds * 1_000_000

    category = np.where(rng.random(n) < 0.4, cust.favourite_category[idx], _pick(CATEGORY_WEIGHTS, rng.random(n)))
    channel = np.where(rng.random(n) < 0.6, cust.preferred_channel[idx], _pick(CHANNEL_WEIGHTS, rng.random(n)))
    quantity = (1 + rng.poisson(1.0, size=n)).astype(np.int32)
    amount = cust.spend_level[idx] * np.asarray(CATEGORY_PRICE)[category] * quantity / 2.0 * np.exp(0.5 * rng.standard_normal(n))
    drift_draw = rng.random(n)
    drift_category = _pick(DRIFT_CATEGORY_WEIGHTS, rng.random(n))
    if p.drift_day is not None:
        drifted = day >= p.drift_day
        amount = np.where(drifted, amount * p.drift_amount_scale, amount)
        category = np.where(drifted & (drift_draw < p.drift_category_shift), drift_category, category)
    amount = np.maximum(np.round(amount, 2), 0.01)
    landing = day.copy()
    customer_id = cust.ids[idx]
    customer_null = np.zeros(n, dtype=bool)
    seq = np.arange(first, end, dtype=np.int64)
    category_names = CATEGORIES + MALFORMED_CATEGORIES

    counts = [defect_count(rate, first, end) for rate in p.defect_rates]
    order = rng.permutation(n)
    cuts = np.cumsum([0, *counts])
    null_rows, negative_rows, late_rows, malformed_rows, duplicate_rows = (order[cuts[i] : cuts[i + 1]] for i in range(5))
    clean = order[cuts[-1] :]
    customer_null[null_rows] = True
    amount[negative_rows] = -amount[negative_rows]
    landing[late_rows] += rng.integers(1, p.late_days + 1, size=len(late_rows))
    category[malformed_rows] = len(CATEGORIES) + rng.integers(0, len(MALFORMED_CATEGORIES), size=len(malformed_rows))
    if len(duplicate_rows):
        source = clean[rng.integers(0, len(clean), size=len(duplicate_rows))]
        for column in (seq, customer_id, event_us, amount, quantity, category, channel, landing, idx):
            column[duplicate_rows] = column[source]

    return pa.RecordBatch.from_arrays(
        [
            _transaction_ids(p.seed, seq),
            pa.array(customer_id, pa.int64(), mask=customer_null),
            pa.array(event_us, pa.timestamp("us", tz="UTC")),
            pa.array(amount, pa.float64()),
            pa.array(quantity, pa.int32()),
            pc.take(pa.array(category_names), pa.array(category.astype(np.int32))),
            pc.take(pa.array(COUNTRIES), pa.array(cust.country[idx])),
            pc.take(pa.array(CHANNELS), pa.array(channel.astype(np.int32))),
            pa.array(landing.astype(np.int32), pa.date32()),
        ],
        schema=TRANSACTION_ARROW_SCHEMA,
    )
