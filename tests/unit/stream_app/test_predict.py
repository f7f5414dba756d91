"""Tests for the POST /predict request contract (stream_app.predict)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from stream_app import predict
from stream_app.predict import parse_predict_request

CAR: dict[str, Any] = {"year": 2012, "make": "Ford", "model": "Fusion", "odometer": 41000}


def body(value: Any) -> bytes:
    return orjson.dumps(value)


def test_single_object_gets_defaults() -> None:
    before = datetime.now(UTC)
    listings, errors = parse_predict_request(body(CAR))
    after = datetime.now(UTC)
    assert errors == []
    (listing,) = listings
    assert listing.auction_id == "request-0"
    assert before <= listing.listed_at <= after
    assert listing.listed_at.utcoffset() is not None
    assert (listing.make, listing.model, listing.odometer) == ("Ford", "Fusion", 41000.0)


def test_given_id_and_time_are_kept() -> None:
    listings, errors = parse_predict_request(
        body({**CAR, "auction_id": "mine", "listed_at": "2015-03-01T12:00:00"})
    )
    assert errors == []
    assert listings[0].auction_id == "mine"
    assert listings[0].listed_at == datetime(2015, 3, 1, 12, tzinfo=UTC)


def test_list_gets_indexed_ids_and_one_time() -> None:
    listings, errors = parse_predict_request(
        body([CAR, {**CAR, "make": "Kia"}, {**CAR, "auction_id": "x"}])
    )
    assert errors == []
    assert [listing.auction_id for listing in listings] == ["request-0", "request-1", "x"]
    assert [listing.make for listing in listings] == ["Ford", "Kia", "Ford"]
    assert len({listing.listed_at for listing in listings}) == 1


def test_list_errors_carry_their_index_and_no_listings_are_returned() -> None:
    items = [CAR, {"year": 2012, "make": "Ford"}, CAR, {**CAR, "odometer": -1}, 7]
    listings, errors = parse_predict_request(body(items))
    assert listings == []
    assert [(e["index"], e["loc"], e["type"]) for e in errors] == [
        (1, ["model"], "missing"),
        (3, ["odometer"], "greater_than_equal"),
        (4, [], "model_type"),
    ]
    assert all(set(error) == {"index", "loc", "type", "msg"} for error in errors)
    orjson.dumps(errors)  # JSON-safe


def test_single_object_errors_have_no_index() -> None:
    listings, errors = parse_predict_request(body({"year": 2999, "make": "", "model": "X"}))
    assert listings == []
    assert {e["index"] for e in errors} == {None}
    assert sorted(e["loc"][0] for e in errors) == ["make", "year"]


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff"])
def test_invalid_json(raw: bytes) -> None:
    listings, errors = parse_predict_request(raw)
    assert listings == []
    (error,) = errors
    assert (error["index"], error["loc"], error["type"]) == (None, [], "json_invalid")
    assert error["msg"]


@pytest.mark.parametrize("value", [[], "a car", 42, None, True])
def test_empty_list_or_wrong_top_level_type(value: Any) -> None:
    listings, errors = parse_predict_request(body(value))
    assert listings == []
    assert errors == [
        {
            "index": None,
            "loc": [],
            "type": "model_type",
            "msg": "expected a listing object or a non-empty array of listings",
        }
    ]


def test_too_many_listings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predict, "MAX_LISTINGS_PER_REQUEST", 3)
    listings, errors = parse_predict_request(body([CAR] * 4))
    assert listings == []
    assert [(e["type"], e["msg"]) for e in errors] == [
        ("too_long", "at most 3 listings per request")
    ]
    listings, errors = parse_predict_request(body([CAR] * 3))
    assert (len(listings), errors) == (3, [])
