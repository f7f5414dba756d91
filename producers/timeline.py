"""The replay timeline: listings and their sales, merged in event-time order.

A listing is sent at ``listed_at``; its sale at ``listed_at + sale_delay``. At equal
times a listing goes before a sale, so a sale never precedes its own listing.

>>> import pandas as pd
>>> frame = pd.DataFrame({"auction_id": ["a", "b"], "sellingprice": [1.0, 2.0],
...     "listed_at": pd.to_datetime(["2015-01-01 10:00", "2015-01-01 11:00"], utc=True)})
>>> timeline = build_timeline(frame, sale_delay=pd.Timedelta(hours=2))
>>> [(str(kind), int(row)) for kind, row in zip(timeline.kinds, timeline.rows)]
[('listing', 0), ('listing', 1), ('sale', 0), ('sale', 1)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from gavel.features import TARGET
from gavel.schemas import LISTING_FIELDS
from gavel.times import as_utc_timestamp

LISTING, SALE = 0, 1
_KIND_NAMES = np.array(["listing", "sale"])
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class Timeline:
    times_ns: np.ndarray  # int64 event times, ascending
    kind_codes: np.ndarray  # LISTING or SALE
    rows: np.ndarray  # row positions in the source frame

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def kinds(self) -> np.ndarray:
        names: np.ndarray = _KIND_NAMES[self.kind_codes]
        return names


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"2h"`` or ``"1.5d"`` as a timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"cannot read duration {text!r}; use e.g. 90s, 30m, 2h or 1d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def select(
    frame: pd.DataFrame,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Auctions listed in ``[start, end)``, the first ``limit`` of them."""
    times = frame["listed_at"]
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= times >= as_utc_timestamp(start)
    if end is not None:
        keep &= times < as_utc_timestamp(end)
    chosen = frame.loc[keep]
    return chosen.head(limit) if limit is not None else chosen


def build_timeline(
    frame: pd.DataFrame, sale_delay: timedelta | pd.Timedelta, with_sales: bool = True
) -> Timeline:
    listed = frame["listed_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    positions = np.arange(len(frame))
    if not with_sales:
        return Timeline(listed, np.full(len(frame), LISTING), positions)
    sold = listed + pd.Timedelta(sale_delay).value
    times = np.concatenate([listed, sold])
    kinds = np.concatenate([np.full(len(frame), LISTING), np.full(len(frame), SALE)])
    rows = np.concatenate([positions, positions])
    order = np.lexsort((rows, kinds, times))
    return Timeline(times[order], kinds[order], rows[order])


def listing_payloads(frame: pd.DataFrame) -> list[str]:
    """One JSON ``Listing`` per row (NaN becomes null), rendered in bulk."""
    return _json_lines(frame.loc[:, list(LISTING_FIELDS)])


def sale_payloads(frame: pd.DataFrame, sale_delay: timedelta | pd.Timedelta) -> list[str]:
    sales = pd.DataFrame(
        {
            "auction_id": frame["auction_id"].to_numpy(),
            "sold_at": frame["listed_at"] + pd.Timedelta(sale_delay),
            "sellingprice": frame[TARGET].astype(float).to_numpy(),
        }
    )
    return _json_lines(sales)


def _json_lines(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    text = frame.to_json(orient="records", lines=True, date_format="iso", date_unit="ms")
    return text.rstrip("\n").split("\n")
