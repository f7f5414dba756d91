"""Scoring one micro-batch: validate each event, price the valid ones together, and turn
every failure into a dead letter. Pure logic; the Faust agent only moves bytes.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from gavel.schemas import DeadLetter, DeadLetterReason, Listing, ScoredPrice, utc_now
from stream_app.validation import Invalid, parse_listing

log = logging.getLogger(__name__)


class BatchModel(Protocol):
    name: str
    version: str

    def predict(self, listings: Sequence[Listing]) -> np.ndarray: ...


@dataclass(frozen=True)
class IncomingEvent:
    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_s: float | None = None


@dataclass(frozen=True)
class Output:
    key: bytes | None
    value: bytes


@dataclass
class BatchResult:
    scored: list[Output] = field(default_factory=list)
    dead_letters: list[Output] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)


def _from_epoch(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def dead_letter(event: IncomingEvent, invalid: Invalid) -> Output:
    key = event.key.decode("utf-8", "replace") if event.key else None
    raw = event.value.decode("utf-8", "replace") if event.value is not None else ""
    letter = DeadLetter(
        reason=invalid.reason,
        detail=invalid.detail,
        errors=invalid.errors,
        source_topic=event.topic,
        partition=event.partition,
        offset=event.offset,
        key=key,
        raw_payload=raw,
    )
    return Output(event.key, letter.to_json_bytes())


def predict_isolating_failures(
    model: BatchModel, listings: Sequence[Listing]
) -> list[float | Invalid]:
    """Batch prices; if the batch call fails, price row by row so one bad row costs one row."""
    if not listings:
        return []
    try:
        prices = np.asarray(model.predict(listings), dtype=float)
        if len(prices) == len(listings) and np.isfinite(prices).all() and (prices > 0).all():
            return prices.tolist()
    except Exception as exc:
        log.warning("batch of %d failed to score (%s); isolating rows", len(listings), exc)
    results: list[float | Invalid] = []
    for listing in listings:
        try:
            price = float(model.predict([listing])[0])
        except Exception as exc:
            results.append(Invalid(DeadLetterReason.SCORING_FAILED, f"{type(exc).__name__}: {exc}"))
            continue
        if not math.isfinite(price) or price <= 0:
            results.append(
                Invalid(DeadLetterReason.SCORING_FAILED, f"model returned price {price!r}")
            )
        else:
            results.append(price)
    return results


def score_batch(events: Sequence[IncomingEvent], model: BatchModel) -> BatchResult:
    """Scored prices and dead letters for ``events``; never raises for a bad event."""
    result = BatchResult()
    valid: list[tuple[IncomingEvent, Listing]] = []
    for event in events:
        parsed = parse_listing(event.value)
        if isinstance(parsed, Invalid):
            result.dead_letters.append(dead_letter(event, parsed))
            result.reasons[parsed.reason.value] += 1
        else:
            valid.append((event, parsed))
    prices = predict_isolating_failures(model, [listing for _, listing in valid])
    scored_at = utc_now()
    now_s = scored_at.timestamp()
    for (event, listing), price in zip(valid, prices, strict=True):
        if isinstance(price, Invalid):
            result.dead_letters.append(dead_letter(event, price))
            result.reasons[price.reason.value] += 1
            continue
        scored = ScoredPrice(
            auction_id=listing.auction_id,
            predicted_price=round(price, 2),
            model_name=model.name,
            model_version=model.version,
            listed_at=listing.listed_at,
            scored_at=scored_at,
            ingested_at=_from_epoch(event.timestamp_s),
            features=listing,
        )
        result.scored.append(
            Output(event.key or listing.auction_id.encode(), scored.to_json_bytes())
        )
        if event.timestamp_s is not None:
            result.latencies_s.append(max(now_s - event.timestamp_s, 0.0))
    return result
