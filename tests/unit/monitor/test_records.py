"""Tests for monitor.records: every malformed record is skipped with its reason, and no
record that parses can poison a watermark."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gavel.records import EARLIEST_EVENT, FUTURE_SLACK
from monitor.ordering import PartitionWatermark
from monitor.records import (
    SaleRow,
    ScoredRow,
    Skipped,
    SkipReason,
    parse_sale,
    parse_scored,
)

NOW = datetime(2016, 1, 1, tzinfo=UTC)
LISTED = datetime(2015, 5, 1, 10, tzinfo=UTC)


def listing(**changes: Any) -> dict[str, Any]:
    return {
        "auction_id": "a1",
        "listed_at": LISTED.isoformat(),
        "year": 2012,
        "make": "Ford",
        "model": "Fusion",
        "condition": 3.5,
        "odometer": 41000,
        **changes,
    }


def scored(**changes: Any) -> dict[str, Any]:
    return {
        "auction_id": "a1",
        "predicted_price": 9000.0,
        "model_name": "m",
        "model_version": "1",
        "listed_at": LISTED.isoformat(),
        "scored_at": (LISTED + timedelta(seconds=1)).isoformat(),
        "features": listing(),
        **changes,
    }


def sale(**changes: Any) -> dict[str, Any]:
    return {"auction_id": "a1", "sold_at": LISTED.isoformat(), "sellingprice": 8500.0, **changes}


def raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else orjson.dumps(value)


def test_a_valid_scored_record_parses() -> None:
    row = parse_scored(raw(scored()), NOW)
    assert isinstance(row, ScoredRow)
    assert (row.auction_id, row.listed_at, row.model_version) == ("a1", LISTED, "1")
    assert row.predicted_price == 9000.0
    assert row.features["make"] == "Ford" and row.features["listed_at"] == LISTED


def test_a_valid_sale_parses() -> None:
    assert parse_sale(raw(sale()), NOW) == SaleRow("a1", LISTED, 8500.0)


def test_a_naive_time_is_read_as_utc() -> None:
    row = parse_sale(raw(sale(sold_at="2015-05-01T10:00:00")), NOW)
    assert isinstance(row, SaleRow) and row.sold_at == LISTED


def test_an_offset_time_is_converted_to_utc() -> None:
    row = parse_sale(raw(sale(sold_at="2015-05-01T12:00:00+02:00")), NOW)
    assert isinstance(row, SaleRow) and row.sold_at == LISTED and row.sold_at.tzinfo == UTC


# Hostile sales and the reason each must be skipped for.
HOSTILE_SALES: list[tuple[str, bytes | None, SkipReason]] = [
    ("tombstone", None, SkipReason.EMPTY),
    ("empty", b"", SkipReason.EMPTY),
    ("broken json", b'{"auction_id": "a1", "sold_at', SkipReason.NOT_JSON),
    ("bad utf-8", b'{"auction_id": "\xff\xfe", "sold_at": "2015-05-01T10:00:00Z"}', "not_json"),
    ("a number", b"1", SkipReason.NOT_OBJECT),
    ("a list", b"[]", SkipReason.NOT_OBJECT),
    ("an empty object", b"{}", SkipReason.SCHEMA),
    ("price as text", raw(sale(sellingprice="cheap")), SkipReason.SCHEMA),
    ("price as a list", raw(sale(sellingprice=[1])), SkipReason.SCHEMA),
    ("no id", raw(sale(auction_id="")), SkipReason.SCHEMA),
    ("a bad date", raw(sale(sold_at="2015-13-45")), SkipReason.SCHEMA),
    ("year 1", raw(sale(sold_at="0001-01-01T00:00:00Z")), SkipReason.EVENT_TIME),
    ("year 1 with offset", raw(sale(sold_at="0001-01-01T00:00:00+05:00")), "event_time"),
    ("year 9999", raw(sale(sold_at="9999-12-31T23:59:59Z")), SkipReason.EVENT_TIME),
    ("year 9999 with offset", raw(sale(sold_at="9999-12-31T23:59:59-05:00")), "event_time"),
    ("naive year 9999", raw(sale(sold_at="9999-12-31T23:59:59")), SkipReason.EVENT_TIME),
    ("tomorrow and more", raw(sale(sold_at="2016-01-03T00:00:00Z")), SkipReason.EVENT_TIME),
    ("a huge timestamp", raw(sale(sold_at=1e30)), SkipReason.SCHEMA),
    ("a huge price", raw(sale(sellingprice=1e300)), SkipReason.VALUE),
    ("an infinite price", raw(sale()).replace(b"8500.0", b"1e999"), SkipReason.SCHEMA),
    ("a 5000-digit price", raw(sale()).replace(b"8500.0", b"9" * 5000), SkipReason.NOT_JSON),
    ("a negative price", raw(sale(sellingprice=-1)), SkipReason.SCHEMA),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "reason"), HOSTILE_SALES, ids=[h[0] for h in HOSTILE_SALES]
)
def test_hostile_sales_are_skipped_with_their_reason(
    name: str, value: bytes | None, reason: SkipReason
) -> None:
    skipped = parse_sale(value, NOW)
    assert isinstance(skipped, Skipped)
    assert skipped.reason == reason
    assert skipped.detail


HOSTILE_SCORED: list[tuple[str, bytes | None, SkipReason]] = [
    ("broken json", b'{"auction_id": ', SkipReason.NOT_JSON),
    ("bad utf-8", b'{"auction_id": "\xc3\x28"}', SkipReason.NOT_JSON),
    ("features missing", raw({k: v for k, v in scored().items() if k != "features"}), "schema"),
    ("features as a list", raw(scored(features=[1, 2])), SkipReason.SCHEMA),
    ("price as text", raw(scored(predicted_price="x")), SkipReason.SCHEMA),
    ("model year 1", raw(scored(features=listing(year=1))), SkipReason.SCHEMA),
    ("odometer 1e30", raw(scored(features=listing(odometer=1e30))), SkipReason.SCHEMA),
    ("listed in year 9999", raw(scored(listed_at="9999-01-01T00:00:00Z")), "event_time"),
    ("listed in year 1", raw(scored(listed_at="0001-01-01T00:00:00+01:00")), "event_time"),
    ("scored in year 9999", raw(scored(scored_at="9999-01-01T00:00:00")), "event_time"),
    ("an infinite price", raw(scored()).replace(b"9000.0", b"1e999"), SkipReason.VALUE),
    ("a negative price", raw(scored(predicted_price=-5.0)), SkipReason.VALUE),
    ("a zero price", raw(scored(predicted_price=0.0)), SkipReason.VALUE),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "reason"), HOSTILE_SCORED, ids=[h[0] for h in HOSTILE_SCORED]
)
def test_hostile_scored_records_are_skipped_with_their_reason(
    name: str, value: bytes | None, reason: SkipReason
) -> None:
    skipped = parse_scored(value, NOW)
    assert isinstance(skipped, Skipped)
    assert skipped.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    for parse in (parse_scored, parse_sale):
        result = parse(value, NOW)
        assert isinstance(result, Skipped | ScoredRow | SaleRow)


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
FIELD_VALUES = JSON | st.datetimes(timezones=st.none() | st.timezones()).map(
    lambda t: t.isoformat()
)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={k: FIELD_VALUES for k in sale()}))
def test_any_sale_that_parses_is_aware_plausible_and_finite(fields: dict[str, Any]) -> None:
    result = parse_sale(json.dumps(fields).encode(), NOW)  # big ints and NaN included
    if isinstance(result, SaleRow):
        assert result.sold_at.utcoffset() == timedelta(0)
        assert EARLIEST_EVENT <= result.sold_at <= NOW + FUTURE_SLACK
        assert 0 < result.price < float("inf")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.datetimes(
                min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.none()
            ),
            st.sampled_from([UTC, timezone(timedelta(hours=-11)), timezone(timedelta(hours=13))]),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_no_parsed_sale_can_poison_the_watermark(
    events: list[tuple[int, datetime, timezone, bool]],
) -> None:
    """Whatever times arrive (naive, offset, year 1 or 9999), what passes the parser keeps
    the watermark aware and plausible, so a later ordinary sale still moves it."""
    marks = PartitionWatermark(partitions=3)
    for partition, wall, zone, naive in events:
        text = wall.isoformat() if naive else wall.replace(tzinfo=zone).isoformat()
        row = parse_sale(raw(sale(sold_at=text)), NOW)
        if isinstance(row, SaleRow):
            marks.update(partition, row.sold_at)  # must not raise (naive vs aware)
    if marks.value is not None:
        assert EARLIEST_EVENT <= marks.value <= NOW + FUTURE_SLACK
    latest = NOW + FUTURE_SLACK
    for partition in range(3):
        row = parse_sale(raw(sale(sold_at=latest.isoformat())), NOW)
        assert isinstance(row, SaleRow)
        marks.update(partition, row.sold_at)
    assert marks.value == latest
    assert marks.value - timedelta(hours=72) < latest  # the join's horizon never overflows
