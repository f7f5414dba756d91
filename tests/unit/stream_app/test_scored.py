"""The scored price written from the validated listing is the contract's own JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gavel.schemas import Listing, MarketUsed, ScoredPrice
from stream_app.batch import broker_time
from stream_app.scored import BatchFields, Extras, scored_json

offsets = st.sampled_from([0, 1, -5, 5.5, 14, -14]).map(lambda h: timezone(timedelta(hours=h)))
times = st.datetimes(
    min_value=datetime(1990, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.none() | offsets
)
words = st.text(min_size=1, max_size=40).filter(lambda text: text.strip() != "")
optional_text = st.none() | st.text(max_size=60)


def as_json_time(value: datetime) -> str:
    return value.isoformat()  # naive times are UTC by the contract


@st.composite
def listing_payloads(draw: st.DrawFn) -> bytes:
    """A listing as it arrives: any valid content, every optional field maybe null."""
    listed_at = draw(times)
    utc_year = (listed_at if listed_at.tzinfo else listed_at.replace(tzinfo=UTC)).astimezone(UTC)
    number = st.integers(0, 1000) | st.floats(1.0, 5.0)
    payload: dict[str, Any] = {
        "auction_id": draw(st.text("abcdef0123456789-", min_size=1, max_size=30)),
        "listed_at": as_json_time(listed_at),
        "year": draw(st.integers(1950, utc_year.year + 1)),
        "make": draw(words),
        "model": draw(words),
        "trim": draw(optional_text),
        "body": draw(optional_text),
        "transmission": draw(st.sampled_from([None, "automatic", "manual"])),
        "state": draw(st.none() | st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=2)),
        "condition": draw(st.none() | st.floats(1.0, 5.0) | st.integers(1, 5)),
        "odometer": draw(st.none() | number | st.floats(0.0, 1_000_000.0)),
        "color": draw(optional_text),
        "interior": draw(optional_text),
        "seller": draw(optional_text),
        "mmr": draw(st.none() | st.floats(0.01, 1_000_000.0) | st.integers(1, 10**6)),
        "vin": draw(st.none() | st.text(max_size=32)),
        "ignored_extra": draw(st.none() | st.integers(-(10**6), 10**6)),
    }
    for name in draw(st.lists(st.sampled_from(list(payload)[5:]), unique=True)):
        del payload[name]  # absent, not only null
    return orjson.dumps(payload)


prices = st.floats(min_value=0.001, max_value=1e9, allow_nan=False, allow_infinity=False)
broker_seconds = st.none() | st.floats(0, 4e9) | st.sampled_from([1e300, -1.0, float("nan")])


def old_value(
    listing: Listing,
    price: float,
    name: str,
    version: str,
    source: Any,
    scored_at: datetime,
    ingested_at: datetime | None,
) -> ScoredPrice:
    """What score_batch built before, per event."""
    return ScoredPrice(
        auction_id=listing.auction_id,
        predicted_price=round(price, 2),
        model_name=name,
        model_version=version,
        listed_at=listing.listed_at,
        scored_at=scored_at,
        ingested_at=ingested_at,
        features=listing,
        model_source=source,
    )


@settings(max_examples=400, deadline=None)
@given(
    payload=listing_payloads(),
    price=prices,
    name=st.text(max_size=20),
    version=st.text(max_size=8),
    source=st.sampled_from(["registry", "cache"]),
    scored_at=times,
    seconds=broker_seconds,
)
def test_the_bytes_are_those_of_the_contract(
    payload: bytes,
    price: float,
    name: str,
    version: str,
    source: str,
    scored_at: datetime,
    seconds: float | None,
) -> None:
    listing = Listing.model_validate_json(payload)
    ingested_at = broker_time(seconds)
    shared = BatchFields.validated(name, version, source, scored_at)
    value = scored_json(listing, price, shared, ingested_at)

    expected = old_value(listing, price, name, version, source, scored_at, ingested_at)
    assert value == expected.to_json_bytes()
    parsed = ScoredPrice.model_validate_json(value)
    assert parsed == expected
    # Every time is written in UTC, whatever offset it came with.
    for when in (parsed.listed_at, parsed.scored_at, parsed.ingested_at):
        assert when is None or when.utcoffset() == timedelta(0)
    assert parsed.features == listing


def test_none_values_and_absent_fields_are_written_as_null() -> None:
    listing = Listing.model_validate_json(
        b'{"auction_id": "a1", "listed_at": "2015-01-05T10:00:00+02:00", "year": 2012,'
        b' "make": "Ford", "model": "Fusion", "trim": null}'
    )
    shared = BatchFields.validated("m", "1", "cache", datetime(2015, 1, 5, 9, tzinfo=UTC))
    out = orjson.loads(scored_json(listing, 10_000.004, shared, None))
    assert out["predicted_price"] == 10_000.0
    assert out["listed_at"] == "2015-01-05T08:00:00Z"
    assert out["ingested_at"] is None and out["model_source"] == "cache"
    assert out["features"]["trim"] is None and out["features"]["mmr"] is None
    assert list(out["features"]) == list(Listing.model_fields)


def test_shared_fields_are_validated_by_the_contract() -> None:
    with pytest.raises(ValidationError):
        BatchFields.validated("m", "1", "somewhere", datetime(2015, 1, 5, tzinfo=UTC))
    local = datetime(2015, 1, 5, 9, tzinfo=timezone(timedelta(hours=3)))
    assert BatchFields.validated("m", "1", "registry", local).scored_at == datetime(
        2015, 1, 5, 6, tzinfo=UTC
    )


market_values = st.none() | st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def extras_of(draw: st.DrawFn) -> Extras:
    """Market used (from the store, or unavailable), missing inputs and an interval."""
    market = draw(
        st.none()
        | st.just({"source": "unavailable", "as_of": None, "stale_days": None, "features": {}})
        | st.builds(
            lambda as_of, stale, features: {  # in the contract's field order, as market_used
                "source": "store",
                "as_of": as_of,
                "stale_days": stale,
                "features": features,
            },
            st.dates(min_value=date(1990, 1, 1), max_value=date(2099, 1, 1)),
            st.integers(0, 30),
            st.dictionaries(
                st.sampled_from(["mkt_ratio_hat", "mkt_level_hat", "mkt_mm_n_90d"]), market_values
            ),
        )
    )
    interval = draw(st.none() | st.tuples(prices, prices))
    return Extras(
        market=market,
        missing_inputs=draw(st.lists(st.sampled_from(["mmr", "condition", "body"]), unique=True)),
        price_low=None if interval is None else min(interval),
        price_high=None if interval is None else max(interval),
        interval_level=None if interval is None else 0.8,
    )


@settings(max_examples=200, deadline=None)
@given(payload=listing_payloads(), price=prices, extras=extras_of())
def test_the_market_missing_inputs_and_interval_are_the_contracts_too(
    payload: bytes, price: float, extras: Extras
) -> None:
    listing = Listing.model_validate_json(payload)
    shared = BatchFields.validated("m", "2", "registry", datetime(2015, 1, 5, tzinfo=UTC))
    value = scored_json(listing, price, shared, None, extras)
    expected = old_value(listing, price, "m", "2", "registry", shared.scored_at, None)
    expected = expected.model_copy(
        update={
            "market": None if extras.market is None else MarketUsed.model_validate(extras.market),
            "missing_inputs": extras.missing_inputs,
            "price_low": None if extras.price_low is None else round(extras.price_low, 2),
            "price_high": None if extras.price_high is None else round(extras.price_high, 2),
            "interval_level": extras.interval_level,
        }
    )
    assert value == expected.to_json_bytes()
    assert ScoredPrice.model_validate_json(value) == expected
