"""The synthetic generator: reproducible, on contract, valid listings, realistic shape."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gavel.schemas import Listing
from producers.sources.frame import RECORD_COLUMNS, check_auction_frame
from producers.sources.synthetic import (
    AUCTION_HOURS_UTC,
    CALIBRATION_PATH,
    Calibration,
    generate_auctions,
    load_calibration,
)

N = 20_000


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_auctions(N, seed=11)


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    return load_calibration()


def test_same_seed_gives_the_same_frame() -> None:
    first = generate_auctions(3_000, seed=5, start="2015-02-01", end="2015-03-01")
    again = generate_auctions(3_000, seed=5, start=date(2015, 2, 1), end="2015-03-01")
    pd.testing.assert_frame_equal(first, again)


def test_another_seed_gives_another_frame() -> None:
    first = generate_auctions(3_000, seed=5)
    other = generate_auctions(3_000, seed=6)
    assert not first["sellingprice"].equals(other["sellingprice"])
    assert not first["listed_at"].equals(other["listed_at"])
    assert other["auction_id"].iloc[0] == "syn-6-00000000"


def test_frame_follows_the_contract(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(RECORD_COLUMNS)
    pd.testing.assert_frame_equal(check_auction_frame(frame), frame)
    assert str(frame["listed_at"].dt.tz) == "UTC"
    assert frame["listed_at"].is_monotonic_increasing
    assert frame.index.equals(pd.RangeIndex(N))
    expected_ids = [f"syn-11-{i:08d}" for i in range(N)]
    assert frame["auction_id"].tolist() == expected_ids


def test_listing_times_fall_on_auction_days_and_hours(frame: pd.DataFrame) -> None:
    listed_at = frame["listed_at"]
    assert listed_at.min() >= pd.Timestamp("2015-01-01", tz="UTC")
    assert listed_at.max() < pd.Timestamp("2015-06-30", tz="UTC")
    assert set(listed_at.dt.hour) <= set(AUCTION_HOURS_UTC)
    assert listed_at.dt.dayofweek.max() <= 4  # the calibration has no weekend sales
    assert listed_at.dt.month.nunique() == 6


def test_custom_date_range_is_respected() -> None:
    frame = generate_auctions(500, start="2015-03-02", end="2015-03-04", seed=2)
    assert set(frame["listed_at"].dt.strftime("%Y-%m-%d")) == {"2015-03-02", "2015-03-03"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": -1}, "n must be"),
        ({"n": 10, "seed": -3}, "seed must be"),
        ({"n": 10, "start": "2015-02-01", "end": "2015-02-01"}, "must be after"),
        ({"n": 10, "start": "2015-02-01 10:30"}, "must be a date"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_auctions(**kwargs)  # type: ignore[arg-type]  # wrong on purpose


def committed() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CALIBRATION_PATH.read_text(encoding="utf-8"))
    return data


def test_a_calibration_without_models_is_refused() -> None:
    with pytest.raises(ValueError, match="has no models"):
        Calibration.from_dict({**committed(), "makes": {}})


def test_an_odometer_curve_with_gaps_is_refused() -> None:
    data = committed()
    del data["odometer"]["by_age"]["3"]
    with pytest.raises(ValueError, match="without gaps"):
        Calibration.from_dict(data)


def test_a_model_without_bodies_or_trims_borrows_its_makes_bodies() -> None:
    data = committed()
    make, entry = next(iter(data["makes"].items()))
    name, model = next(iter(entry["models"].items()))
    model["bodies"], model["trims"] = {}, {}
    calibration = Calibration.from_dict(data)
    frame = generate_auctions(3_000, seed=4, calibration=calibration)
    cars = frame[(frame["make"] == make) & (frame["model"] == name)]
    assert len(cars) and cars["trim"].isna().all()
    make_bodies = {b for m in entry["models"].values() for b in m["bodies"]}
    assert set(cars["body"]) <= make_bodies


def test_empty_frame_follows_the_contract() -> None:
    frame = generate_auctions(0)
    assert frame.empty
    assert list(check_auction_frame(frame).columns) == list(RECORD_COLUMNS)


def test_sampled_rows_validate_as_listings(frame: pd.DataFrame) -> None:
    sample = frame.sample(400, random_state=0)
    for row in sample.to_dict("records"):
        listing = Listing.model_validate(row)
        assert listing.auction_id == row["auction_id"]
        assert row["sellingprice"] > 0


def test_every_row_is_within_the_schema_bounds(frame: pd.DataFrame) -> None:
    listed_year = frame["listed_at"].dt.year
    assert (frame["year"] >= 1950).all()
    assert (frame["year"] <= listed_year + 1).all()
    assert frame["condition"].between(1, 5).all()
    assert frame["odometer"].between(0, 1_000_000).all()
    assert set(frame["transmission"]) <= {"automatic", "manual"}
    assert frame["state"].str.fullmatch(r"[a-z]{2}").all()
    assert (frame["mmr"] > 0).all() and (frame["mmr"] <= 1_000_000).all()
    assert (frame["sellingprice"] > 0).all()
    assert frame["vin"].str.len().eq(17).all()
    required = ["make", "model", "body", "state", "color", "interior", "seller", "mmr"]
    assert frame[required].notna().all().all()


def test_older_cars_have_more_miles_worse_condition_and_lower_prices(
    frame: pd.DataFrame,
) -> None:
    numbers = frame.assign(age=frame["listed_at"].dt.year - frame["year"])
    corr = numbers[["age", "odometer", "condition", "sellingprice"]].corr(method="spearman")
    assert corr.loc["age", "odometer"] > 0.6
    assert corr.loc["age", "condition"] < -0.3
    assert corr.loc["age", "sellingprice"] < -0.5
    assert corr.loc["condition", "sellingprice"] > 0.3


def test_mmr_is_a_good_but_imperfect_estimate(frame: pd.DataFrame) -> None:
    log_corr = np.corrcoef(np.log(frame["mmr"]), np.log(frame["sellingprice"]))[0, 1]
    assert log_corr > 0.9
    mape = (frame["mmr"] / frame["sellingprice"] - 1).abs().mean()
    assert 0.1 < mape < 0.35


def test_hierarchy_make_model_trim(frame: pd.DataFrame, calibration: Calibration) -> None:
    assert frame.groupby("model")["make"].nunique().max() == 1
    known_models = set(zip(calibration.make, calibration.model, strict=True))
    assert set(zip(frame["make"], frame["model"], strict=True)) <= known_models
    with_trim = frame.dropna(subset=["trim"])
    triples = zip(with_trim["make"], with_trim["model"], with_trim["trim"], strict=True)
    assert {(mk.lower(), md.lower(), tr.lower()) for mk, md, tr in triples} <= set(
        calibration.trim_offsets
    )


def test_category_shares_follow_the_calibration(
    frame: pd.DataFrame, calibration: Calibration
) -> None:
    model_share = np.diff(calibration.models.cum, prepend=0.0)
    ford_share = model_share[calibration.make == "Ford"].sum()
    assert frame["make"].eq("Ford").mean() == pytest.approx(ford_share, abs=0.01)
    top_transmission = calibration.transmission.values[0]
    share = frame["transmission"].eq(top_transmission).mean()
    assert share == pytest.approx(calibration.transmission.cum[0], abs=0.01)


def test_scale_one_million_rows() -> None:
    frame = generate_auctions(1_000_000, seed=3)
    assert len(frame) == 1_000_000
    assert frame["auction_id"].is_unique
    assert frame["listed_at"].is_monotonic_increasing
    assert frame["auction_id"].iloc[-1] == "syn-3-00999999"
