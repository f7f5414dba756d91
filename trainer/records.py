"""What the trainer reads, parsed with the contract schemas: an event, or a counted skip.

Each value of ``prices.scored`` and ``auctions.sold`` is parsed with
:class:`~gavel.schemas.ScoredPrice` or :class:`~gavel.schemas.Sale`. A value that is not
one (not JSON, not an object, failing the schema, a timestamp without a timezone or out
of range) comes back as a :class:`Skipped` with its reason, so that one bad record can
never stop a retraining, and every skip is counted.

>>> sale = parse_sale(b'{"auction_id": "a1", "sold_at": "2015-03-01T12:00+02:00", "sellingprice": 95e2}')
>>> sale.sold_at.isoformat(), sale.sellingprice
('2015-03-01T10:00:00+00:00', 9500.0)
>>> parse_sale(b"[]").reason
<SkipReason.NOT_OBJECT: 'not_object'>
>>> parse_sale(b'{"auction_id": "a1", "sold_at": "2015-03-01T10:00:00", "sellingprice": 1}').reason
<SkipReason.NAIVE_TIME: 'naive_time'>
"""  # noqa: E501

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import AfterValidator, AwareDatetime, BaseModel, ValidationError

from gavel.schemas import Listing, Sale, ScoredPrice

# Event times the trainer accepts. pandas holds nanosecond timestamps (years 1677-2262);
# anything outside these bounds is a corrupt record, not an auction.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class SkipReason(StrEnum):
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    SCHEMA = "schema"
    NAIVE_TIME = "naive_time"
    TIME_OUT_OF_RANGE = "time_out_of_range"


@dataclass(frozen=True)
class Skipped:
    """A value that is not a usable event, and why."""

    reason: SkipReason
    detail: str


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)  # may raise OverflowError near year 1 or 9999


# The trainer's reading of the contract: the same schemas, but a timestamp without a
# timezone is refused rather than assumed to be UTC (its true offset is unknown).
AwareUtc = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class _StrictListing(Listing):
    listed_at: AwareUtc


class _StrictScoredPrice(ScoredPrice):
    listed_at: AwareUtc
    scored_at: AwareUtc
    ingested_at: AwareUtc | None = None
    features: _StrictListing


class _StrictSale(Sale):
    sold_at: AwareUtc


Model = TypeVar("Model", bound=BaseModel)


def _parse(
    raw: bytes | None, schema: type[Model], times: Callable[[Model], list[datetime]]
) -> Model | Skipped:
    if not raw:
        return Skipped(SkipReason.NOT_JSON, "empty value")
    try:
        event = schema.model_validate_json(raw)  # the fast path, for the many good values
    except ValidationError:
        return _why(raw, schema)
    except (OverflowError, ValueError) as exc:  # raised by a validator, not wrapped by pydantic
        return Skipped(SkipReason.TIME_OUT_OF_RANGE, str(exc))
    for moment in times(event):
        if not EARLIEST <= moment < LATEST:
            return Skipped(SkipReason.TIME_OUT_OF_RANGE, f"{moment.isoformat()} is out of range")
    return event


def _why(raw: bytes, schema: type[BaseModel]) -> Skipped:
    """Why ``raw`` failed ``schema``, step by step."""
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Skipped(SkipReason.NOT_JSON, str(exc))
    if not isinstance(value, dict):
        return Skipped(SkipReason.NOT_OBJECT, f"a JSON {type(value).__name__}, not an object")
    try:
        schema.model_validate(value)
    except ValidationError as exc:
        naive = any(error["type"] == "timezone_aware" for error in exc.errors())
        reason = SkipReason.NAIVE_TIME if naive else SkipReason.SCHEMA
        return Skipped(reason, _short(exc))
    except (OverflowError, ValueError) as exc:
        return Skipped(SkipReason.TIME_OUT_OF_RANGE, str(exc))
    return Skipped(SkipReason.SCHEMA, "valid as an object but not as JSON text")


def _short(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{where}: {first['msg']} ({exc.error_count()} error(s))"


def parse_sale(raw: bytes | None) -> Sale | Skipped:
    """An ``auctions.sold`` value as a :class:`~gavel.schemas.Sale`, or why it is skipped."""
    return _parse(raw, _StrictSale, lambda sale: [sale.sold_at])


def parse_scored(raw: bytes | None) -> ScoredPrice | Skipped:
    """A ``prices.scored`` value as a :class:`~gavel.schemas.ScoredPrice`, or why not."""
    return _parse(raw, _StrictScoredPrice, lambda event: [event.features.listed_at])


@dataclass
class Tally:
    """Values read from one topic and the skipped ones by reason."""

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
