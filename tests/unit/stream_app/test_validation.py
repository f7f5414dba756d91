"""Tests for stream_app.validation: every bad payload gets the right dead-letter reason."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gavel.schemas import DeadLetterReason, Listing
from stream_app.validation import Invalid, classify, describe, parse_listing

VALID: dict[str, Any] = {
    "auction_id": "a1",
    "listed_at": "2015-01-05T10:00:00Z",
    "year": 2012,
    "make": "Ford",
    "model": "Fusion",
    "condition": 3.5,
    "odometer": 41000.0,
}


def payload(drop: tuple[str, ...] = (), **changes: Any) -> bytes:
    data = {k: v for k, v in VALID.items() if k not in drop}
    return orjson.dumps({**data, **changes})


def invalid(raw: bytes | str | None) -> Invalid:
    result = parse_listing(raw)
    assert isinstance(result, Invalid), result
    return result


@pytest.mark.parametrize("raw", [payload(), payload().decode()])
def test_valid_listing(raw: bytes | str) -> None:
    listing = parse_listing(raw)
    assert isinstance(listing, Listing)
    assert listing.auction_id == "a1"
    assert listing.odometer == 41000.0
    assert listing.listed_at.utcoffset() is not None


@pytest.mark.parametrize("raw", [b"not json", b"{", b'{"auction_id": "a1",}', b"\xff\xfe\x00"])
def test_not_json(raw: bytes) -> None:
    result = invalid(raw)
    assert result.reason is DeadLetterReason.NOT_JSON
    assert result.errors[0]["type"] == "json_invalid"


@pytest.mark.parametrize("raw", [None, b"", ""])
def test_empty_payload(raw: bytes | str | None) -> None:
    result = invalid(raw)
    assert result.reason is DeadLetterReason.NOT_JSON
    assert result.detail == "empty payload"
    assert result.errors == []


@pytest.mark.parametrize("raw", [b"[]", b"[" + payload() + b"]", b"null", b'"a1"', b"42"])
def test_json_that_is_not_an_object_is_schema(raw: bytes) -> None:
    result = invalid(raw)
    assert result.reason is DeadLetterReason.SCHEMA
    assert result.errors == [{"loc": [], "type": "model_type", "msg": "Input should be an object"}]
    assert result.detail == "payload: Input should be an object"


@pytest.mark.parametrize("field", ["auction_id", "listed_at", "year", "make", "model"])
def test_missing_field_is_schema(field: str) -> None:
    result = invalid(payload(drop=(field,)))
    assert result.reason is DeadLetterReason.SCHEMA
    assert result.errors == [{"loc": [field], "type": "missing", "msg": "Field required"}]
    assert result.detail == f"{field}: Field required"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"year": "two thousand and twelve"}, "year"),
        ({"odometer": "far"}, "odometer"),
        ({"make": 12}, "make"),
        ({"listed_at": "yesterday"}, "listed_at"),
        ({"transmission": "cvt"}, "transmission"),
        ({"state": "california"}, "state"),
    ],
)
def test_wrong_type_is_schema(changes: dict[str, Any], field: str) -> None:
    result = invalid(payload(**changes))
    assert result.reason is DeadLetterReason.SCHEMA
    assert [error["loc"] for error in result.errors] == [[field]]


@pytest.mark.parametrize(
    ("changes", "field", "error_type"),
    [
        ({"odometer": -1250.0}, "odometer", "greater_than_equal"),
        ({"odometer": 2_000_000}, "odometer", "less_than_equal"),
        ({"condition": 42.0}, "condition", "less_than_equal"),
        ({"condition": 0.5}, "condition", "greater_than_equal"),
        ({"year": 2999}, "year", "value_error"),
        ({"year": 1900}, "year", "greater_than_equal"),
        ({"mmr": 0}, "mmr", "greater_than"),
    ],
)
def test_out_of_range(changes: dict[str, Any], field: str, error_type: str) -> None:
    result = invalid(payload(**changes))
    assert result.reason is DeadLetterReason.OUT_OF_RANGE
    assert [(e["loc"], e["type"]) for e in result.errors] == [([field], error_type)]


def test_several_out_of_range_fields_stay_out_of_range() -> None:
    result = invalid(payload(odometer=-1.0, condition=42.0))
    assert result.reason is DeadLetterReason.OUT_OF_RANGE
    assert [e["loc"] for e in result.errors] == [["condition"], ["odometer"]]


@pytest.mark.parametrize(
    "raw",
    [
        payload(drop=("make",), odometer=-1.0),
        payload(year="soon", condition=42.0),
        payload(drop=("model",), year=2999),
    ],
)
def test_mixed_errors_are_schema(raw: bytes) -> None:
    result = invalid(raw)
    assert result.reason is DeadLetterReason.SCHEMA
    assert len(result.errors) == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1]",
        payload(drop=("make", "model"), odometer=-1, condition=9, year="x", vin="v" * 40),
        payload(year=2999),
    ],
)
def test_errors_are_json_safe_and_do_not_echo_input(raw: bytes) -> None:
    result = invalid(raw)
    encoded = orjson.dumps(result.errors)  # raises on anything not JSON-safe
    assert orjson.loads(encoded) == result.errors
    for error in result.errors:
        assert set(error) == {"loc", "type", "msg"}
        assert all(isinstance(part, str) for part in error["loc"])
        assert isinstance(error["msg"], str)
    assert b"vvvvvvvv" not in encoded


def test_describe_caps_at_five_errors() -> None:
    errors = [{"loc": [f"f{i}"], "type": "missing", "msg": "Field required"} for i in range(7)]
    text = describe(errors)
    assert text.startswith("f0: Field required; f1: Field required")
    assert "f4: Field required" in text
    assert "f5" not in text
    assert text.endswith(" (+2 more)")
    assert describe([{"loc": ["features", "0"], "type": "x", "msg": "bad"}]) == "features.0: bad"


@pytest.mark.parametrize(
    ("types", "reason"),
    [
        ({"json_invalid"}, DeadLetterReason.NOT_JSON),
        ({"json_invalid", "missing"}, DeadLetterReason.NOT_JSON),
        ({"greater_than", "less_than_equal"}, DeadLetterReason.OUT_OF_RANGE),
        ({"finite_number"}, DeadLetterReason.OUT_OF_RANGE),
        ({"missing"}, DeadLetterReason.SCHEMA),
        ({"greater_than", "int_parsing"}, DeadLetterReason.SCHEMA),
    ],
)
def test_classify(types: set[str], reason: DeadLetterReason) -> None:
    assert classify([{"loc": [], "type": t, "msg": ""} for t in sorted(types)]) is reason
