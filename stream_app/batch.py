"""Scoring one micro-batch: validate each event, price the valid ones together, and turn
every failure into a dead letter. Pure logic; the Faust agent only moves bytes.

Every stage is isolated per event: reading the payload, validation, feature derivation
and prediction (a failing batch call is retried row by row), and serialisation. One bad
event costs that event alone, never its batch, and :func:`score_batch` never raises:

>>> class Flat:
...     name, version = "m", "1"
...     def predict(self, listings):
...         return [10_000.0] * len(listings)
>>> good = (b'{"auction_id": "a1", "listed_at": "2015-01-05T10:00:00Z", "year": 2012,'
...         b' "make": "Ford", "model": "Fusion"}')
>>> events = [IncomingEvent(b"a1", good, "auctions.listed", 0, 0),
...           IncomingEvent(None, b"\\xff{", "auctions.listed", 0, 1, timestamp_s=1e300)]
>>> result = score_batch(events, Flat())
>>> len(result.scored), dict(result.reasons)
(1, {'not_json': 1})
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import numpy as np

from gavel.features import OPTIONAL_INPUTS
from gavel.schemas import DeadLetter, DeadLetterReason, Listing, utc_now
from stream_app.market_reader import BatchMarket, MarketReader
from stream_app.scored import BatchFields, Extras, scored_json
from stream_app.scorer import Priced
from stream_app.validation import Invalid, parse_listing

log = logging.getLogger(__name__)

DEFAULT_MAX_LISTING_BYTES = 65_536
DEFAULT_DEADLETTER_PAYLOAD_BYTES = 8192


class BatchModel(Protocol):
    """What scoring needs of a model. One that also has ``price(listings, market)`` (a
    :class:`stream_app.model.LoadedModel`) gives intervals and reads market features."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def source(self) -> str: ...

    def predict(self, listings: Sequence[Listing]) -> np.ndarray: ...


@dataclass(frozen=True)
class PricedRow:
    """One listing's price and interval (None when the model has none)."""

    price: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class IncomingEvent:
    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_s: float | None = None


SCORED = "scored"


@dataclass(frozen=True)
class Output:
    """One record to produce: a score, or a dead letter whose ``outcome`` is its reason.

    ``source`` lets the producer replace it with a smaller dead letter when the broker
    refuses it for good (too large, or another permanent error).
    """

    key: bytes | None
    value: bytes
    source: IncomingEvent | None = None
    outcome: str = SCORED


@dataclass(frozen=True)
class Limits:
    """Size bounds on what the worker reads and writes back."""

    max_listing_bytes: int = DEFAULT_MAX_LISTING_BYTES
    deadletter_payload_bytes: int = DEFAULT_DEADLETTER_PAYLOAD_BYTES


@dataclass
class BatchResult:
    scored: list[Output] = field(default_factory=list)
    dead_letters: list[Output] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    market: BatchMarket | None = None  # what the store gave the batch, for the metrics

    def reject(self, event: IncomingEvent, invalid: Invalid, limits: Limits) -> None:
        self.dead_letters.append(dead_letter(event, invalid, limits.deadletter_payload_bytes))
        self.reasons[invalid.reason.value] += 1


def broker_time(seconds: float | None) -> datetime | None:
    """A Kafka timestamp as a datetime, or None for any value no datetime can hold.

    >>> broker_time(1e300) is None, broker_time(-1.0) is None, broker_time(0.0).year
    (True, True, 1970)
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def dead_letter(
    event: IncomingEvent,
    invalid: Invalid,
    max_payload_bytes: int = DEFAULT_DEADLETTER_PAYLOAD_BYTES,
) -> Output:
    """The dead letter of ``event``: reason, source position, and the raw payload cut to
    ``max_payload_bytes`` (its full size and sha256 are kept), so it always fits."""
    raw = event.value or b""
    kept = raw[:max_payload_bytes]
    letter = DeadLetter(
        reason=invalid.reason,
        detail=invalid.detail[:2000],
        errors=invalid.errors[:20],
        source_topic=event.topic,
        partition=event.partition,
        offset=event.offset,
        key=event.key[:256].decode("utf-8", "replace") if event.key else None,
        raw_payload=kept.decode("utf-8", "replace"),
        payload_bytes=len(raw),
        payload_sha256=hashlib.sha256(raw).hexdigest(),
        payload_truncated=len(kept) < len(raw),
    )
    return Output(event.key, letter.to_json_bytes(), source=event, outcome=invalid.reason.value)


def _failure(exc: BaseException) -> Invalid:
    return Invalid(DeadLetterReason.SCORING_FAILED, f"{type(exc).__name__}: {exc}"[:500])


def parse_event(event: IncomingEvent, limits: Limits) -> Listing | Invalid:
    """The listing in ``event``, or why there is none. Never raises."""
    size = len(event.value or b"")
    if size > limits.max_listing_bytes:
        return Invalid(
            DeadLetterReason.PAYLOAD_TOO_LARGE,
            f"payload of {size} bytes exceeds the {limits.max_listing_bytes}-byte limit",
        )
    try:
        return parse_listing(event.value)
    except Exception as exc:  # a validator bug must cost one event, not the batch
        log.warning("unexpected %s parsing offset %d", type(exc).__name__, event.offset)
        return Invalid(DeadLetterReason.SCHEMA, f"{type(exc).__name__}: {exc}"[:500])


def _price(model: BatchModel, listings: Sequence[Listing], market: BatchMarket) -> Priced:
    price = getattr(model, "price", None)
    if price is None:
        return Priced(np.asarray(model.predict(listings), dtype=float))
    priced: Priced = price(listings, market.columns)
    return priced


def _rows(priced: Priced, count: int) -> list[PricedRow] | None:
    """The batch's rows, or None when any price is missing, not finite or not positive."""
    prices = np.asarray(priced.price, dtype=float)
    if len(prices) != count or not (np.isfinite(prices).all() and (prices > 0).all()):
        return None
    if priced.low is None or priced.high is None:
        return [PricedRow(price) for price in prices.tolist()]
    lows = [low if math.isfinite(low) else None for low in np.asarray(priced.low).tolist()]
    highs = [high if math.isfinite(high) else None for high in np.asarray(priced.high).tolist()]
    return [PricedRow(*row) for row in zip(prices.tolist(), lows, highs, strict=True)]


