"""Labelled events and a hostile corpus for the trainer's tests on real servers.

``labelled_events`` turns a synthetic auction frame into the ``prices.scored`` and
``auctions.sold`` values the worker and the producers write; ``HOSTILE_SCORED`` and
``HOSTILE_SALES`` are values that must be skipped, each with the reason it must be
skipped for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

import orjson
import pandas as pd
from confluent_kafka import Producer
from pydantic import ValidationError

from gavel.features import TARGET
from gavel.records import SkipReason
from gavel.schemas import LISTING_FIELDS, Listing, Sale, ScoredPrice
from gavel.settings import Settings
from shell.kafka import produce_waiting, producer_config

SALE_DELAY = timedelta(hours=2)

_SALE = {"auction_id": "bad-1", "sold_at": "2015-02-01T10:00:00Z", "sellingprice": 9000}


def _sale(**changes: object) -> bytes:
    return orjson.dumps({**_SALE, **changes})


HOSTILE_SALES: list[tuple[bytes | None, SkipReason]] = [
    (b"1", SkipReason.NOT_OBJECT),
    (b"[]", SkipReason.NOT_OBJECT),
    (b"null", SkipReason.NOT_OBJECT),
    (b"{}", SkipReason.SCHEMA),
    (b"{broken", SkipReason.NOT_JSON),
    (b"\xff\xfe", SkipReason.NOT_JSON),
    (None, SkipReason.EMPTY),
    (_sale(sold_at="not a date"), SkipReason.SCHEMA),
    (_sale(sellingprice=0), SkipReason.SCHEMA),
    (_sale(sellingprice=1e300), SkipReason.VALUE),
    (_sale(sold_at="0001-01-01T00:00:00+02:00"), SkipReason.EVENT_TIME),
    (_sale(sold_at="0001-01-01T00:00:00Z"), SkipReason.EVENT_TIME),
    (_sale(sold_at="9999-12-31T23:59:59Z"), SkipReason.EVENT_TIME),
]


def _scored(**listing: object) -> bytes:
    features = {
        "auction_id": "bad-2",
        "listed_at": "2015-02-01T08:00:00Z",
        "year": 2012,
        "make": "Ford",
        "model": "Fusion",
        **listing,
    }
    event = {
        "auction_id": "bad-2",
        "predicted_price": 9000.0,
        "model_name": "m",
        "model_version": "1",
        "listed_at": "2015-02-01T08:00:00Z",
        "scored_at": "2015-02-01T08:00:01Z",
        "features": features,
    }
    return orjson.dumps(event)


HOSTILE_SCORED: list[tuple[bytes | None, SkipReason]] = [
    (b"1", SkipReason.NOT_OBJECT),
    (b"[]", SkipReason.NOT_OBJECT),
    (b"{}", SkipReason.SCHEMA),
    (b"not json", SkipReason.NOT_JSON),
    (_scored(year="old"), SkipReason.SCHEMA),
    (_scored(odometer=-10), SkipReason.SCHEMA),
    (_scored(listed_at="9999-06-01T00:00:00Z"), SkipReason.EVENT_TIME),
    (_scored(listed_at="0001-01-01T00:00:00+05:00"), SkipReason.EVENT_TIME),
]


def expected_skips(corpus: Iterable[tuple[bytes | None, SkipReason]]) -> dict[str, int]:
    counts = Counter(reason.value for _, reason in corpus)
    return dict(sorted(counts.items()))


def labelled_events(frame: pd.DataFrame, version: str = "1") -> tuple[list[bytes], list[bytes]]:
    """The scored events and sales of ``frame``'s valid listings (sold 2 h after listing)."""
    scored, sales = [], []
    for row in frame.to_dict("records"):
        values = {k: (None if pd.isna(v) else v) for k, v in row.items() if k in LISTING_FIELDS}
        try:
            listing = Listing.model_validate(values)
        except ValidationError:
            continue  # the worker would dead-letter it
        event = ScoredPrice(
            auction_id=listing.auction_id,
            predicted_price=float(row[TARGET]),
            model_name="m",
            model_version=version,
            listed_at=listing.listed_at,
            scored_at=listing.listed_at,
            features=listing,
        )
        sale = Sale(
            auction_id=listing.auction_id,
            sold_at=listing.listed_at + SALE_DELAY,
            sellingprice=float(row[TARGET]),
        )
        scored.append(event.to_json_bytes())
        sales.append(sale.to_json_bytes())
    return scored, sales


def produce(
    settings: Settings,
    topic: str,
    values: Iterable[bytes | None],
    timestamp: datetime | None = None,
) -> int:
    """Write ``values`` to ``topic`` (optionally with a Kafka timestamp); returns how many."""
    producer = Producer(producer_config(settings))
    extra = {"timestamp": int(timestamp.timestamp() * 1000)} if timestamp else {}
    n = 0
    for i, value in enumerate(values):
        produce_waiting(producer, settings.topic(topic), value, f"k{i}".encode(), **extra)
        n += 1
    assert producer.flush(30) == 0, "not every record was delivered"
    return n
