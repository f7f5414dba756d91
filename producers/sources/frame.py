"""The auction frame: what every source yields and every consumer of records reads."""

from __future__ import annotations

import pandas as pd

from gavel.features import TARGET
from gavel.schemas import LISTING_FIELDS

RECORD_COLUMNS: tuple[str, ...] = (*LISTING_FIELDS, TARGET)


class AuctionFrameError(ValueError):
    """A frame that does not follow the auction-frame contract."""


def check_auction_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with columns in contract order, or raise :class:`AuctionFrameError`."""
    missing = [c for c in RECORD_COLUMNS if c not in frame.columns]
    if missing:
        raise AuctionFrameError(f"auction frame lacks columns {missing}")
    if not isinstance(frame["listed_at"].dtype, pd.DatetimeTZDtype):
        raise AuctionFrameError("listed_at must be a timezone-aware (UTC) datetime column")
    if not frame["listed_at"].is_monotonic_increasing:
        raise AuctionFrameError("auction frame must be sorted by listed_at")
    return frame.loc[:, list(RECORD_COLUMNS)]
