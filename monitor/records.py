"""The monitor's input records: the contract's reader (:mod:`gavel.records`), reduced
to what the monitor keeps of each event.

>>> from datetime import datetime, UTC
>>> now = datetime(2016, 1, 1, tzinfo=UTC)
>>> parse_sale(b'{"auction_id": "a", "sold_at": "2015-05-01T10:00:00", "sellingprice": 9e3}',
...            now).sold_at.tzinfo
datetime.timezone.utc
>>> parse_scored(b'{"auction_id": ', now).reason
<SkipReason.NOT_JSON: 'not_json'>
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gavel import records
from gavel.records import Skipped, SkipReason

__all__ = ["SaleRow", "ScoredRow", "SkipReason", "Skipped", "parse_sale", "parse_scored"]


@dataclass(frozen=True, slots=True)
class ScoredRow:
    """What the monitor keeps of a scored price."""

    auction_id: str
    listed_at: datetime
    model_version: str
    predicted_price: float
    features: dict[str, Any]  # the listing's fields, as gavel.features.derive_features reads them


@dataclass(frozen=True, slots=True)
class SaleRow:
    auction_id: str
    sold_at: datetime
    price: float


def parse_scored(value: bytes | None, now: datetime) -> ScoredRow | Skipped:
    """A ``prices.scored`` record, or why it is skipped."""
    scored = records.parse_scored(value, now)
    if isinstance(scored, Skipped):
        return scored
    return ScoredRow(
        auction_id=scored.auction_id,
        listed_at=scored.listed_at,
        model_version=scored.model_version,
        predicted_price=scored.predicted_price,
        features=scored.features.model_dump(),
    )


def parse_sale(value: bytes | None, now: datetime) -> SaleRow | Skipped:
    """An ``auctions.sold`` record, or why it is skipped."""
    sale = records.parse_sale(value, now)
    if isinstance(sale, Skipped):
        return sale
    return SaleRow(sale.auction_id, sale.sold_at, sale.sellingprice)
