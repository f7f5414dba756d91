"""A corpus of hostile listing events, as a careless or malicious producer would write
them straight to ``auctions.listed``, mixed with valid listings.

Each event has a unique key (or none) and says whether it is a valid listing, so that a
test can account for every offset.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from producers.sources.synthetic import generate_auctions
from producers.timeline import listing_payloads

BROKER_LIMIT_BYTES = 1_048_588  # Kafka's default message.max.bytes


@dataclass(frozen=True)
class HostileEvent:
    key: bytes | None
    value: bytes | None
    kind: str
    valid: bool


def _mutations(listing: dict[str, Any], rng: random.Random) -> Iterator[tuple[str, bytes | None]]:
    text = orjson.dumps(listing)
    yield "truncated_json", text[: rng.randrange(1, len(text) - 1)]
    yield "not_an_object", rng.choice([b"1", b"[]", b"null", b'"listing"', b"true"])
    yield "empty", rng.choice([b"", None])
    yield "invalid_utf8", text.replace(b'"Ford"', b'"\xff\xfe\xc3"')[:-1] + b"\x80}"
    yield "nan_token", text.replace(b'"year":', b'"odometer": NaN, "year":')
    yield "inf_token", text[:-1] + b', "mmr": Infinity}'
    yield "huge_number", text[:-1] + b', "odometer": 1e308}'
    yield "bigint", json.dumps({**listing, "year": 10**40}).encode()
    yield "wrong_type", orjson.dumps({**listing, "year": "two thousand"})
    yield "nested", orjson.dumps({**listing, "make": {"name": "Ford"}, "model": ["Fusion"]})
    yield "missing_keys", orjson.dumps({k: v for k, v in listing.items() if k != "make"})
    yield "empty_keys", orjson.dumps({"": 1, **{k: "" for k in listing}})
    yield "year_one", orjson.dumps({**listing, "listed_at": "0001-01-01T00:00:00+14:00"})
    yield "year_9999", orjson.dumps({**listing, "listed_at": "9999-12-31T23:59:59-14:00"})
    yield "year_2500", orjson.dumps({**listing, "listed_at": "2500-06-01T00:00:00Z"})
    yield "far_past", orjson.dumps({**listing, "listed_at": "1901-01-01T00:00:00Z"})
    yield "negative", orjson.dumps({**listing, "odometer": -1, "condition": -3})
    yield "long_text", orjson.dumps({**listing, "trim": "x" * 5000})


def hostile_corpus(valid: int, hostile: int, seed: int = 7) -> list[HostileEvent]:
    """``valid`` listings and about ``hostile`` hostile events, shuffled, unique keys."""
    rng = random.Random(seed)
    frame = generate_auctions(valid + hostile, start="2015-03-01", end="2015-04-01", seed=seed)
    payloads = [orjson.loads(p) for p in listing_payloads(frame)]
    events = [
        HostileEvent(p["auction_id"].encode(), orjson.dumps(p), "valid", True)
        for p in payloads[:valid]
    ]
    mutated: list[HostileEvent] = []
    for index, listing in enumerate(payloads[valid:]):
        kind, value = rng.choice(list(_mutations(listing, rng)))
        key = None if index % 50 == 0 else f"hostile-{index}".encode()
        mutated.append(HostileEvent(key, value, kind, False))
    events += mutated[:hostile]
    rng.shuffle(events)
    return events


def oversized_events(seed: int = 7) -> list[HostileEvent]:
    """Payloads of about 900 KB, near the broker's limit, and over it (which the broker
    refuses, so they never reach the topic)."""
    rng = random.Random(seed)
    events: list[HostileEvent] = []
    sizes = [("900kb", 900_000)] * 4 + [("near_limit", BROKER_LIMIT_BYTES - 2_000)] * 2
    sizes += [("over_limit", BROKER_LIMIT_BYTES + 50_000)] * 2
    for index, (kind, size) in enumerate(sizes):
        filler = "".join(rng.choice('abc"\\\n\u00e9') for _ in range(size // 2))
        body = orjson.dumps({"auction_id": f"big-{index}", "junk": filler})
        value = (body + b" " * size)[:size]
        events.append(HostileEvent(f"big-{index}".encode(), value, kind, False))
    return events
