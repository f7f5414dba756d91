"""Tests for gavel.features: the feature step shared by training and serving."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gavel.features import (
    CATEGORICAL_FEATURES,
    LISTED_YEAR,
    MARKET_COLUMNS,
    MODEL_FEATURES,
    NUMERIC_FEATURES,
    TARGET,
    derive_columns,
    derive_features,
    listing_columns,
    listings_frame,
)
from gavel.schemas import LISTING_FIELDS, Listing, Sale


def raw_frame(**columns: list[Any]) -> pd.DataFrame:
    n = len(next(iter(columns.values()))) if columns else 1
    base: dict[str, Any] = {
        "listed_at": [pd.Timestamp("2015-01-05 10:00", tz="UTC")] * n,
        "year": [2012] * n,
    }
    return pd.DataFrame({**base, **columns})


def is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" Ford ", "ford"),
        ("F-150", "f-150"),
        ("SUV", "suv"),
        ("\tCrew Cab\n", "crew cab"),
    ],
)
def test_text_is_stripped_and_lowered(value: str, expected: str) -> None:
    out = derive_features(raw_frame(make=[value], body=[value]))
    assert out.loc[0, "make"] == expected
    assert out.loc[0, "body"] == expected


@pytest.mark.parametrize(
    "value", ["—", "\u2013", "", "  ", "-", "nan", "NaN", "None", "null", None, np.nan, pd.NA]
)
def test_missing_text_becomes_nan_never_na(value: Any) -> None:
    out = derive_features(raw_frame(make=[value], trim=[value], color=[value]))
    for column in ("make", "trim", "color"):
        cell = out.loc[0, column]
        assert cell is not pd.NA
        assert cell is not None
        assert is_nan(cell), (column, cell)


def test_string_dtype_with_pd_na_becomes_nan() -> None:
    raw = raw_frame(make=pd.array(["Kia", pd.NA], dtype="string"))
    out = derive_features(raw)
    assert out.loc[0, "make"] == "kia"
    assert is_nan(out.loc[1, "make"])
    assert out["make"].dtype == object
    assert not any(value is pd.NA for value in out["make"])


def test_age_and_miles_per_year() -> None:
    raw = pd.DataFrame(
        {
            "listed_at": pd.to_datetime(["2015-01-05", "2015-06-01", "2015-03-01"], utc=True),
            "year": [2012, 2015, 2016],
            "odometer": [36000.0, 5000.0, 100.0],
        }
    )
    out = derive_features(raw)
    assert out["age"].tolist() == [3.0, 0.0, 0.0]
    # A car in its first year counts as half a year old, so miles_per_year stays finite.
    assert out["miles_per_year"].tolist() == [12000.0, 10000.0, 200.0]


def test_age_uses_utc_year_of_listing() -> None:
    raw = pd.DataFrame(
        {"listed_at": ["2015-12-31T22:00:00-05:00"], "year": [2010], "odometer": [60000.0]}
    )
    out = derive_features(raw)
    assert out.loc[0, "age"] == 6.0
    assert out.loc[0, "miles_per_year"] == 10000.0


def test_naive_and_string_timestamps_are_read_as_utc() -> None:
    raw = pd.DataFrame({"listed_at": ["2015-01-05 10:00:00"], "year": ["2011"]})
    out = derive_features(raw)
    assert out.loc[0, "year"] == 2011.0
    assert out.loc[0, "age"] == 4.0


def test_tolerates_missing_columns() -> None:
    out = derive_features(raw_frame())
    assert list(out.columns) == [*MODEL_FEATURES, *MARKET_COLUMNS]
    assert len(out) == 1
    for column in CATEGORICAL_FEATURES:
        assert is_nan(out.loc[0, column]), column
    for column in ("odometer", "condition", "mmr", "miles_per_year"):
        assert math.isnan(out.loc[0, column]), column
    assert out.loc[0, "age"] == 3.0


def test_numeric_features_are_float() -> None:
    raw = raw_frame(
        odometer=[41000, None],
        condition=pd.array([3, pd.NA], dtype="Int64"),
        mmr=pd.array([9100.0, pd.NA], dtype="Float64"),
    )
    raw["year"] = raw["year"].astype("int32")
    out = derive_features(raw)
    for column in NUMERIC_FEATURES:
        assert out[column].dtype == np.float64, column
    assert out.loc[0, ["odometer", "condition", "mmr"]].tolist() == [41000.0, 3.0, 9100.0]
    assert out.loc[1, ["odometer", "condition", "mmr"]].isna().all()


def test_unparseable_numbers_become_nan() -> None:
    out = derive_features(raw_frame(odometer=["lots"], year=["old"]))
    assert math.isnan(out.loc[0, "odometer"])
    assert math.isnan(out.loc[0, "year"])
    assert math.isnan(out.loc[0, "age"])


def test_column_order_and_index_preserved() -> None:
    raw = raw_frame(make=["Ford", "Kia"], odometer=[1.0, 2.0])
    raw.index = pd.Index([10, 7])
    raw = raw[["odometer", "make", "listed_at", "year"]]
    out = derive_features(raw)
    assert list(out.columns) == [*MODEL_FEATURES, *MARKET_COLUMNS]
    assert list(out.index) == [10, 7]
    assert out.loc[7, "make"] == "kia"


def make_listing(auction_id: str, **overrides: Any) -> Listing:
    data: dict[str, Any] = {
        "auction_id": auction_id,
        "listed_at": datetime(2015, 1, 5, tzinfo=UTC),
        "year": 2012,
        "make": "Ford",
        "model": "Fusion",
        **overrides,
    }
    return Listing(**data)


def test_listings_frame_columns_and_values() -> None:
    listings = [
        make_listing("a1", odometer=41000, condition=3.5, state="ca"),
        make_listing("a2", make="Kia", trim="LX"),
    ]
    frame = listings_frame(listings)
    assert list(frame.columns) == list(LISTING_FIELDS)
    assert frame["auction_id"].tolist() == ["a1", "a2"]
    assert frame.loc[0, "odometer"] == 41000.0
    assert frame.loc[1, "trim"] == "LX"
    assert pd.isna(frame.loc[0, "trim"])
    assert frame.loc[0, "listed_at"] == pd.Timestamp("2015-01-05", tz="UTC")


def test_listings_frame_accepts_any_iterable_and_empty() -> None:
    frame = listings_frame(make_listing(f"a{i}") for i in range(3))
    assert len(frame) == 3
    empty = listings_frame([])
    assert list(empty.columns) == list(LISTING_FIELDS)
    assert len(empty) == 0


def test_serving_path_end_to_end() -> None:
    """Listings → listings_frame → derive_features, with unknowns left as NaN."""
    listings = [make_listing("a1", odometer=36000, trim="—"), make_listing("a2", body=" SUV ")]
    out = derive_features(listings_frame(listings))
    assert out["make"].tolist() == ["ford", "ford"]
    assert is_nan(out.loc[0, "trim"])
    assert out.loc[1, "body"] == "suv"
    assert out.loc[0, "miles_per_year"] == 12000.0
    assert math.isnan(out.loc[1, "odometer"])
    assert out["odometer"].dtype == np.float64


def test_the_target_is_the_sale_price() -> None:
    assert TARGET in Sale.model_fields
    assert TARGET not in MODEL_FEATURES


# -- the one derivation, from a frame or straight from listings ----------------------------

texts = (
    st.none()
    | st.sampled_from(["Ford", " SUV ", "—", "-", "nan", "None", "", "F-150"])
    | st.text(max_size=12)
)


@st.composite
def listings(draw: st.DrawFn) -> Listing:
    listed_at = draw(
        st.datetimes(
            min_value=datetime(1991, 1, 1),
            max_value=datetime(2098, 12, 31),
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]),
        )
    )
    maybe_number = st.none() | st.floats(1.0, 5.0)
    return Listing.model_validate(
        {
            "auction_id": "a",
            "listed_at": listed_at,
            "year": draw(st.integers(1950, listed_at.astimezone(UTC).year + 1)),
            "make": draw(st.sampled_from(["Ford", " kia", "—"])),
            "model": draw(st.sampled_from(["Fusion", "F-150 ", "-"])),
            "trim": draw(texts),
            "body": draw(texts),
            "transmission": draw(st.sampled_from([None, "automatic", "manual"])),
            "color": draw(texts),
            "interior": draw(texts),
            "condition": draw(maybe_number),
            "odometer": draw(st.none() | st.floats(0.0, 1_000_000.0)),
            "mmr": draw(st.none() | st.floats(0.5, 1_000_000.0)),
        }
    )


@settings(max_examples=150, deadline=None)
@given(batch=st.lists(listings(), min_size=1, max_size=20))
def test_listing_columns_derive_what_the_frame_derives(batch: list[Listing]) -> None:
    """The serving path (no frame) and the pipeline's path give the same model inputs."""
    from_frame = derive_features(listings_frame(batch))
    direct = pd.DataFrame(derive_columns(listing_columns(batch)))
    pd.testing.assert_frame_equal(direct, from_frame)


