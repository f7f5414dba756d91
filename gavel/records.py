"""Reading Gavel's topics: every record parsed with its contract schema, or skipped with
a reason. The one reader of ``prices.scored`` and ``auctions.sold`` for every consumer.

A record is skipped when it has no value, is not JSON, is not a JSON object, fails the
schema, or parses but carries a value that would poison a consumer's state: an event
time no auction can have (it would move a watermark to year 9999, or overflow a
horizon near year 1), or a price that is not finite, positive and plausible. A naive
timestamp is read as UTC, as the contract says (:func:`gavel.times.as_utc`).

>>> from datetime import datetime, UTC
>>> now = datetime(2016, 1, 1, tzinfo=UTC)
>>> parse_sale(b'{"auction_id": "a", "sold_at": "2015-05-01T12:00+02:00", "sellingprice": 9e3}',
...            now).sold_at.isoformat()
'2015-05-01T10:00:00+00:00'
>>> parse_sale(b'{"auction_id": "a", "sold_at": "9999-12-31T00:00:00Z", "sellingprice": 1}',
...            now).reason
<SkipReason.EVENT_TIME: 'event_time'>
>>> parse_scored(b"[]", now).reason
<SkipReason.NOT_OBJECT: 'not_object'>
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gavel.schemas import Sale, ScoredPrice

#: No auction event is older than this, or later than the reader's clock plus the slack.
EARLIEST_EVENT = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
#: Prices above this (dollars) are not cars at auction but broken records.
MAX_PRICE = 10_000_000.0


class SkipReason(StrEnum):
    """Why a record was skipped (a metric label and a key of the skip counts)."""

    EMPTY = "empty"  # no value at all (a tombstone)
    NOT_JSON = "not_json"  # not JSON, or not UTF-8
    NOT_OBJECT = "not_object"  # JSON, but a number, list, string or null
    SCHEMA = "schema"  # an object that is not the contract's schema
    EVENT_TIME = "event_time"  # an event time outside [EARLIEST_EVENT, now + FUTURE_SLACK]
    VALUE = "value"  # a price that is not finite, not positive or implausibly large
    ERROR = "error"  # parsed, but the consumer raised processing it (a bug, logged)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record that is not a usable event, and why."""

    reason: SkipReason
    detail: str


def plausible_time(event_time: datetime, now: datetime) -> bool:
    """Whether an (aware) event time can belong to an auction read at ``now``."""
    return EARLIEST_EVENT <= event_time <= now + FUTURE_SLACK


def plausible_price(price: float) -> bool:
    return math.isfinite(price) and 0 < price <= MAX_PRICE


_TIME_FIELDS = {"sold_at", "listed_at", "scored_at", "ingested_at"}

Event = TypeVar("Event", bound=BaseModel)


def parse_record(raw: bytes | None, schema: type[Event]) -> Event | Skipped:
    """``raw`` as a ``schema`` event, or why not (no plausibility checks: see the
    topic readers below for those)."""
    if not raw:
        return Skipped(SkipReason.EMPTY, "no value")
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        return _invalid(exc)
    except OverflowError as exc:  # an offset that pushes a time past year 1 or 9999
        return Skipped(SkipReason.EVENT_TIME, str(exc))


def _invalid(exc: ValidationError) -> Skipped:
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = first["loc"]
    if first["type"] == "json_invalid":
        reason = SkipReason.NOT_JSON
    elif first["type"] == "model_type" and not loc:
        reason = SkipReason.NOT_OBJECT
    elif loc and loc[-1] in _TIME_FIELDS and first["type"] == "value_error":
        reason = SkipReason.EVENT_TIME  # the contract's own range check refused the time
    else:
        reason = SkipReason.SCHEMA
    where = ".".join(str(part) for part in loc)
    return Skipped(reason, f"{where}: {first['msg']}" if where else first["msg"])


def _implausible_time(name: str, moment: datetime, latest: datetime) -> Skipped | None:
    if EARLIEST_EVENT <= moment <= latest:
        return None
    return Skipped(SkipReason.EVENT_TIME, f"{name} {moment.isoformat()}")


def _implausible_price(name: str, price: float) -> Skipped | None:
    return None if plausible_price(price) else Skipped(SkipReason.VALUE, f"{name} {price}")


def parse_sale(raw: bytes | None, now: datetime) -> Sale | Skipped:
    """An ``auctions.sold`` record read at ``now``, or why it is skipped."""
    sale = parse_record(raw, Sale)
    if isinstance(sale, Skipped):
        return sale
    return (
        _implausible_time("sold_at", sale.sold_at, now + FUTURE_SLACK)
        or _implausible_price("sellingprice", sale.sellingprice)
        or sale
    )


def parse_scored(raw: bytes | None, now: datetime) -> ScoredPrice | Skipped:
    """A ``prices.scored`` record read at ``now``, or why it is skipped."""
    scored = parse_record(raw, ScoredPrice)
    if isinstance(scored, Skipped):
        return scored
    # Checked in this order, the first implausible value named (no dicts: a hot path).
    latest = now + FUTURE_SLACK
    return (
        _implausible_time("listed_at", scored.listed_at, latest)
        or _implausible_time("scored_at", scored.scored_at, latest)
        or _implausible_time("features.listed_at", scored.features.listed_at, latest)
        or _implausible_price("predicted_price", scored.predicted_price)
        or scored
    )


@dataclass
class Tally:
    """Records read from one topic, and the skipped ones by reason.

    >>> tally = Tally()
    >>> for outcome in ("an event", Skipped(SkipReason.EMPTY, "no value")):
    ...     tally.count(outcome)
    >>> tally.as_dict()
    {'read': 2, 'skipped': {'empty': 1}}
    """

    read: int = 0
    skipped: Counter[SkipReason] = field(default_factory=Counter)

    def count(self, outcome: object) -> None:
        self.read += 1
        if isinstance(outcome, Skipped):
            self.skipped[outcome.reason] += 1

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "skipped": {reason.value: n for reason, n in sorted(self.skipped.items())},
        }
