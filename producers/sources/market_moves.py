"""Market movements for the synthetic generator: segment price levels that wander over
time, and an MMR that follows them late.

The story: each segment's log price level ``m`` (the whole market, each body style, each
make) is a random walk in calendar days; the MMR sees an exponential moving average
``e`` of it, catching up on a share ``1 - follow`` of the gap each day. A car's log price
moves by the sum of its segments' ``m``, its log MMR by the sum of their ``e``, so
log(price / mmr) of a segment drifts by ``m - e``: a stationary AR(1) with coefficient
``follow`` and innovations ``follow * step``.

Calibration (:func:`fit_market_moves`) reads real auctions as aggregates only: the
month-to-month change of each segment's monthly mean clipped log(sellingprice / mmr), with
the sampling noise of the means subtracted, gives each level's variance; the whole
market's week-to-week change (of weekly means) against its month-to-month change gives
``follow`` (:func:`mean_change_factor`).

>>> moves = MarketMoves(follow=0.95, daily_sd={"all": 0.005, "body": 0.004, "make": 0.0})
>>> rng = np.random.default_rng(0)
>>> price, mmr = moves.paths(rng, days=200, components=3)
>>> price.shape, bool(np.allclose(price[0], 0.0)), bool(np.allclose(mmr[0], 0.0))
((200, 3), True, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

LEVELS: tuple[str, ...] = ("all", "body", "make")
RATIO_CLIP = 0.5
MIN_SEGMENT_ROWS = 20
"""Rows a segment needs in both months of a pair to count."""
MIN_WEEK_ROWS = 100
MONTH_DAYS = 30.0
WEEK_DAYS = 7.0
FOLLOW_RANGE: tuple[float, float] = (0.80, 0.995)
"""Bounds of ``follow``: the MMR closes between 0.5% and 20% of its gap a day."""
BURN_IN_DAYS = 120
"""Days simulated before the first generated day, so the ratio is already stationary."""


@dataclass(frozen=True)
class MarketMoves:
    """How segment price levels move (``daily_sd`` per level) and how late the MMR
    follows them (``follow``: the share of yesterday's gap it still lags by)."""

    follow: float
    daily_sd: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MarketMoves:
        return cls(
            follow=float(data["follow_per_day"]),
            daily_sd={level: float(data["daily_sd"].get(level, 0.0)) for level in LEVELS},
        )

    def paths(
        self, rng: np.random.Generator, days: int, components: int, sd: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log price levels and the MMR's view of them, ``(days, components)`` each. The
        price level is zero on day 0, after :data:`BURN_IN_DAYS` of history that is
        dropped; the MMR then lags it by whatever gap that history left.

        ``sd`` gives each component its daily step (default: all the ``all`` level's).
        """
        steps = np.full(components, self.daily_sd.get("all", 0.0)) if sd is None else sd
        total = days + BURN_IN_DAYS
        walk = np.cumsum(rng.standard_normal((total, components)) * steps, axis=0)
        seen = np.empty_like(walk)
        seen[0] = walk[0]
        catch_up = 1.0 - self.follow
        for day in range(1, total):  # a few hundred days: the loop is cheap
            seen[day] = seen[day - 1] + catch_up * (walk[day] - seen[day - 1])
        # Day 0 (the first generated day) is the calibrated level, for price and MMR alike;
        # the ratio keeps its burnt-in value.
        start = walk[BURN_IN_DAYS]
        return walk[BURN_IN_DAYS:] - start, seen[BURN_IN_DAYS:] - start


def segment_drift(
    moves: MarketMoves,
    rng: np.random.Generator,
    day: np.ndarray,
    segments: Mapping[str, tuple[Sequence[str | None], Sequence[str]]],
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Log moves of each row's sale price and MMR on its ``day`` (0 = the first): the sum
    of the whole market's path and of its segments' paths.

    ``segments`` maps a level (``body``, ``make``) to each row's value (lower case, None
    when unknown) and every value the level knows, in a fixed order: each known value has
    its own path, the same whatever the rows; an unknown value moves with the market only.
    The paths are drawn day by day, so a longer frame extends them without changing them.
    """
    levels = [level for level in LEVELS if level != "all" and level in segments]
    names = {level: list(segments[level][1]) for level in levels}
    steps = [moves.daily_sd.get("all", 0.0)]
    first: dict[str, int] = {}
    for level in levels:
        first[level] = len(steps)
        steps += [moves.daily_sd.get(level, 0.0)] * len(names[level])
    price, mmr = moves.paths(rng, int(day.max()) + 1 if len(day) else 1, len(steps),
                             np.asarray(steps) * scale)  # fmt: skip
    price_move, mmr_move = price[day, 0].copy(), mmr[day, 0].copy()
    for level in levels:
        values, _ = segments[level]
        lookup = {name: first[level] + i for i, name in enumerate(names[level])}
        column = np.asarray([lookup.get(v, -1) if isinstance(v, str) else -1 for v in values])
        known = column >= 0
        price_move[known] += price[day[known], column[known]]
        mmr_move[known] += mmr[day[known], column[known]]
    return price_move, mmr_move


def _clipped_log_ratio(frame: pd.DataFrame) -> np.ndarray:
    ratio = np.log(frame["sellingprice"].to_numpy(float) / frame["mmr"].to_numpy(float))
    clipped: np.ndarray = np.clip(ratio, -RATIO_CLIP, RATIO_CLIP)
    return clipped


def change_variance(
    frame: pd.DataFrame, segment: str | None, period: str, min_rows: int
) -> tuple[float, int]:
    """Mean squared change of segments' mean clipped log ratio between consecutive
    periods, minus the sampling noise of the means; and how many changes were seen.

    ``frame`` has ``sold_at``, ``sellingprice``, ``mmr`` and the ``segment`` column
    (``None``: the whole market is one segment); ``period`` a pandas period code.
    """
    rows = frame.dropna(subset=["mmr", "sellingprice"])
    rows = rows.assign(
        ratio=_clipped_log_ratio(rows),
        period=rows["sold_at"].dt.tz_convert(None).dt.to_period(period),
        segment="*" if segment is None else rows[segment],
    ).dropna(subset=["segment"])
    stats = rows.groupby(["segment", "period"])["ratio"].agg(["mean", "var", "size"])
    stats = stats[stats["size"] >= min_rows].reset_index()
    later = stats.assign(period=stats["period"] - 1)  # align each period with the one before
    pairs = stats.merge(later, on=["segment", "period"], suffixes=("_a", "_b"))
    if pairs.empty:
        return 0.0, 0
    change = pairs["mean_b"] - pairs["mean_a"]
    noise = pairs["var_a"] / pairs["size_a"] + pairs["var_b"] / pairs["size_b"]
    return float(max((change**2 - noise).mean(), 0.0)), len(pairs)


def mean_change_factor(follow: float, days: float) -> float:
    """Variance of the change between two consecutive ``days``-long means of the ratio, per
    unit of daily step variance: the ratio is an AR(1) with coefficient ``follow`` and
    innovations ``follow * step``, so its autocovariance is ``follow**(2 + |h|) / (1 -
    follow**2)`` per unit.

    >>> round(mean_change_factor(0.999, 30) / 30, 2)  # nearly a random walk: about 2/3
    0.65
    """
    n = round(days)
    lag = np.arange(n)[:, None] - np.arange(n)[None, :]
    unit = follow**2 / (1 - follow**2)
    same = float(np.mean(unit * follow ** np.abs(lag)))
    across = float(np.mean(unit * follow ** np.abs(lag + n)))
    return 2 * (same - across)


def follow_from(weekly: float, monthly: float) -> float:
    """``follow`` such that the ratio's week-to-week change of weekly means has this
    variance relative to its month-to-month change of monthly means, within
    :data:`FOLLOW_RANGE`.

    >>> round(follow_from(mean_change_factor(0.95, 7), mean_change_factor(0.95, 30)), 3)
    0.95
    """
    low, high = FOLLOW_RANGE
    if monthly <= 0:
        return high  # nothing moves month to month: how late the MMR follows is moot
    target = weekly / monthly

    def share(rho: float) -> float:
        return mean_change_factor(rho, WEEK_DAYS) / mean_change_factor(rho, MONTH_DAYS)

    if target >= share(low):
        return low
    if target <= share(high):
        return high
    for _ in range(60):  # share() falls as rho rises: bisect
        middle = (low + high) / 2
        low, high = (middle, high) if share(middle) > target else (low, middle)
    return (low + high) / 2


def daily_step_sd(monthly_change_variance: float, follow: float) -> float:
    """The random walk's daily step sd that gives the ratio's monthly means this
    month-to-month change variance (see :func:`mean_change_factor`)."""
    q = monthly_change_variance / mean_change_factor(follow, MONTH_DAYS)
    return float(np.sqrt(max(q, 0.0)))


def fit_market_moves(clean: pd.DataFrame) -> dict[str, Any]:
    """The ``market`` section of the calibration, from cleaned auctions (aggregates only)."""
    monthly = {
        "all": change_variance(clean, None, "M", MIN_SEGMENT_ROWS),
        "body": change_variance(clean, "body", "M", MIN_SEGMENT_ROWS),
        "make": change_variance(clean, "make", "M", MIN_SEGMENT_ROWS),
    }
    weekly, weekly_pairs = change_variance(clean, None, "W", MIN_WEEK_ROWS)
    follow = follow_from(weekly, monthly["all"][0])
    # A body's (make's) mean moves with the whole market and with its own level.
    own = {
        "all": monthly["all"][0],
        "body": max(monthly["body"][0] - monthly["all"][0], 0.0),
        "make": max(monthly["make"][0] - monthly["all"][0], 0.0),
    }
    return {
        "ratio_clip": RATIO_CLIP,
        "monthly_change_var": {k: round(v, 6) for k, (v, _) in monthly.items()},
        "monthly_changes_seen": {k: n for k, (_, n) in monthly.items()},
        "weekly_change_var_all": round(weekly, 6),
        "weekly_changes_seen": weekly_pairs,
        "follow_per_day": round(follow, 4),
        "daily_sd": {k: round(daily_step_sd(v, follow), 5) for k, v in own.items()},
    }
