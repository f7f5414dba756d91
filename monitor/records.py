"""The monitor's input records: the contract's reader (:mod:`gavel.records`), reduced
to what the monitor keeps of each event.

Rows are named tuples: the monitor makes one per record (tens of thousands a second),
and a tuple is the cheapest immutable object to build, hold and pickle in a checkpoint.
A scored row keeps every field of its listing, in :data:`LISTING_FIELDS` order, so
that any feature (or segment) can be read back from it.

>>> from datetime import datetime, UTC
>>> now = datetime(2016, 1, 1, tzinfo=UTC)
>>> parse_sale(b'{"auction_id": "a", "sold_at": "2015-05-01T10:00:00", "sellingprice": 9e3}',
...            now).sold_at.tzinfo
datetime.timezone.utc
>>> parse_scored(b'{"auction_id": ', now).reason
<SkipReason.NOT_JSON: 'not_json'>
"""

from __future__ import annotations

import operator
from datetime import datetime
from typing import Any, NamedTuple

from gavel import records
from gavel.records import Skipped, SkipReason
from gavel.schemas import LISTING_FIELDS

__all__ = [
    "LISTING_FIELDS",
    "SaleRow",
    "ScoredRow",
    "SkipReason",
    "Skipped",
    "parse_sale",
    "parse_scored",
]

_listing_values = operator.attrgetter(*LISTING_FIELDS)


class ScoredRow(NamedTuple):
    """What the monitor keeps of a scored price."""

    auction_id: str
    listed_at: datetime
    model_version: str
    predicted_price: float
    listing: tuple[Any, ...]  # the listing's fields, in LISTING_FIELDS order

    @property
    def features(self) -> dict[str, Any]:
        """The listing's fields by name, as :func:`gavel.features.derive_features` reads them."""
        return dict(zip(LISTING_FIELDS, self.listing, strict=True))


class SaleRow(NamedTuple):
    auction_id: str
    sold_at: datetime
    price: float


def parse_scored(value: bytes | None, now: datetime) -> ScoredRow | Skipped:
    """A ``prices.scored`` record, or why it is skipped."""
    scored = records.parse_scored(value, now)
    if isinstance(scored, Skipped):
        return scored
    return ScoredRow(
        scored.auction_id,
        scored.listed_at,
        scored.model_version,
        scored.predicted_price,
        _listing_values(scored.features),
    )


def parse_sale(value: bytes | None, now: datetime) -> SaleRow | Skipped:
    """An ``auctions.sold`` record, or why it is skipped."""
    sale = records.parse_sale(value, now)
    if isinstance(sale, Skipped):
        return sale
    return SaleRow(sale.auction_id, sale.sold_at, sale.sellingprice)