def test_listing_columns_keep_missing_values_missing() -> None:
    columns = listing_columns([make_listing("a1"), make_listing("a2", odometer=5.0, trim="SE")])
    assert columns[LISTED_YEAR].tolist() == [2015.0, 2015.0]
    assert np.isnan(columns["odometer"][0]) and columns["odometer"][1] == 5.0
    assert columns["trim"].tolist() == [None, "SE"]
    assert columns["trim"].dtype == object


def test_derive_columns_makes_every_model_feature_even_from_nothing() -> None:
    out = derive_columns({LISTED_YEAR: np.array([2015.0]), "year": np.array([2013.0])})
    assert list(out) == [*MODEL_FEATURES, *MARKET_COLUMNS]
    assert out["age"].tolist() == [2.0]
    assert all(is_nan(out[column][0]) for column in CATEGORICAL_FEATURES)
    assert np.isnan(out["miles_per_year"][0])


def test_market_features_pass_through_and_give_the_reference_price() -> None:
    raw = raw_frame(make=["Ford", "Kia"], odometer=[1.0, 2.0]).assign(
        mmr=[10_000.0, np.nan], mkt_ratio_hat=[-0.1, -0.1], mkt_level_hat=[9.0, 9.2]
    )
    out = derive_features(raw)
    assert np.isnan(out["mkt_mm_n_7d"]).all()  # not given: missing, never zero
    assert out["mkt_ratio_hat"].tolist() == [-0.1, -0.1]
    # With an mmr: the mmr moved by the segment's ratio; without: the segment's level.
    assert np.allclose(out["mkt_reference"], [np.log(10_000.0) - 0.1, 9.2])
