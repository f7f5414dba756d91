"""Property-based fuzzing of the scoring path with a real (small) XGBoost pipeline.

Whatever arrives, :func:`score_batch` never raises, gives every event exactly one output,
and prices every valid listing whatever else shares its batch.
"""

from __future__ import annotations

import json
import string
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gavel.schemas import DeadLetter, ScoredPrice
from producers.sources.synthetic import generate_auctions
from stream_app.batch import IncomingEvent, Limits, score_batch
from stream_app.model import LoadedModel
from trainer.pipeline import fit_xgboost
from trainer.split import time_split
from trainer.training import features_and_target

LIMITS = Limits(max_listing_bytes=4096, deadletter_payload_bytes=512)


def dumps(value: Any) -> bytes:
    """JSON bytes; the standard library also writes integers beyond 64 bits."""
    return json.dumps(value).encode()


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    frame = generate_auctions(3000, start="2015-01-01", end="2015-03-01", seed=5)
    split = time_split(frame, "2015-02-01", test_days=28)
    x_train, y_train = features_and_target(split.train)
    x_val, y_val = features_and_target(split.validation)
    fitted = fit_xgboost(x_train, y_train, x_val, y_val, params={"n_estimators": 30})
    return LoadedModel("fuzz", "1", fitted.pipeline, time.time())


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

valid_listings = st.fixed_dictionaries(
    {
        "auction_id": st.text(string.ascii_letters + string.digits, min_size=1, max_size=20),
        "listed_at": st.datetimes(
            min_value=datetime(2014, 1, 1), max_value=datetime(2016, 12, 31), timezones=st.just(UTC)
        ).map(lambda d: d.isoformat()),
        "year": st.integers(1990, 2014),
        "make": st.sampled_from(["Ford", "Kia", "BMW", "Zastava", " toyota "]),
        "model": st.sampled_from(["Fusion", "Optima", "3 Series", "Yugo"]),
    },
    optional={
        "odometer": st.floats(0, 999_999),
        "condition": st.floats(1, 5),
        "mmr": st.floats(100, 900_000),
        "body": st.sampled_from(["SUV", "Sedan", "", "nan"]),
        "transmission": st.sampled_from(["automatic", "manual"]),
        "state": st.sampled_from(["ca", "tx", "fl"]),
        "color": st.text(max_size=20),
        "seller": st.text(max_size=50),
    },
)

# Valid skeletons with one field replaced by anything at all, dates at the edges included.
extreme_dates = st.sampled_from(
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2263-01-01T00:00:00Z",
        "1677-09-21T00:12:43Z",
        "2015-01-05T10:00:00",
        "1e308",
        "NaN",
    ]
)
mangled_listings = st.tuples(
    valid_listings,
    st.sampled_from(["listed_at", "year", "odometer", "mmr", "make", "condition", "auction_id"]),
    json_values | extreme_dates,
).map(lambda t: {**t[0], t[1]: t[2]})

hostile_payloads = (
    st.binary(max_size=200)
    | json_values.map(dumps)
    | mangled_listings.map(dumps)
    | st.sampled_from(
        [b"", b"{", b"[]", b"null", b"1e999", b'{"year": NaN}', b"\xff\xfe", b"x" * 5000]
    )
)
broker_timestamps = st.none() | st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def batches(draw: Any) -> tuple[list[IncomingEvent], set[int]]:
    """Events of a batch, and the offsets that carry a valid listing."""
    events: list[IncomingEvent] = []
    valid: set[int] = set()
    for offset in range(draw(st.integers(1, 25))):
        if draw(st.booleans()):
            payload = dumps(draw(valid_listings))
            valid.add(offset)
        else:
            payload = draw(hostile_payloads)
        key = draw(st.none() | st.binary(max_size=40))
        events.append(
            IncomingEvent(key, payload, "auctions.listed", 0, offset, draw(broker_timestamps))
        )
    return events, valid


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches())
def test_every_event_gets_exactly_one_output_and_valid_listings_are_scored(
    model: LoadedModel, batch: tuple[list[IncomingEvent], set[int]]
) -> None:
    events, valid_offsets = batch
    result = score_batch(events, model, LIMITS)

    assert len(result.scored) + len(result.dead_letters) == len(events)
    letters = [DeadLetter.model_validate_json(o.value) for o in result.dead_letters]
    dead_offsets = {letter.offset for letter in letters}
    assert not dead_offsets & valid_offsets, [
        (letter.reason, letter.detail) for letter in letters if letter.offset in valid_offsets
    ]
    for letter in letters:
        assert letter.reason and letter.detail
        assert len(letter.raw_payload.encode()) <= 3 * LIMITS.deadletter_payload_bytes
    for output in result.scored:
        price = ScoredPrice.model_validate_json(output.value)
        assert price.predicted_price > 0
    assert sum(result.reasons.values()) == len(result.dead_letters)


@settings(max_examples=200, deadline=None)
@given(payload=hostile_payloads, timestamp=broker_timestamps)
def test_a_single_hostile_event_is_dead_lettered_or_scored_never_raised(
    model: LoadedModel, payload: bytes, timestamp: float | None
) -> None:
    event = IncomingEvent(b"k", payload, "auctions.listed", 1, 7, timestamp)
    result = score_batch([event], model, LIMITS)
    assert len(result.scored) + len(result.dead_letters) == 1


def test_a_valid_listing_is_scored_next_to_every_kind_of_poison(model: LoadedModel) -> None:
    good = {
        "auction_id": "good",
        "listed_at": "2015-02-01T10:00:00Z",
        "year": 2012,
        "make": "Ford",
        "model": "Fusion",
    }
    poison = [
        {**good, "auction_id": "p1", "listed_at": "0001-01-01T00:00:00+14:00"},
        {**good, "auction_id": "p2", "listed_at": "9999-12-31T23:59:59Z"},
        {**good, "auction_id": "p3", "listed_at": "2263-06-01T00:00:00Z", "year": 2262},
        {**good, "auction_id": "p4", "odometer": 1e308},
    ]
    events = [
        IncomingEvent(p["auction_id"].encode(), orjson.dumps(p), "auctions.listed", 0, i, 1e300)
        for i, p in enumerate([*poison, good])
    ]
    events.append(IncomingEvent(b"p5", b"x" * 10_000, "auctions.listed", 0, 9, -5.0))
    result = score_batch(events, model, LIMITS)

    assert [ScoredPrice.model_validate_json(o.value).auction_id for o in result.scored] == ["good"]
    reasons = {
        DeadLetter.model_validate_json(o.value).key: DeadLetter.model_validate_json(o.value).reason
        for o in result.dead_letters
    }
    assert reasons == {
        "p1": "out_of_range",
        "p2": "out_of_range",
        "p3": "out_of_range",
        "p4": "out_of_range",
        "p5": "payload_too_large",
    }
    (big,) = [
        DeadLetter.model_validate_json(o.value) for o in result.dead_letters if o.key == b"p5"
    ]
    assert big.payload_bytes == 10_000 and big.payload_truncated
    assert len(big.raw_payload) == LIMITS.deadletter_payload_bytes
