"""The demo's numbers: what was served, how good it was before, during and after the drift,
and what the first model would have done had nobody retrained it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gavel.price_errors import absolute_percentage_errors, mape
from gavel.schemas import ScoredPrice


def served_frame(auctions: pd.DataFrame, scored: list[ScoredPrice]) -> pd.DataFrame:
    """One row per priced listing: features, sale price, served price and version, and the
    wall-clock second it was scored."""
    served = pd.DataFrame(
        {
            "auction_id": [e.auction_id for e in scored],
            "price": [e.predicted_price for e in scored],
            "version": [e.model_version for e in scored],
            "scored_s": [e.scored_at.timestamp() for e in scored],
        }
    ).drop_duplicates("auction_id", keep="last")
    return auctions.merge(served, on="auction_id", how="inner").sort_values("scored_s")


@dataclass(frozen=True)
class Phases:
    before: float
    during: float
    after: float
    frozen_after: float
    rows_after: int

    def table_rows(self) -> list[tuple[str, str, str]]:
        return [
            ("before the shock", f"{self.before:.1%}", f"{self.before:.1%}"),
            ("during (first model)", f"{self.during:.1%}", f"{self.during:.1%}"),
            ("after the promotion", f"{self.after:.1%}", f"{self.frozen_after:.1%}"),
        ]


def phases(served: pd.DataFrame, onset: pd.Timestamp, first: str, frozen: np.ndarray) -> Phases:
    """MAPE before the onset, after it while the first model served, and after the swap —
    with ``frozen`` (the first model's prices for every row) on the same rows."""
    before = served["listed_at"] < onset
    during = ~before & (served["version"] == first)
    after = served["version"] != first
    y = served["sellingprice"]
    return Phases(
        before=mape(y[before], served["price"][before]),
        during=mape(y[during], served["price"][during]),
        after=mape(y[after], served["price"][after]),
        frozen_after=mape(y[after], frozen[after.to_numpy()]),
        rows_after=int(after.sum()),
    )


def rolling_mape(actual: pd.Series, predicted: np.ndarray | pd.Series, window: int) -> np.ndarray:
    errors = pd.Series(
        absolute_percentage_errors(np.asarray(actual, float), np.asarray(predicted, float))
    )
    return errors.rolling(window, min_periods=window // 2).mean().to_numpy()