def predict_isolating_failures(
    model: BatchModel, listings: Sequence[Listing], market: BatchMarket | None = None
) -> list[PricedRow | Invalid]:
    """Batch prices; if the batch call fails, price row by row so one bad row costs one row."""
    if not listings:
        return []
    market = market or BatchMarket("off")
    try:
        rows = _rows(_price(model, listings, market), len(listings))
        if rows is not None:
            return list(rows)
    except Exception as exc:
        log.warning("batch of %d failed to score (%s); isolating rows", len(listings), exc)
    results: list[PricedRow | Invalid] = []
    for index, listing in enumerate(listings):
        try:
            priced = _price(model, [listing], market.rows([index]))
            one = _rows(priced, 1)
            results.append(one[0] if one is not None else _not_a_price(priced.price))
        except Exception as exc:
            results.append(_failure(exc))
    return results


def _not_a_price(prices: np.ndarray) -> Invalid:
    got = np.asarray(prices, dtype=float).reshape(-1).tolist()
    shown = got[0] if len(got) == 1 else got
    return Invalid(DeadLetterReason.SCORING_FAILED, f"model returned price {shown!r}"[:500])


def market_used(market: BatchMarket, inputs: Sequence[str], index: int) -> dict[str, object] | None:
    """The ``market`` field of one output: the features the model read and their day."""
    if not inputs or market.source == "off":
        return None
    if market.source == "unavailable" or market.columns is None or market.as_of is None:
        return {"source": "unavailable", "as_of": None, "stale_days": None, "features": {}}
    day = int(market.as_of[index])
    assert market.stale_days is not None
    return {
        "source": "store",
        "as_of": _EPOCH + timedelta(days=day) if day >= 0 else None,
        "stale_days": int(market.stale_days[index]) if day >= 0 else None,
        "features": {name: _number(market.columns[name][index]) for name in inputs},
    }


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


_EPOCH = date(1970, 1, 1)


def missing_inputs(listing: Listing) -> list[str]:
    """The optional fields the model reads that ``listing`` lacks."""
    fields = listing.__dict__
    return [name for name in OPTIONAL_INPUTS if fields[name] is None]


def score_batch(
    events: Sequence[IncomingEvent],
    model: BatchModel,
    limits: Limits | None = None,
    market: MarketReader | None = None,
) -> BatchResult:
    """Scored prices and dead letters for ``events``: exactly one output per event.

    With a ``market`` reader, the valid listings' market features are read from the
    online store in one round trip and priced with; each output records what was used
    (:class:`gavel.schemas.MarketUsed`). Never raises for a bad event; an unexpected
    failure is that event's dead letter, and a store that fails costs only the features.
    """
    limits = limits or Limits()
    result = BatchResult()
    valid: list[tuple[IncomingEvent, Listing]] = []
    for event in events:
        parsed = parse_event(event, limits)
        if isinstance(parsed, Invalid):
            result.reject(event, parsed, limits)
        else:
            valid.append((event, parsed))
    listings = [listing for _, listing in valid]
    read = market.read(listings) if market is not None and listings else BatchMarket("off")
    result.market = read
    inputs: Sequence[str] = getattr(model, "market_inputs", ())
    prices = predict_isolating_failures(model, listings, read)
    level = getattr(model, "interval_level", None)
    scored_at = utc_now()
    now_s = scored_at.timestamp()
    shared: BatchFields | Invalid
    try:
        # Validated once for the batch; each listing was validated when it was parsed.
        shared = BatchFields.validated(
            model.name, model.version, getattr(model, "source", "registry"), scored_at
        )
    except Exception as exc:  # then no event of the batch can be written
        shared = _failure(exc)
    for index, ((event, listing), price) in enumerate(zip(valid, prices, strict=True)):
        if isinstance(price, Invalid):
            result.reject(event, price, limits)
            continue
        if isinstance(shared, Invalid):
            result.reject(event, shared, limits)
            continue
        try:
            extras = Extras(
                market_used(read, inputs, index),
                missing_inputs(listing),
                price.low,
                price.high,
                level if price.low is not None else None,
            )
            value = scored_json(
                listing, price.price, shared, broker_time(event.timestamp_s), extras
            )
        except Exception as exc:
            result.reject(event, _failure(exc), limits)
            continue
        key = event.key or listing.auction_id.encode()
        result.scored.append(Output(key, value, source=event))
        if event.timestamp_s is not None and math.isfinite(event.timestamp_s):
            result.latencies_s.append(min(max(now_s - event.timestamp_s, 0.0), 1e6))
    return result
