"""Tests for gavel.records: every value is an event or a counted skip, never an exception."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gavel.records import (
    EARLIEST_EVENT,
    FUTURE_SLACK,
    Skipped,
    SkipReason,
    Tally,
    parse_sale,
    parse_scored,
)
from gavel.schemas import Listing, Sale, ScoredPrice
from trainer.labelled import labelled_frame

T0 = datetime(2015, 3, 1, 12, tzinfo=UTC)
NOW = datetime(2016, 1, 1, tzinfo=UTC)  # the reader's clock


def sale_value(**changes: object) -> dict[str, object]:
    return {"auction_id": "a1", "sold_at": "2015-03-01T12:00:00Z", "sellingprice": 9500, **changes}


def scored_value(**listing_changes: object) -> dict[str, object]:
    listing = Listing(auction_id="a1", listed_at=T0, year=2012, make="Ford", model="Fusion")
    event = ScoredPrice(
        auction_id="a1",
        predicted_price=9000.0,
        model_name="m",
        model_version="1",
        listed_at=T0,
        scored_at=T0 + timedelta(seconds=1),
        features=listing,
    ).model_dump(mode="json")
    event["features"].update(listing_changes)
    return event


def raw(value: object) -> bytes:
    return orjson.dumps(value)


# A hostile corpus for auctions.sold, with the reason each must be skipped for.
BAD_SALES: list[tuple[bytes | None, SkipReason]] = [
    (None, SkipReason.EMPTY),
    (b"", SkipReason.EMPTY),
    (b"{not json", SkipReason.NOT_JSON),
    (b"\xff\xfe\x00", SkipReason.NOT_JSON),
    (b"1", SkipReason.NOT_OBJECT),
    (b"[]", SkipReason.NOT_OBJECT),
    (b"null", SkipReason.NOT_OBJECT),
    (b'"a string"', SkipReason.NOT_OBJECT),
    (b"{}", SkipReason.SCHEMA),
    (raw(sale_value(sold_at="yesterday")), SkipReason.SCHEMA),
    (raw(sale_value(sold_at="2015-02-30T00:00:00Z")), SkipReason.SCHEMA),
    (raw(sale_value(sellingprice=-5)), SkipReason.SCHEMA),
    (raw(sale_value(sellingprice="lots")), SkipReason.SCHEMA),
    (raw(sale_value(auction_id="")), SkipReason.SCHEMA),
    (b'{"auction_id": "a1", "sold_at": "2015-03-01T12:00:00Z", "sellingprice": NaN}',
     SkipReason.SCHEMA),
    (b'{"auction_id": "a1", "sold_at": "2015-03-01T12:00:00Z", "sellingprice": 1e999}',
     SkipReason.SCHEMA),
    (raw(sale_value(sold_at="2016-01-03T00:00:00Z")), SkipReason.EVENT_TIME),  # after NOW + 1 day
    (raw(sale_value(sellingprice=1e300)), SkipReason.VALUE),
    (raw(sale_value(sold_at="0001-01-01T00:00:00+05:00")), SkipReason.EVENT_TIME),
    (raw(sale_value(sold_at="9999-12-31T23:00:00-05:00")), SkipReason.EVENT_TIME),
    (raw(sale_value(sold_at="0001-01-01T00:00:00Z")), SkipReason.EVENT_TIME),
    (raw(sale_value(sold_at="9999-12-31T23:59:59Z")), SkipReason.EVENT_TIME),
]  # fmt: skip


@pytest.mark.parametrize(("value", "reason"), BAD_SALES)
def test_each_bad_sale_is_skipped_with_its_reason(value: bytes | None, reason: SkipReason) -> None:
    outcome = parse_sale(value, NOW)
    assert isinstance(outcome, Skipped)
    assert outcome.reason is reason
    assert outcome.detail


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"listed_at": "0001-01-01T00:00:00Z"}, SkipReason.EVENT_TIME),
        ({"listed_at": "9999-06-01T00:00:00Z"}, SkipReason.EVENT_TIME),
        ({"listed_at": "0001-01-01T00:00:00+01:00"}, SkipReason.EVENT_TIME),
        ({"year": 1}, SkipReason.SCHEMA),
        ({"year": 2030}, SkipReason.SCHEMA),  # not on sale yet in 2015
        ({"odometer": -1}, SkipReason.SCHEMA),
        ({"make": None}, SkipReason.SCHEMA),
    ],
)
def test_bad_scored_events_are_skipped_with_their_reason(
    changes: dict[str, object], reason: SkipReason
) -> None:
    outcome = parse_scored(raw(scored_value(**changes)), NOW)
    assert isinstance(outcome, Skipped)
    assert outcome.reason is reason


def test_good_values_parse_to_the_contract_events_in_utc() -> None:
    sale = parse_sale(raw(sale_value(sold_at="2015-03-01T14:00:00+02:00")), NOW)
    assert isinstance(sale, Sale)
    assert sale.sold_at == T0 and sale.sold_at.tzinfo == UTC
    naive = parse_sale(raw(sale_value(sold_at="2015-03-01T12:00:00")), NOW)  # UTC, as the
    assert isinstance(naive, Sale) and naive.sold_at == T0  # contract says
    assert sale.sellingprice == 9500.0
    event = parse_scored(raw(scored_value()), NOW)
    assert isinstance(event, ScoredPrice)
    assert event.features.listed_at == T0
    for value in (b"1", b"[]", b"{}"):
        assert isinstance(parse_scored(value, NOW), Skipped)


def test_the_time_bounds_are_the_first_event_and_the_readers_clock_plus_a_day() -> None:
    assert isinstance(parse_sale(raw(sale_value(sold_at=EARLIEST_EVENT.isoformat())), NOW), Sale)
    latest = NOW + FUTURE_SLACK
    assert isinstance(parse_sale(raw(sale_value(sold_at=latest.isoformat())), NOW), Sale)
    late = parse_sale(raw(sale_value(sold_at=(latest + timedelta(seconds=1)).isoformat())), NOW)
    assert isinstance(late, Skipped) and late.reason is SkipReason.EVENT_TIME


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
timestamps = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).flatmap(
    lambda moment: st.sampled_from(
        [
            moment.isoformat(),
            moment.replace(tzinfo=UTC).isoformat(),
            moment.replace(tzinfo=timezone(timedelta(hours=13))).isoformat(),
            moment.replace(tzinfo=timezone(timedelta(hours=-12))).isoformat(),
        ]
    )
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    for parse in (parse_sale, parse_scored):
        assert isinstance(parse(value, NOW), Skipped | Sale | ScoredPrice)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises(value: object) -> None:
    assert isinstance(parse_sale(raw(value), NOW), Skipped)  # no random value is a whole sale
    assert isinstance(parse_scored(raw(value), NOW), Skipped)


@settings(max_examples=300, deadline=None)
@given(timestamps, st.floats(min_value=-1e6, max_value=1e7, allow_nan=False))
def test_any_sale_time_either_parses_within_bounds_or_is_skipped(
    sold_at: str, price: float
) -> None:
    outcome = parse_sale(raw(sale_value(sold_at=sold_at, sellingprice=price)), NOW)
    if isinstance(outcome, Sale):
        assert EARLIEST_EVENT <= outcome.sold_at <= NOW + FUTURE_SLACK
        assert outcome.sold_at.tzinfo == UTC
        assert outcome.sellingprice > 0
        # What parses also goes through the frame: pandas can hold every accepted time.
        frame = labelled_frame([ScoredPrice.model_validate(scored_value())], [outcome.model_copy()])
        assert len(frame) == 1
    elif price > 0:
        assert outcome.reason is SkipReason.EVENT_TIME
    else:  # the price fails; an overflowing time may be found first
        assert outcome.reason in {SkipReason.SCHEMA, SkipReason.EVENT_TIME}


@given(st.lists(st.sampled_from(BAD_SALES) | st.just((raw(sale_value()), None)), max_size=40))
def test_a_tally_counts_every_value_and_each_skip_by_reason(
    values: list[tuple[bytes | None, SkipReason | None]],
) -> None:
    tally = Tally()
    for value, _ in values:
        tally.count(parse_sale(value, NOW))
    expected: dict[str, int] = {}
    for _, reason in values:
        if reason is not None:
            expected[reason.value] = expected.get(reason.value, 0) + 1
    assert tally.read == len(values)
    assert tally.total_skipped == sum(expected.values())
    assert tally.as_dict() == {"read": len(values), "skipped": dict(sorted(expected.items()))}
