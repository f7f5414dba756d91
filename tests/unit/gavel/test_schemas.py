"""Tests for the event schemas in gavel.schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from gavel.schemas import (
    LISTING_FIELDS,
    DeadLetter,
    DeadLetterReason,
    DriftAlert,
    DriftKind,
    FeatureDrift,
    Listing,
    ModelAction,
    ModelUpdate,
    Sale,
    ScoredPrice,
    Severity,
)

LISTED_AT = datetime(2015, 1, 5, 10, 30, tzinfo=UTC)


def listing_data(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "auction_id": "a1",
        "listed_at": LISTED_AT,
        "year": 2012,
        "make": "Ford",
        "model": "Fusion",
    }
    return {**base, **overrides}


def error_fields(exc: ValidationError) -> list[str]:
    return [".".join(str(part) for part in error["loc"]) for error in exc.errors()]


def test_minimal_listing_has_every_optional_field_none() -> None:
    listing = Listing(**listing_data())
    optional = set(LISTING_FIELDS) - {"auction_id", "listed_at", "year", "make", "model"}
    assert optional == {
        *("trim", "body", "transmission", "state", "condition", "odometer"),
        *("color", "interior", "seller", "mmr", "vin"),
    }
    assert all(getattr(listing, name) is None for name in optional)
    assert listing.age_years == 3


def test_full_listing_keeps_values_and_strips_text() -> None:
    listing = Listing(
        **listing_data(make="  Ford ", trim=" SE "),
        body="Sedan",
        transmission="automatic",
        state="ca",
        condition=3.5,
        odometer=41000,
        color="black",
        interior="gray",
        seller="acme",
        mmr=9100,
        vin="1fahp3f2xcl100001",
    )
    assert listing.make == "Ford"
    assert listing.trim == "SE"
    assert listing.odometer == 41000.0
    assert listing.condition == 3.5
    assert listing.mmr == 9100.0


def test_extra_fields_are_ignored() -> None:
    listing = Listing(**listing_data(sellingprice=9000, saledate="whenever"))
    assert not hasattr(listing, "sellingprice")
    assert "sellingprice" not in listing.model_dump()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("auction_id", ""),
        ("auction_id", "x" * 129),
        ("year", 1949),
        ("make", ""),
        ("make", "   "),
        ("model", "m" * 81),
        ("trim", "t" * 201),
        ("transmission", "cvt"),
        ("state", "c"),
        ("state", "cal"),
        ("condition", 0.9),
        ("condition", 5.01),
        ("condition", 42.0),
        ("odometer", -1.0),
        ("odometer", 1_000_001.0),
        ("mmr", 0.0),
        ("mmr", -100.0),
        ("mmr", 1_000_001.0),
        ("vin", "v" * 33),
    ],
)
def test_listing_rejects_out_of_range(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        Listing(**listing_data(**{field: value}))
    assert error_fields(caught.value) == [field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("year", 1950),
        ("condition", 1.0),
        ("condition", 5.0),
        ("odometer", 0.0),
        ("odometer", 1_000_000.0),
        ("mmr", 1_000_000.0),
        ("transmission", "manual"),
    ],
)
def test_listing_accepts_boundaries(field: str, value: Any) -> None:
    assert getattr(Listing(**listing_data(**{field: value})), field) == value


def test_next_model_year_is_already_on_sale() -> None:
    assert Listing(**listing_data(year=2016)).year == 2016


@pytest.mark.parametrize("year", [2017, 2999])
def test_model_year_not_on_sale_yet_is_rejected(year: int) -> None:
    with pytest.raises(ValidationError) as caught:
        Listing(**listing_data(year=year))
    (error,) = caught.value.errors()
    assert error["loc"] == ("year",)
    assert error["type"] == "value_error"
    assert f"model year {year} is not on sale yet at 2015-01-05" in error["msg"]


def test_model_year_check_uses_utc_listing_year() -> None:
    # 23:00 on New Year's Eve in New York is already 2016 in UTC, so 2017 models are on sale.
    new_york = timezone(timedelta(hours=-5))
    listing = Listing(**listing_data(listed_at=datetime(2015, 12, 31, 23, tzinfo=new_york)))
    assert listing.listed_at.year == 2016
    assert Listing(**listing_data(listed_at=listing.listed_at, year=2017)).year == 2017


def test_age_is_never_negative() -> None:
    assert Listing(**listing_data(year=2016)).age_years == 0


def test_naive_datetime_becomes_utc() -> None:
    listing = Listing(**listing_data(listed_at=datetime(2015, 1, 5, 10, 30)))
    assert listing.listed_at.tzinfo is not None
    assert listing.listed_at.utcoffset() == timedelta(0)
    assert listing.listed_at == LISTED_AT


@pytest.mark.parametrize(
    "value",
    [
        "2015-01-05T10:30:00",
        "2015-01-05T10:30:00Z",
        "2015-01-05T12:30:00+02:00",
        datetime(2015, 1, 5, 5, 30, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_datetimes_are_normalised_to_utc(value: Any) -> None:
    listed_at = Listing(**listing_data(listed_at=value)).listed_at
    assert listed_at.utcoffset() == timedelta(0)
    assert (listed_at.hour, listed_at.minute) == (10, 30)


def test_sale_requires_positive_price_and_utc_time() -> None:
    sale = Sale(auction_id="a1", sold_at=datetime(2015, 1, 5, 12), sellingprice=9100)
    assert sale.sold_at == datetime(2015, 1, 5, 12, tzinfo=UTC)
    with pytest.raises(ValidationError):
        Sale(auction_id="a1", sold_at=LISTED_AT, sellingprice=0)


def test_listing_json_includes_nulls() -> None:
    text = Listing(**listing_data()).to_json_bytes().decode()
    assert '"trim":null' in text
    assert '"listed_at":"2015-01-05T10:30:00Z"' in text


def roundtrip(event: BaseModel) -> BaseModel:
    payload = event.to_json_bytes()  # type: ignore[attr-defined]  # every event class has it
    assert isinstance(payload, bytes)
    return type(event).model_validate_json(payload)


def test_listing_roundtrips() -> None:
    listing = Listing(**listing_data(condition=2.5, odometer=12.5, state="OH"))
    assert roundtrip(listing) == listing


def test_scored_price_roundtrips_with_features() -> None:
    listing = Listing(**listing_data(odometer=41000.0, mmr=9100.0))
    scored = ScoredPrice(
        auction_id="a1",
        predicted_price=9012.34,
        model_name="gavel-price",
        model_version="3",
        listed_at=listing.listed_at,
        scored_at=datetime(2015, 1, 5, 10, 30, 1),
        features=listing,
    )
    back = roundtrip(scored)
    assert back == scored
    assert isinstance(back, ScoredPrice)
    assert back.features == listing
    assert back.scored_at.tzinfo is not None


def test_dead_letter_roundtrips() -> None:
    letter = DeadLetter(
        reason=DeadLetterReason.OUT_OF_RANGE,
        detail="odometer: too small",
        errors=[{"loc": ["odometer"], "type": "greater_than_equal", "msg": "too small"}],
        source_topic="auctions.listed",
        partition=2,
        offset=41,
        key="a1",
        raw_payload='{"odometer": -1} \ufffd',
    )
    back = roundtrip(letter)
    assert back == letter
    assert isinstance(back, DeadLetter)
    assert back.reason is DeadLetterReason.OUT_OF_RANGE
    assert back.dead_lettered_at.utcoffset() == timedelta(0)


def test_dead_letter_defaults() -> None:
    before = datetime.now(UTC)
    letter = DeadLetter(
        reason="not_json", detail="x", source_topic="t", partition=0, offset=0, raw_payload=""
    )
    assert letter.reason is DeadLetterReason.NOT_JSON
    assert letter.errors == []
    assert letter.key is None
    assert before <= letter.dead_lettered_at <= datetime.now(UTC)


def test_drift_alert_roundtrips() -> None:
    alert = DriftAlert(
        kind=DriftKind.DATA,
        severity=Severity.CRITICAL,
        window_start=datetime(2015, 3, 1),
        window_end=datetime(2015, 3, 2),
        window_size=1000,
        model_name="gavel-price",
        model_version="2",
        drifted_features=[
            FeatureDrift(
                feature="odometer", score=0.01, threshold=0.05, stattest="ks", drifted=True
            )
        ],
        share_drifted=0.25,
        mape=0.31,
        reference_mape=0.12,
    )
    back = roundtrip(alert)
    assert back == alert
    assert isinstance(back, DriftAlert)
    assert back.drifted_features[0].feature == "odometer"
    assert len(alert.alert_id) == 32
    assert alert.detector == "window"


def test_drift_alert_ids_follow_kind_version_and_window() -> None:
    common: dict[str, Any] = {
        "kind": "prediction",
        "severity": "warning",
        "window_start": LISTED_AT,
        "window_end": LISTED_AT,
        "window_size": 1,
        "model_name": "m",
        "model_version": "1",
    }
    first = DriftAlert(**common)
    assert DriftAlert(**{**common, "severity": "critical"}).alert_id == first.alert_id
    assert DriftAlert(**{**common, "kind": "data"}).alert_id != first.alert_id
    assert DriftAlert(**{**common, "model_version": "2"}).alert_id != first.alert_id
    later = LISTED_AT + timedelta(seconds=1)
    assert DriftAlert(**{**common, "window_end": later}).alert_id != first.alert_id
    assert DriftAlert(**{**common, "alert_id": "given"}).alert_id == "given"


def test_model_update_roundtrips() -> None:
    update = ModelUpdate(
        action=ModelAction.PROMOTED,
        model_name="gavel-price",
        version="4",
        champion_version="4",
        previous_version="3",
        reason="challenger MAPE 10% beats champion",
        metrics={"test_mape": 0.1, "champion_test_mape": 0.12},
        alert_id="abc",
    )
    back = roundtrip(update)
    assert back == update
    assert isinstance(back, ModelUpdate)
    assert back.action is ModelAction.PROMOTED
    assert back.metrics == {"test_mape": 0.1, "champion_test_mape": 0.12}


@pytest.mark.parametrize("bad", [{"action": "deleted"}, {"metrics": {"mape": "low"}}])
def test_model_update_rejects_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ModelUpdate(**{"action": "promoted", "model_name": "m", "version": "1", **bad})
