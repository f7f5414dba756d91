"""The monitor's input records, parsed with their contract schemas (no Kafka here).

A record of ``prices.scored`` is a :class:`~gavel.schemas.ScoredPrice`, one of
``auctions.sold`` a :class:`~gavel.schemas.Sale`. A record that does not parse is
skipped with a :class:`SkipReason`, and so is one that parses but carries a value that
would poison the monitor's state: an event time that no auction can have (it would move
a watermark to year 9999, or overflow the join's horizon near year 1), or a price that
is not finite. A naive timestamp is read as UTC, as the contract says.

>>> from datetime import datetime, UTC
>>> now = datetime(2016, 1, 1, tzinfo=UTC)
>>> parse_sale(b'{"auction_id": "a", "sold_at": "2015-05-01T10:00:00", "sellingprice": 9e3}',
...            now).sold_at.tzinfo
datetime.timezone.utc
>>> parse_sale(b'{"auction_id": "a", "sold_at": "9999-12-31T00:00:00Z", "sellingprice": 1}',
...            now).reason
<SkipReason.EVENT_TIME: 'event_time'>
>>> parse_scored(b'{"auction_id": ', now).reason
<SkipReason.NOT_JSON: 'not_json'>
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from gavel.schemas import Sale, ScoredPrice

#: No auction event is older than this, or later than the reader's clock plus the slack.
EARLIEST_EVENT = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
#: Prices above this (dollars) are not cars at auction but broken records.
MAX_PRICE = 10_000_000.0


class SkipReason(StrEnum):
    """Why a record was skipped (the ``reason`` label of ``gavel_monitor_skipped_total``)."""

    EMPTY = "empty"  # no value at all (a tombstone)
    NOT_JSON = "not_json"  # not JSON, or not UTF-8
    SCHEMA = "schema"  # JSON that is not the contract's schema
    EVENT_TIME = "event_time"  # an event time outside [EARLIEST_EVENT, now + FUTURE_SLACK]
    VALUE = "value"  # a price that is not finite, not positive or implausibly large
    ERROR = "error"  # parsed, but processing it raised (a bug: logged with its traceback)


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: SkipReason
    detail: str


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


def plausible_time(event_time: datetime, now: datetime) -> bool:
    """Whether an (aware) event time can belong to an auction read at ``now``."""
    return EARLIEST_EVENT <= event_time <= now + FUTURE_SLACK


def plausible_price(price: float) -> bool:
    return math.isfinite(price) and 0 < price <= MAX_PRICE


_TIME_FIELDS = {"sold_at", "listed_at", "scored_at"}


def _invalid(exc: ValidationError) -> Skipped:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = SkipReason.NOT_JSON
    elif first["loc"] and first["loc"][-1] in _TIME_FIELDS and first["type"] == "value_error":
        reason = SkipReason.EVENT_TIME  # the contract's own range check refused the time
    else:
        reason = SkipReason.SCHEMA
    where = ".".join(str(part) for part in first["loc"])
    return Skipped(reason, f"{where}: {first['msg']}" if where else first["msg"])


def parse_scored(value: bytes | None, now: datetime) -> ScoredRow | Skipped:
    """A ``prices.scored`` record, or why it is skipped."""
    if not value:
        return Skipped(SkipReason.EMPTY, "no value")
    try:
        scored = ScoredPrice.model_validate_json(value)
    except ValidationError as exc:
        return _invalid(exc)
    except OverflowError as exc:  # an offset that pushes a time past year 1 or 9999
        return Skipped(SkipReason.EVENT_TIME, str(exc))
    for name in ("listed_at", "scored_at"):
        if not plausible_time(getattr(scored, name), now):
            return Skipped(SkipReason.EVENT_TIME, f"{name} {getattr(scored, name).isoformat()}")
    if not plausible_price(scored.predicted_price):
        return Skipped(SkipReason.VALUE, f"predicted_price {scored.predicted_price}")
    return ScoredRow(
        auction_id=scored.auction_id,
        listed_at=scored.listed_at,
        model_version=scored.model_version,
        predicted_price=scored.predicted_price,
        features=scored.features.model_dump(),
    )


def parse_sale(value: bytes | None, now: datetime) -> SaleRow | Skipped:
    """An ``auctions.sold`` record, or why it is skipped."""
    if not value:
        return Skipped(SkipReason.EMPTY, "no value")
    try:
        sale = Sale.model_validate_json(value)
    except ValidationError as exc:
        return _invalid(exc)
    except OverflowError as exc:
        return Skipped(SkipReason.EVENT_TIME, str(exc))
    if not plausible_time(sale.sold_at, now):
        return Skipped(SkipReason.EVENT_TIME, f"sold_at {sale.sold_at.isoformat()}")
    if not plausible_price(sale.sellingprice):
        return Skipped(SkipReason.VALUE, f"sellingprice {sale.sellingprice}")
    return SaleRow(sale.auction_id, sale.sold_at, sale.sellingprice)
