"""Frames and event payloads for the monitor tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from gavel.schemas import LISTING_FIELDS, Listing, Sale, ScoredPrice

REFERENCE_ROWS = 5000
MODEL_NAME = "gavel-test"
SALE_DELAY = timedelta(hours=2)


def with_prediction(frame: pd.DataFrame, factor: float = 1.0) -> pd.DataFrame:
    """Raw auctions priced by their MMR (times ``factor``), as a scored frame."""
    return frame.assign(prediction=frame["mmr"] * factor)


@dataclass(frozen=True)
class Event:
    """One message as the monitor reads it: a scored price or a sale."""

    at: datetime  # event time: listed_at or sold_at
    topic: str  # "scored" or "sold"
    payload: dict[str, Any]
    partition: int = 0


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


def scored_payload(row: dict[str, Any], version: str) -> dict[str, Any]:
    """The JSON value of a ScoredPrice for one row of a scored frame."""
    listing = Listing(**{name: _clean(row[name]) for name in LISTING_FIELDS})
    scored = ScoredPrice(
        auction_id=listing.auction_id,
        predicted_price=float(row["prediction"]),
        model_name=MODEL_NAME,
        model_version=version,
        listed_at=listing.listed_at,
        scored_at=listing.listed_at + timedelta(seconds=1),
        features=listing,
    )
    return scored.model_dump(mode="json")


def sale_payload(row: dict[str, Any], delay: timedelta = SALE_DELAY) -> dict[str, Any]:
    sale = Sale(
        auction_id=row["auction_id"],
        sold_at=row["listed_at"] + delay,
        sellingprice=float(row["sellingprice"]),
    )
    return sale.model_dump(mode="json")


def events(
    frame: pd.DataFrame,
    version: str | Any = "1",
    partitions: int = 1,
    delay: timedelta = SALE_DELAY,
) -> list[Event]:
    """Scored prices and sales of a scored frame in event-time order.

    ``version`` is a version string or a function of the row; rows go to partition
    ``row number % partitions`` on both topics.
    """
    out: list[Event] = []
    for number, row in enumerate(frame.to_dict("records")):
        partition = number % partitions
        row_version = version(row) if callable(version) else version
        listed_at = row["listed_at"].to_pydatetime()
        out.append(Event(listed_at, "scored", scored_payload(row, row_version), partition))
        out.append(Event(listed_at + delay, "sold", sale_payload(row, delay), partition))
    out.sort(key=lambda event: event.at)  # stable: a listing comes before its sale
    return out
