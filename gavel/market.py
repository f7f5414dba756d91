"""Market memory: what recent sales of a listing's segments say, as of the listing's day.

A listing's market features come from the sales of its segments (every car, its body,
its make, its make/model, its make/model/year band) strictly before the start of its UTC
day, over the last :data:`WINDOWS` days. Everything is built from per-(segment, day)
aggregates of integers (fixed-point sums, counts and the latest sale time), so that

- an online job can update them one sale at a time, idempotently (keyed by auction id);
- windows are sums of days, in any order, with no rounding difference: the offline
  as-of join (:func:`market_features`) and an online store holding the same day
  aggregates (:class:`MarketMemory`) give bit-identical features.

The flow, each step a pure function shared by both paths::

    sale ──sale_contributions──▶ (segment, day) aggregate ──window_sums──▶ as-of windows
    listing ──segment_keys──▶ its segments' as-of windows ──features_from_windows──▶ features

Offline, :func:`market_features` does all of it for frames, with prefix sums; online,
:func:`read_market_features` reads a batch's as-of windows with one fetch.

>>> import pandas as pd
>>> sales = pd.DataFrame({
...     "auction_id": ["a", "b"], "sellingprice": [9000.0, 11000.0], "mmr": [10000.0, 10000.0],
...     "sold_at": pd.to_datetime(["2015-03-02 15:00", "2015-03-03 16:00"], utc=True),
...     "make": "Ford", "model": "Fusion", "year": 2012, "body": "Sedan"})
>>> listings = pd.DataFrame({
...     "listed_at": pd.to_datetime(["2015-03-03 09:00", "2015-03-04 09:00"], utc=True),
...     "make": " FORD", "model": "fusion", "year": 2013, "body": None})
>>> out = market_features(listings, sales)
>>> out["mkt_mm_n_7d"].tolist()  # the sale of 03-03 counts from 03-04 on
[1.0, 2.0]
>>> round(float(out.loc[1, "mkt_mm_ratio_7d"]), 4), out["mkt_mm_days_since"].tolist()
(-0.005, [0.375, 0.3333333333333333])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from gavel.text import MISSING_TEXT

SEGMENT_KINDS: tuple[str, ...] = ("all", "body", "make", "mm", "mmy")
"""Every car; its body style; its make; its make/model; its make/model/model-year band."""
WINDOWS: tuple[int, ...] = (3, 7, 30, 90)
"""Window lengths in whole UTC days before the listing's day. Three days still react on a
Monday (Friday's sales), when a one-day window would be empty after a weekend."""
LOOKBACK_DAYS = max(WINDOWS)
YEAR_BAND = 2
"""Model years per band: 2012 and 2013 share the band ``2012``."""
RATIO_CLIP = 0.5
"""A sale's log(price / mmr) is clipped to ±this (x0.61..x1.65) before it is summed, so
one absurd sale moves a segment's level by at most ``RATIO_CLIP / n``."""
LOG_PRICE_RANGE: tuple[float, float] = (float(np.log(100.0)), float(np.log(1_000_000.0)))
"""Bounds of a sale's log price when it has no mmr to be clipped around."""
SCALE = 1_000_000
"""Fixed point: sums hold micro-units of log, as int64, so sums are exact in any order
(and fit Redis ``HINCRBY``)."""
RATIO_WINDOWS: tuple[int, int] = (7, 3)
"""``mkt_ratio_hat`` is the segment's ratio over the first window, moved by the part of the
ratio over the second (recent) one that differs from it by more than
:data:`RATIO_MOVE_THRESHOLD`."""
RATIO_MOVE_THRESHOLD = 0.05
"""On real auctions a few days' ratio mostly reflects which sellers sold those days, and
following it makes prices worse (median APE 9.7% vs 8.8% for a constant on the Kaggle
sample); a recent move larger than this is a market moving."""
LEVEL_WINDOW = 90
"""The window of ``mkt_level_hat``: a segment's price level is noisy and moves slowly."""
RATIO_PRIOR_SALES = 50.0
"""Shrinkage of a segment's ratio towards its parent's: a segment with this many sales
counts half. The ratio varies little between segments (sd ~0.04) and much within (~0.2)."""
LEVEL_PRIOR_SALES = 1.0
"""The same for the price level, which varies much more between segments than within."""
RATIO_CHAIN: tuple[str, ...] = ("all", "body", "mm", "mmy")
"""Segments of ``mkt_ratio_hat``, broadest first. Not the make: a move of a body style
(all SUVs) would reach a Ford SUV diluted by Ford's other bodies."""
LEVEL_CHAIN: tuple[str, ...] = ("body", "make", "mm", "mmy")
"""Segments of ``mkt_level_hat``, broadest first: a Bentley's make says more about its
price than its body style does."""
DAY_SECONDS = 86_400

AGGREGATE_FIELDS: tuple[str, ...] = ("n", "n_mmr", "sum_ratio", "sum_log_price", "last_sold")
"""One (segment, day) aggregate: sales, sales with an mmr, the sum of their clipped
log(price/mmr) and of their robust log price (micro-units), and the latest sale (epoch s).
All but ``last_sold`` add up; ``last_sold`` combines by max."""
_SUMMED = 4
WINDOW_FIELDS: tuple[str, ...] = (
    *(f"{name}_{w}d" for w in WINDOWS for name in AGGREGATE_FIELDS[:_SUMMED]),
    "last_sold",
)
"""A segment's windows as of a day: the summed fields per window, then the latest sale in
the longest window. This small integer vector is what an online store materialises per
(segment, day) and what the worker reads."""


def _feature_names() -> tuple[str, ...]:
    names: list[str] = []
    for kind in SEGMENT_KINDS:
        for w in WINDOWS:
            names += [f"mkt_{kind}_n_{w}d", f"mkt_{kind}_ratio_{w}d", f"mkt_{kind}_logp_{w}d"]
        names.append(f"mkt_{kind}_days_since")
    return (*names, "mkt_ratio_hat", "mkt_level_hat")


MARKET_FEATURES: tuple[str, ...] = _feature_names()
"""Every market feature, in a fixed order (floats, NaN when no sale informs them):

- ``mkt_{kind}_n_{w}d``: sales of the segment in the window;
- ``mkt_{kind}_ratio_{w}d``: their mean clipped log(sellingprice / mmr);
- ``mkt_{kind}_logp_{w}d``: their mean robust log price (a sale with an mmr counts as
  log(mmr) + its clipped ratio, so a $300 sale of a $15,000 car counts as $9,100);
- ``mkt_{kind}_days_since``: days from the latest sale (within :data:`LOOKBACK_DAYS`) to
  the start of the listing's day;
- ``mkt_ratio_hat``: log(price / mmr) of the listing's segment, along
  :data:`RATIO_CHAIN`, each level shrunk towards the previous (:data:`RATIO_PRIOR_SALES`),
  over :data:`RATIO_WINDOWS`;
- ``mkt_level_hat``: log price of the segment along :data:`LEVEL_CHAIN`
  (:data:`LEVEL_PRIOR_SALES`), over :data:`LEVEL_WINDOW` days.
"""

_BAND_KEY = 1 << 17  # more days than 1970..2100; offline keys pack (segment, day) in one int


def normalise_text(value: object) -> str | None:
    """Text as the model reads it: stripped, lower case; ``None`` when it means unknown.

    >>> normalise_text(" SUV "), normalise_text("—"), normalise_text(None)
    ('suv', None, None)
    """
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return None if text in MISSING_TEXT else text


def segment_keys(make: object, model: object, year: object, body: object) -> dict[str, str | None]:
    """The key of each segment a car belongs to (``None`` where its fields are unknown).

    >>> segment_keys("Ford", " Escape", 2013, "SUV")  # doctest: +NORMALIZE_WHITESPACE
    {'all': 'all', 'body': 'body=suv', 'make': 'make=ford', 'mm': 'mm=ford|escape',
     'mmy': 'mmy=ford|escape|2012'}
    >>> segment_keys("Ford", "-", 2013, None)["mm"] is None
    True
    """
    mk, md, bd = normalise_text(make), normalise_text(model), normalise_text(body)
    band = _band(year)
    mm = f"mm={mk}|{md}" if mk and md else None
    return {
        "all": "all",
        "body": f"body={bd}" if bd else None,
        "make": f"make={mk}" if mk else None,
        "mm": mm,
        "mmy": f"mmy={mk}|{md}|{band}" if mm and band is not None else None,
    }


def _band(year: object) -> int | None:
    try:
        value = float(year)  # type: ignore[arg-type]  # anything; unreadable means unknown
    except (TypeError, ValueError):
        return None
    if not np.isfinite(value):
        return None
    whole = int(value)
    return whole - whole % YEAR_BAND


def segment_key_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """:func:`segment_keys` of every row of ``frame`` (columns make, model, year, body),
    one object array per kind."""
    columns = [_column(frame, c) for c in _KEY_COLUMNS]
    table = np.empty((len(frame), len(SEGMENT_KINDS)), dtype=object)
    table[:] = [_cached_keys(*row) for row in zip(*columns, strict=True)] or np.empty((0, 5))
    return {kind: table[:, i] for i, kind in enumerate(SEGMENT_KINDS)}


_KEY_COLUMNS = ("make", "model", "year", "body")


def _column(frame: pd.DataFrame, name: str) -> list[object]:
    """A column as Python values, None where missing (NaN would miss the key cache)."""
    if name not in frame:
        return [None] * len(frame)
    values = frame[name].to_numpy(dtype=object, copy=True)
    values[pd.isna(values)] = None
    listed: list[object] = values.tolist()
    return listed


@functools.lru_cache(maxsize=1 << 16)
def _cached_keys(make: object, model: object, year: object, body: object) -> tuple[str | None, ...]:
    # Serving batches repeat the same cars from batch to batch: keys are built once.
    keys = segment_keys(make, model, year, body)
    return tuple(keys[kind] for kind in SEGMENT_KINDS)


def _nanoseconds(times: Any) -> np.ndarray:
    if isinstance(times, pd.Series | pd.DatetimeIndex) and isinstance(
        times.dtype, pd.DatetimeTZDtype
    ):  # the usual case, and 30x faster than parsing it again
        aware: np.ndarray = times.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        return aware
    stamps = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    nanoseconds: np.ndarray = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return nanoseconds


def day_numbers(times: Any) -> np.ndarray:
    """UTC days since 1970-01-01 of datetimes (naive ones are UTC).

    >>> day_numbers(pd.to_datetime(["1970-01-02 23:59"], utc=True)).tolist()
    [1]
    """
    days: np.ndarray = _nanoseconds(times) // (DAY_SECONDS * 1_000_000_000)
    return days


def epoch_seconds(times: Any) -> np.ndarray:
    """Whole seconds since the epoch (UTC), as int64."""
    seconds: np.ndarray = _nanoseconds(times) // 1_000_000_000
    return seconds


def sale_contributions(sellingprice: Any, mmr: Any) -> np.ndarray:
    """What each sale adds to its segments' day aggregates: rows of
    (1, has mmr, clipped log ratio, robust log price), the last two in micro-units.

    >>> sale_contributions([9000.0, 500.0], [10000.0, float("nan")]).tolist()
    [[1, 1, -105361, 9104980], [1, 0, 0, 6214608]]
    """
    price = np.asarray(sellingprice, dtype=float).reshape(-1)
    estimate = np.asarray(mmr, dtype=float).reshape(-1)
    has_mmr = np.isfinite(estimate) & (estimate > 0)
    safe_mmr = np.where(has_mmr, estimate, 1.0)
    ratio = np.clip(np.log(price) - np.log(safe_mmr), -RATIO_CLIP, RATIO_CLIP)
    robust = np.where(has_mmr, np.log(safe_mmr) + ratio, np.clip(np.log(price), *LOG_PRICE_RANGE))
    out = np.empty((len(price), _SUMMED), dtype=np.int64)
    out[:, 0] = 1
    out[:, 1] = has_mmr
    out[:, 2] = np.where(has_mmr, _fixed(ratio), 0)
    out[:, 3] = _fixed(robust)
    return out


def _fixed(values: np.ndarray) -> np.ndarray:
    fixed: np.ndarray = np.rint(values * SCALE).astype(np.int64)
    return fixed


def valid_sales(sellingprice: Any) -> np.ndarray:
    """Which sales may enter the market: a finite, positive price."""
    price = np.asarray(sellingprice, dtype=float).reshape(-1)
    valid: np.ndarray = np.isfinite(price) & (price > 0)
    return valid


def window_sums(days: Mapping[int, np.ndarray], day: int) -> np.ndarray:
    """A segment's windows as of ``day`` (:data:`WINDOW_FIELDS`), from its day aggregates
    (``{day number: AGGREGATE_FIELDS vector}``); days on or after ``day`` are ignored.

    >>> one = np.array([2, 2, -100_000, 19_000_000, 1_000_000], dtype=np.int64)
    >>> window_sums({10: one}, 14)[:4].tolist(), window_sums({10: one}, 14)[4:8].tolist()
    ([0, 0, 0, 0], [2, 2, -100000, 19000000])
    >>> int(window_sums({10: one}, 10)[-1])  # the day itself never counts
    0
    """
    out = np.zeros(len(WINDOW_FIELDS), dtype=np.int64)
    for d, aggregate in days.items():
        age = day - d  # 1 = yesterday
        if not 1 <= age <= LOOKBACK_DAYS:
            continue
        for i, w in enumerate(WINDOWS):
            if age <= w:
                out[i * _SUMMED : (i + 1) * _SUMMED] += aggregate[:_SUMMED]
        out[-1] = max(out[-1], aggregate[-1])
    return out


def features_from_windows(windows: Mapping[str, np.ndarray], day: np.ndarray) -> pd.DataFrame:
    """The market features (:data:`MARKET_FEATURES`) of listings, from the as-of windows
    of their segments: ``windows[kind]`` has one :data:`WINDOW_FIELDS` row per listing
    (zeros where a listing has no such segment or it has no sales), ``day`` the listings'
    day numbers. Vectorised; the offline join and an online reader both end here.

    >>> row = np.zeros((1, len(WINDOW_FIELDS)), dtype=np.int64)
    >>> out = features_from_windows({k: row for k in SEGMENT_KINDS}, np.array([16500]))
    >>> float(out.loc[0, "mkt_all_n_3d"]), bool(np.isnan(out.loc[0, "mkt_ratio_hat"]))
    (0.0, True)
    """
    table = np.stack([np.asarray(windows[kind], dtype=np.int64) for kind in SEGMENT_KINDS])
    kinds, rows = table.shape[:2]
    sums = table[:, :, :-1].reshape(kinds, rows, len(WINDOWS), _SUMMED)
    day_start = np.asarray(day, dtype=np.int64) * DAY_SECONDS
    with np.errstate(invalid="ignore", divide="ignore"):
        per_window = np.stack(
            [
                sums[..., 0].astype(float),
                _mean(sums[..., 2], sums[..., 1]),
                _mean(sums[..., 3], sums[..., 0]),
            ],
            axis=-1,
        )  # kind, listing, window, (n, ratio, logp)
        last = table[:, :, -1]
        days_since = np.where(last > 0, (day_start - last) / DAY_SECONDS, np.nan)
        settled, recent = (
            _shrunk(windows, RATIO_CHAIN, w, 1, 2, RATIO_PRIOR_SALES) for w in RATIO_WINDOWS
        )
        move = np.nan_to_num(recent - settled, nan=0.0)
        ratio_hat = settled + np.sign(move) * np.maximum(np.abs(move) - RATIO_MOVE_THRESHOLD, 0.0)
        level_hat = _shrunk(windows, LEVEL_CHAIN, LEVEL_WINDOW, 0, 3, LEVEL_PRIOR_SALES)
    blocks = np.concatenate(
        [per_window.reshape(kinds, rows, -1), days_since[:, :, None]], axis=2
    )  # kind, listing, the kind's features in MARKET_FEATURES order
    values = np.concatenate(
        [blocks.transpose(1, 0, 2).reshape(rows, -1), ratio_hat[:, None], level_hat[:, None]],
        axis=1,
    )
    return pd.DataFrame(values, columns=list(MARKET_FEATURES))


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    mean: np.ndarray = np.where(count > 0, total / SCALE / np.maximum(count, 1), np.nan)
    return mean


def _shrunk(
    windows: Mapping[str, np.ndarray],
    kinds: Iterable[str],
    window: int,
    count_field: int,
    sum_field: int,
    prior_sales: float,
) -> np.ndarray:
    """Each level's mean in ``window`` shrunk towards the previous level's estimate; a
    level without sales passes its prior on."""
    offset = WINDOWS.index(window) * _SUMMED
    estimate: np.ndarray | None = None
    for kind in kinds:
        count = windows[kind][:, offset + count_field].astype(float)
        total = windows[kind][:, offset + sum_field] / SCALE
        own = np.where(count > 0, total / np.maximum(count, 1.0), np.nan)
        if estimate is None:
            estimate = own
        else:
            shrunk = (total + prior_sales * estimate) / (count + prior_sales)
            estimate = np.where(np.isnan(estimate), own, shrunk)
    assert estimate is not None
    return estimate


def reference_log_price(mmr: Any, ratio_hat: Any, level_hat: Any) -> np.ndarray:
    """The market's price for a listing, in log dollars: its mmr moved by what recent
    sales of its segment fetched relative to their mmr; without an mmr, the recent price
    level of its segment. NaN when neither is known.

    >>> np.round(np.exp(reference_log_price([10000.0, np.nan], [-0.1, -0.1], [9.0, 9.2])), 0)
    array([9048., 9897.])
    """
    estimate = np.asarray(mmr, dtype=float)
    has_mmr = np.isfinite(estimate) & (estimate > 0)
    ratio = np.nan_to_num(np.asarray(ratio_hat, dtype=float), nan=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        from_mmr = np.log(np.where(has_mmr, estimate, 1.0)) + ratio
    out: np.ndarray = np.where(has_mmr, from_mmr, np.asarray(level_hat, dtype=float))
    return out


# ---------------------------------------------------------------------------------------
# Offline: the vectorised as-of join


def _day_table(
    codes: np.ndarray, day: np.ndarray, contributions: np.ndarray, sold: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted packed (segment code, day) keys, prefix sums of their aggregates (with a
    leading zero row) and each key's latest sale."""
    packed = codes.astype(np.int64) * _BAND_KEY + day
    order = np.argsort(packed, kind="stable")
    packed, contributions, sold = packed[order], contributions[order], sold[order]
    keys, starts = np.unique(packed, return_index=True)
    sums = np.add.reduceat(contributions, starts, axis=0) if len(packed) else contributions
    latest = np.maximum.reduceat(sold, starts) if len(packed) else sold
    prefix = np.vstack([np.zeros((1, _SUMMED), dtype=np.int64), np.cumsum(sums, axis=0)])
    return keys, prefix, latest


def _as_of(
    keys: np.ndarray,
    prefix: np.ndarray,
    latest: np.ndarray,
    codes: np.ndarray,
    day: np.ndarray,
) -> np.ndarray:
    """:data:`WINDOW_FIELDS` rows for listings (segment code, or -1 for none; day)."""
    out = np.zeros((len(codes), len(WINDOW_FIELDS)), dtype=np.int64)
    known = codes >= 0
    if not known.any() or not len(keys):
        return out
    base = codes[known].astype(np.int64) * _BAND_KEY
    d = day[known]
    end = np.searchsorted(keys, base + d, side="left")  # first entry on or after the day
    for i, w in enumerate(WINDOWS):
        start = np.searchsorted(keys, base + d - w, side="left")
        out[known, i * _SUMMED : (i + 1) * _SUMMED] = prefix[end] - prefix[start]
    last = end - 1
    in_lookback = (last >= 0) & (keys[np.maximum(last, 0)] >= base + d - LOOKBACK_DAYS)
    out[known, -1] = np.where(in_lookback, latest[np.maximum(last, 0)], 0)
    return out


def market_features(
    listings: pd.DataFrame, sales: pd.DataFrame, sale_time: str = "sold_at"
) -> pd.DataFrame:
    """Each listing's :data:`MARKET_FEATURES` as of the start of its UTC day (index kept).

    ``listings`` needs ``listed_at``, ``make``, ``model``, ``year`` and ``body``;
    ``sales`` the same car columns, ``auction_id``, ``sellingprice``, ``mmr`` (NaN when
    unknown) and the sale time (``sale_time``). A sale counts once per auction id (the
    earliest), as the idempotent online update counts it; sales without a valid price
    never count.
    """
    sales = sales.loc[valid_sales(sales["sellingprice"].to_numpy(dtype=float))]
    sales = sales.sort_values(sale_time, kind="stable").drop_duplicates("auction_id")
    sale_keys = segment_key_columns(sales)
    sale_day = day_numbers(sales[sale_time])
    sold = epoch_seconds(sales[sale_time])
    contributions = sale_contributions(
        sales["sellingprice"].to_numpy(dtype=float), sales["mmr"].to_numpy(dtype=float)
    )
    listing_keys = segment_key_columns(listings)
    listing_day = day_numbers(listings["listed_at"])
    windows: dict[str, np.ndarray] = {}
    for kind in SEGMENT_KINDS:
        have = pd.notna(sale_keys[kind])
        names, sale_codes = np.unique(sale_keys[kind][have].astype(str), return_inverse=True)
        table = _day_table(sale_codes, sale_day[have], contributions[have], sold[have])
        wanted = listing_keys[kind]
        listing_codes = np.full(len(listings), -1, dtype=np.int64)
        present = pd.notna(wanted)
        if present.any() and len(names):
            position = np.searchsorted(names, wanted[present].astype(str))
            position = np.minimum(position, len(names) - 1)
            found = names[position] == wanted[present].astype(str)
            listing_codes[np.flatnonzero(present)[found]] = position[found]
        windows[kind] = _as_of(*table, listing_codes, listing_day)
    out = features_from_windows(windows, listing_day)
    out.index = listings.index
    return out


# ---------------------------------------------------------------------------------------
# Online: reading a batch, and the reference implementation of a store

Fetch = Callable[[Sequence[tuple[str, int]]], Sequence[np.ndarray | None]]
"""Given distinct (segment key, day number) pairs, their :data:`WINDOW_FIELDS` vectors as
of that day (None: the segment has no sale in the lookback), in the same order: in the
worker, one pipelined Redis read."""


def pack_windows(vector: np.ndarray) -> bytes:
    """A :data:`WINDOW_FIELDS` vector as stored online: little-endian int64s (136 bytes).

    >>> vector = np.arange(len(WINDOW_FIELDS), dtype=np.int64)
    >>> len(pack_windows(vector)), bool((unpack_windows(pack_windows(vector)) == vector).all())
    (136, True)
    """
    return np.asarray(vector, dtype="<i8").tobytes()


def unpack_windows(value: bytes | None) -> np.ndarray | None:
    """The vector of :func:`pack_windows` (None stays None: no sale in the lookback)."""
    if value is None:
        return None
    unpacked: np.ndarray = np.frombuffer(value, dtype="<i8").astype(np.int64)
    return unpacked


def read_market_features(listings: pd.DataFrame, fetch: Fetch) -> pd.DataFrame:
    """:data:`MARKET_FEATURES` of a batch of listings (listed_at, make, model, year, body),
    asking ``fetch`` once for the distinct (segment, day) pairs of the batch (index kept).

    >>> empty = read_market_features(pd.DataFrame({"listed_at": [pd.Timestamp(
    ...     "2015-03-02", tz="UTC")], "make": ["Kia"], "model": ["Rio"], "year": [2012],
    ...     "body": [None]}), lambda pairs: [None] * len(pairs))
    >>> float(empty.loc[0, "mkt_mm_n_30d"])
    0.0
    """
    keys = segment_key_columns(listings)
    day = day_numbers(listings["listed_at"])
    wanted: list[tuple[str, int]] = []
    positions: dict[str, np.ndarray] = {}
    for kind in SEGMENT_KINDS:
        position = np.zeros(len(listings), dtype=np.int64)  # 0: no such segment, zeros
        present = np.flatnonzero(pd.notna(keys[kind]))
        key_codes, key_names = pd.factorize(keys[kind][present])
        day_codes, day_values = pd.factorize(day[present])
        pairs, inverse = np.unique(key_codes * len(day_values) + day_codes, return_inverse=True)
        position[present] = len(wanted) + 1 + inverse
        wanted += zip(
            key_names[pairs // max(len(day_values), 1)].tolist(),
            day_values[pairs % max(len(day_values), 1)].tolist(),
            strict=True,
        )
        positions[kind] = position
    table = np.zeros((len(wanted) + 1, len(WINDOW_FIELDS)), dtype=np.int64)
    vectors = fetch(wanted)
    found = [i for i, vector in enumerate(vectors) if vector is not None]
    rows = [vector for vector in vectors if vector is not None]
    if rows:
        table[np.asarray(found) + 1] = np.concatenate(rows).reshape(len(rows), -1)
    out = features_from_windows({kind: table[positions[kind]] for kind in SEGMENT_KINDS}, day)
    out.index = listings.index
    return out


@dataclass
class MarketMemory:
    """Day aggregates updated one sale at a time, as an online feature job keeps them
    (in Redis: see the report of issue 12); a sale counts once per auction id.

    >>> memory = MarketMemory()
    >>> sold = pd.Timestamp("2015-03-02 15:00", tz="UTC")
    >>> memory.add_sale("a", sold, 9000.0, 10000.0, "Ford", "Fusion", 2012, "Sedan")
    True
    >>> memory.add_sale("a", sold, 9000.0, 10000.0, "Ford", "Fusion", 2012, "Sedan")
    False
    >>> listing = {"listed_at": pd.Timestamp("2015-03-03", tz="UTC"), "make": "Ford",
    ...            "model": "Fusion", "year": 2012, "body": "Sedan"}
    >>> memory.features([listing]).loc[0, "mkt_mm_n_3d"]
    np.float64(1.0)
    """

    days: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def add_sale(
        self,
        auction_id: str,
        sold_at: datetime | pd.Timestamp,
        sellingprice: float,
        mmr: float | None,
        make: object,
        model: object,
        year: object,
        body: object,
    ) -> bool:
        """Count a sale in its segments' day aggregates; False (and no change) when this
        auction was already counted or its price is not valid."""
        if auction_id in self.seen or not valid_sales([sellingprice])[0]:
            return False
        self.seen.add(auction_id)
        stamp = pd.DatetimeIndex([pd.Timestamp(sold_at)])
        day = int(day_numbers(stamp)[0])
        second = int(epoch_seconds(stamp)[0])
        contribution = sale_contributions([sellingprice], [np.nan if mmr is None else mmr])[0]
        for key in segment_keys(make, model, year, body).values():
            if key is None:
                continue
            aggregate = self.days.setdefault(key, {}).setdefault(
                day, np.zeros(len(AGGREGATE_FIELDS), dtype=np.int64)
            )
            aggregate[:_SUMMED] += contribution
            aggregate[-1] = max(int(aggregate[-1]), second)
        return True

    def windows(self, key: str, day: int) -> np.ndarray:
        """The segment's :data:`WINDOW_FIELDS` as of ``day`` (what a store materialises)."""
        return window_sums(self.days.get(key, {}), day)

    def features(self, listings: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """:data:`MARKET_FEATURES` of listings (mappings with listed_at, make, model,
        year, body), read as the worker would (:func:`read_market_features`)."""
        frame = pd.DataFrame(list(listings), columns=["listed_at", *_KEY_COLUMNS])
        frame["listed_at"] = pd.to_datetime(frame["listed_at"], utc=True)
        return read_market_features(frame, lambda pairs: [self.windows(*p) for p in pairs])
