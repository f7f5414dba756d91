"""Prediction intervals: split conformal on log-price residuals, one pair of quantiles per
group of listings (Mondrian), so that the worker needs a table lookup and two
multiplications per listing.

Calibrated on the validation period, the listings as they were and again without their
mmr, without their condition and without both, so every group is calibrated even when the
validation period has no such listing.

>>> residuals = np.linspace(-0.5, 0.5, 101)
>>> intervals = ConformalIntervals.fit(residuals, np.full(101, "mmr"), level=0.8)
>>> [round(q, 2) for q in intervals.quantiles["mmr"]]  # a little wider than 10%..90%
[-0.41, 0.41]
>>> low, high = intervals.bounds(np.log([10_000.0]), np.array(["mmr"]))
>>> round(float(low[0])), round(float(high[0]))
(6637, 15068)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gavel.features import TARGET
from shell.price_model import INTERVAL_GROUPS, interval_bounds, interval_group

GROUPS: tuple[str, ...] = INTERVAL_GROUPS
DEFAULT_LEVEL = 0.8


def interval_groups(frame: pd.DataFrame) -> np.ndarray:
    """Each listing's group: ``mmr`` or ``no_mmr``, and ``_no_condition`` without one.

    >>> interval_groups(pd.DataFrame({"mmr": [9000.0, None], "condition": [None, 3.5]})).tolist()
    ['mmr_no_condition', 'no_mmr']
    """
    return interval_group(
        pd.to_numeric(frame["mmr"]).notna().to_numpy(),
        pd.to_numeric(frame["condition"]).notna().to_numpy(),
    )


@dataclass(frozen=True)
class ConformalIntervals:
    """Residual quantiles (log price) per group at a nominal ``level``; the interval of a
    price is ``price * exp(quantile)``."""

    level: float
    quantiles: Mapping[str, tuple[float, float]]
    counts: Mapping[str, int]

    @classmethod
    def fit(
        cls, residuals: np.ndarray, groups: np.ndarray, level: float = DEFAULT_LEVEL
    ) -> ConformalIntervals:
        """Split-conformal quantiles: in a group of n residuals, the
        floor((n+1)a/2)-th and ceil((n+1)(1-a/2))-th smallest, a = 1 - level."""
        residuals, groups = np.asarray(residuals, float), np.asarray(groups, object)
        tail = (1.0 - level) / 2
        quantiles: dict[str, tuple[float, float]] = {}
        counts: dict[str, int] = {}
        for name in sorted(set(groups.tolist())):
            values = np.sort(residuals[groups == name])
            n = len(values)
            low = max(int(np.floor((n + 1) * tail)), 1) - 1
            high = min(int(np.ceil((n + 1) * (1 - tail))), n) - 1
            quantiles[name] = (float(values[low]), float(values[high]))
            counts[name] = n
        return cls(level, quantiles, counts)

    def bounds(self, log_price: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper prices; NaN for a group that was never calibrated."""
        return interval_bounds(self.to_json(), log_price, groups)

    def to_json(self) -> dict[str, Any]:
        """What the worker needs (and a version tag can carry): level, quantiles, counts."""
        return {
            "level": self.level,
            "log_residual_quantiles": {
                k: [round(q, 6) for q in v] for k, v in self.quantiles.items()
            },
            "counts": dict(self.counts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConformalIntervals:
        quantiles = {
            k: (float(v[0]), float(v[1])) for k, v in data["log_residual_quantiles"].items()
        }
        return cls(float(data["level"]), quantiles, dict(data.get("counts", {})))


def degraded(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """``frame`` as it is, without mmr, without condition, without both."""
    return [
        frame,
        frame.assign(mmr=np.nan),
        frame.assign(condition=np.nan),
        frame.assign(mmr=np.nan, condition=np.nan),
    ]


def calibrate(
    predict_log: Callable[[pd.DataFrame], np.ndarray],
    validation: pd.DataFrame,
    level: float = DEFAULT_LEVEL,
) -> ConformalIntervals:
    """Intervals from the residuals of ``predict_log`` on the validation rows (with their
    ``sellingprice``) and their degraded copies (:func:`degraded`)."""
    residuals, groups = [], []
    for frame in degraded(validation):
        residuals.append(np.log(frame[TARGET].to_numpy(float)) - predict_log(frame))
        groups.append(interval_groups(frame))
    return ConformalIntervals.fit(np.concatenate(residuals), np.concatenate(groups), level)
