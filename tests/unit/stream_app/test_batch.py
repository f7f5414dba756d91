"""Tests for stream_app.batch.score_batch with a fake model: nothing ever raises out of a batch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from gavel.schemas import DeadLetter, DeadLetterReason, Listing, ScoredPrice
from stream_app import batch
from stream_app.batch import IncomingEvent, Output, score_batch

TOPIC = "auctions.listed"
PriceRule = Callable[[Listing], float]


class FakeModel:
    """Prices a listing at 5000 + odometer / 10, unless a per-auction rule says otherwise."""

    def __init__(
        self,
        rules: dict[str, PriceRule] | None = None,
        batch_error: Exception | None = None,
    ) -> None:
        self.name = "fake-price"
        self.version = "7"
        self.source = "registry"
        self.rules = rules or {}
        self.batch_error = batch_error
        self.calls: list[int] = []

    def predict(self, listings: Sequence[Listing]) -> np.ndarray:
        self.calls.append(len(listings))
        if self.batch_error is not None and len(listings) > 1:
            raise self.batch_error
        return np.array([self.price_of(listing) for listing in listings])

    def price_of(self, listing: Listing) -> float:
        rule = self.rules.get(listing.auction_id)
        if rule is not None:
            return rule(listing)
        return 5000.0 + (listing.odometer or 0.0) / 10.0


def raising(listing: Listing) -> float:
    raise RuntimeError(f"cannot price {listing.auction_id}")


def listing_json(auction_id: str, **changes: Any) -> bytes:
    data = {
        "auction_id": auction_id,
        "listed_at": "2015-01-05T10:00:00Z",
        "year": 2012,
        "make": "Ford",
        "model": "Fusion",
        "odometer": 41234.0,
        **changes,
    }
    return orjson.dumps(data)


def event(
    value: bytes | None,
    offset: int,
    key: bytes | None = b"auto",
    timestamp_s: float | None = None,
    partition: int = 3,
) -> IncomingEvent:
    if key == b"auto":
        key = orjson.loads(value)["auction_id"].encode() if value else None
    return IncomingEvent(key, value, TOPIC, partition, offset, timestamp_s)


def scored(outputs: list[Output]) -> list[ScoredPrice]:
    return [ScoredPrice.model_validate_json(output.value) for output in outputs]


def letters(outputs: list[Output]) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(output.value) for output in outputs]


def test_valid_events_are_scored() -> None:
    events = [event(listing_json(f"a{i}", odometer=1000.0 * i), offset=10 + i) for i in range(3)]
    model = FakeModel()
    result = score_batch(events, model)
    assert result.dead_letters == []
    assert model.calls == [3]  # one batch call
    assert [output.key for output in result.scored] == [b"a0", b"a1", b"a2"]
    prices = scored(result.scored)
    assert [p.predicted_price for p in prices] == [5000.0, 5100.0, 5200.0]
    assert {(p.model_name, p.model_version) for p in prices} == {("fake-price", "7")}
    first = prices[0]
    assert first.auction_id == "a0"
    assert first.features == Listing.model_validate_json(events[0].value)
    assert first.listed_at == first.features.listed_at
    assert len({p.scored_at for p in prices}) == 1
    assert not result.reasons


def test_prices_are_rounded_to_cents() -> None:
    model = FakeModel(rules={"a": lambda _: 1234.5678})
    (price,) = scored(score_batch([event(listing_json("a"), 0)], model).scored)
    assert price.predicted_price == 1234.57


def test_missing_key_falls_back_to_auction_id() -> None:
    result = score_batch([event(listing_json("a9"), 0, key=None)], FakeModel())
    assert result.scored[0].key == b"a9"


def test_latencies_from_event_timestamps() -> None:
    now = time.time()
    events = [
        event(listing_json("a1"), 0, timestamp_s=now - 2.0),
        event(listing_json("a2"), 1, timestamp_s=now + 60.0),  # producer clock ahead: clamp
        event(listing_json("a3"), 2, timestamp_s=None),
    ]
    result = score_batch(events, FakeModel())
    assert len(result.scored) == 3
    assert len(result.latencies_s) == 2
    assert 2.0 <= result.latencies_s[0] < 10.0
    assert result.latencies_s[1] == 0.0


def test_ingested_at_is_the_event_timestamp() -> None:
    events = [
        event(listing_json("a1"), 0, timestamp_s=1_420_452_000.25),
        event(listing_json("a2"), 1, timestamp_s=None),
    ]
    first, second = scored(score_batch(events, FakeModel()).scored)
    assert first.ingested_at == datetime(2015, 1, 5, 10, 0, 0, 250_000, tzinfo=UTC)
    assert second.ingested_at is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", DeadLetterReason.NOT_JSON),
        (None, DeadLetterReason.NOT_JSON),
        (b'{"auction_id": "b1"}', DeadLetterReason.SCHEMA),
        (listing_json("b1", odometer=-5.0), DeadLetterReason.OUT_OF_RANGE),
        (listing_json("b1", year=2999), DeadLetterReason.OUT_OF_RANGE),
    ],
)
def test_invalid_events_are_dead_lettered(value: bytes | None, reason: DeadLetterReason) -> None:
    bad = IncomingEvent(b"b1", value, TOPIC, 2, 99)
    model = FakeModel()
    result = score_batch([bad], model)
    assert result.scored == []
    assert model.calls == []  # nothing to price, the model is not called
    (output,) = result.dead_letters
    assert output.key == b"b1"
    (letter,) = letters(result.dead_letters)
    assert letter.reason is reason
    assert letter.detail
    assert (letter.source_topic, letter.partition, letter.offset) == (TOPIC, 2, 99)
    assert letter.key == "b1"
    assert letter.raw_payload == (value.decode() if value is not None else "")
    assert result.reasons == {reason.value: 1}


def test_dead_letter_keeps_field_errors() -> None:
    bad = IncomingEvent(b"b1", listing_json("b1", condition=42.0), TOPIC, 0, 1)
    (letter,) = letters(score_batch([bad], FakeModel()).dead_letters)
    assert letter.errors == [
        {"loc": ["condition"], "type": "less_than_equal", "msg": letter.errors[0]["msg"]}
    ]
    assert "condition" in letter.detail


def test_non_utf8_payload_and_key_survive_with_replacement() -> None:
    raw = b'\xff\xfe{"auction_id": "caf\xe9"}'
    bad = IncomingEvent(b"k\xff", raw, TOPIC, 1, 5)
    result = score_batch([bad], FakeModel())
    (output,) = result.dead_letters
    assert output.key == b"k\xff"  # the Kafka key is passed through untouched
    (letter,) = letters(result.dead_letters)
    assert letter.reason is DeadLetterReason.NOT_JSON
    assert letter.raw_payload == raw.decode("utf-8", "replace")
    assert letter.raw_payload.startswith("\ufffd\ufffd{")
    assert 'caf\ufffd"' in letter.raw_payload
    assert letter.key == "k\ufffd"


def test_mixed_batch_keeps_order_and_counts() -> None:
    events = [
        event(listing_json("a1"), 0),
        event(b"{{{", 1, key=b"x"),
        event(listing_json("a2"), 2),
        event(listing_json("a3", condition=9.0), 3),
        event(listing_json("a4"), 4),
    ]
    model = FakeModel()
    result = score_batch(events, model)
    assert model.calls == [3]
    assert [p.auction_id for p in scored(result.scored)] == ["a1", "a2", "a4"]
    assert [letter.offset for letter in letters(result.dead_letters)] == [1, 3]
    assert result.reasons == {"not_json": 1, "out_of_range": 1}
    assert len(result.scored) + len(result.dead_letters) == len(events)


def test_empty_batch() -> None:
    model = FakeModel()
    result = score_batch([], model)
    assert (result.scored, result.dead_letters, result.latencies_s) == ([], [], [])
    assert model.calls == []


def test_failing_batch_is_rescored_row_by_row() -> None:
    events = [event(listing_json(f"a{i}"), i) for i in range(4)]
    model = FakeModel(batch_error=MemoryError("batch too big"))
    result = score_batch(events, model)
    assert model.calls == [4, 1, 1, 1, 1]
    assert [p.auction_id for p in scored(result.scored)] == ["a0", "a1", "a2", "a3"]
    assert result.dead_letters == []


@pytest.mark.parametrize(
    ("rule", "detail"),
    [
        (raising, "RuntimeError: cannot price a2"),
        (lambda _: math.nan, "model returned price nan"),
        (lambda _: math.inf, "model returned price inf"),
        (lambda _: -10.0, "model returned price -10.0"),
        (lambda _: 0.0, "model returned price 0.0"),
    ],
    ids=["raises", "nan", "inf", "negative", "zero"],
)
def test_bad_row_is_dead_lettered_others_scored(rule: PriceRule, detail: str) -> None:
    events = [event(listing_json(f"a{i}"), 20 + i) for i in range(4)]
    # The batch call fails (an exception, or a non-finite price), so rows are isolated.
    model = FakeModel(rules={"a2": rule}, batch_error=ValueError("one row is bad"))
    result = score_batch(events, model)
    assert [p.auction_id for p in scored(result.scored)] == ["a0", "a1", "a3"]
    (letter,) = letters(result.dead_letters)
    assert letter.reason is DeadLetterReason.SCORING_FAILED
    assert letter.detail == detail
    assert (letter.offset, letter.key) == (22, "a2")
    assert Listing.model_validate_json(letter.raw_payload).auction_id == "a2"
    assert result.reasons == {"scoring_failed": 1}
    assert len(result.scored) + len(result.dead_letters) == len(events)


def test_non_finite_batch_output_triggers_isolation() -> None:
    events = [event(listing_json(f"a{i}"), i) for i in range(3)]
    model = FakeModel(rules={"a1": lambda _: math.nan})  # no exception, just a NaN
    result = score_batch(events, model)
    assert model.calls == [3, 1, 1, 1]
    assert [p.auction_id for p in scored(result.scored)] == ["a0", "a2"]
    assert [letter.reason for letter in letters(result.dead_letters)] == ["scoring_failed"]


def test_wrong_length_batch_output_triggers_isolation() -> None:
    class ShortModel(FakeModel):
        def predict(self, listings: Sequence[Listing]) -> np.ndarray:
            prices = super().predict(listings)
            return prices[:1] if len(listings) > 1 else prices

    events = [event(listing_json(f"a{i}"), i) for i in range(3)]
    result = score_batch(events, ShortModel())
    assert len(result.scored) == 3
    assert result.dead_letters == []


@pytest.mark.parametrize("bad_price", [-10.0, 0.0])
def test_non_positive_price_from_batch_call_is_dead_lettered(bad_price: float) -> None:
    events = [event(listing_json(f"a{i}"), i) for i in range(3)]
    model = FakeModel(rules={"a1": lambda _: bad_price})  # the batch call itself succeeds
    result = score_batch(events, model)
    assert [p.auction_id for p in scored(result.scored)] == ["a0", "a2"]
    assert [letter.reason for letter in letters(result.dead_letters)] == ["scoring_failed"]


def test_every_row_failing() -> None:
    events = [event(listing_json(f"a{i}"), i) for i in range(3)]
    model = FakeModel(rules={f"a{i}": raising for i in range(3)})
    result = score_batch(events, model)
    assert result.scored == []
    assert len(result.dead_letters) == 3
    assert result.reasons == {"scoring_failed": 3}


def test_a_failing_serialisation_costs_its_event_only(monkeypatch: pytest.MonkeyPatch) -> None:
    write = batch.scored_json

    def failing_for_b(listing: Listing, *args: Any) -> bytes:
        if listing.auction_id == "b":
            raise ValueError("cannot write b")
        return write(listing, *args)

    monkeypatch.setattr(batch, "scored_json", failing_for_b)
    events = [event(listing_json(auction_id), i) for i, auction_id in enumerate("abc")]
    result = score_batch(events, FakeModel())
    assert [s.auction_id for s in scored(result.scored)] == ["a", "c"]
    (letter,) = [DeadLetter.model_validate_json(o.value) for o in result.dead_letters]
    assert (letter.reason, letter.offset) == (DeadLetterReason.SCORING_FAILED, 1)
    assert letter.detail == "ValueError: cannot write b"


def test_a_model_the_contract_refuses_dead_letters_each_event_with_why() -> None:
    model = FakeModel()
    model.source = "elsewhere"  # not a ScoredPrice.model_source
    events = [event(listing_json(f"a{i}"), i) for i in range(3)]
    result = score_batch(events, model)
    assert result.scored == []
    assert result.reasons == {"scoring_failed": 3}
    details = {DeadLetter.model_validate_json(o.value).detail for o in result.dead_letters}
    assert len(details) == 1 and "model_source" in details.pop()
