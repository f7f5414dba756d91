"""Training on a small frame: the price pipelines, their predictions and pickling."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from gavel.features import TARGET, listings_frame
from gavel.price_errors import mape
from gavel.schemas import LISTING_FIELDS, Listing
from producers.sources.frame import RECORD_COLUMNS
from trainer.pipeline import XGB_DEFAULTS, FittedModel, fit_baseline, fit_xgboost
from trainer.split import TimeSplit, auto_cutoff, time_split
from trainer.training import evaluate, features_and_target, mmr_metrics, reference_sample

XGB_PARAMS = {"n_estimators": 60}


def hand_built_auctions(n: int, seed: int) -> pd.DataFrame:
    """A small auction frame with RECORD_COLUMNS, used if the synthetic source is unavailable."""
    rng = np.random.default_rng(seed)
    makes = {"Ford": ["Fusion", "F-150", "Focus"], "Kia": ["Optima", "Soul"], "BMW": ["3 Series"]}
    base = {"Ford": 20000.0, "Kia": 17000.0, "BMW": 38000.0}
    make = rng.choice(list(makes), n)
    model = np.array([rng.choice(makes[m]) for m in make], dtype=object)
    listed_at = pd.Timestamp("2015-01-01", tz="UTC") + pd.to_timedelta(
        np.sort(rng.uniform(0, 180 * 86400, n)).round(), unit="s"
    )
    year = rng.integers(2000, 2015, n)
    age = np.maximum(2015 - year, 0)
    odometer = np.round(age * rng.uniform(8000, 16000, n) + rng.uniform(0, 5000, n))
    condition = np.round(rng.uniform(1.0, 5.0, n), 1)
    value = np.array([base[m] for m in make]) * 0.86**age * (0.8 + 0.06 * condition)
    mmr = np.round(value * rng.normal(1.0, 0.05, n) / 25) * 25
    price = np.maximum(np.round(value * rng.normal(1.0, 0.1, n) / 100) * 100, 100.0)
    frame = pd.DataFrame(
        {
            "auction_id": [f"hand-{seed}-{i:06d}" for i in range(n)],
            "listed_at": listed_at,
            "year": year,
            "make": make,
            "model": model,
            "trim": rng.choice(["Base", "SE", "LX", None], n),
            "body": rng.choice(["Sedan", "SUV", "Pickup"], n),
            "transmission": rng.choice(["automatic", "manual"], n, p=[0.9, 0.1]),
            "state": rng.choice(["ca", "fl", "tx", "oh"], n),
            "condition": condition,
            "odometer": odometer,
            "color": rng.choice(["black", "white", "silver"], n),
            "interior": rng.choice(["black", "gray"], n),
            "seller": rng.choice(["acme remarketing", "bank of cars"], n),
            "mmr": mmr,
            "vin": [f"vin{i:014d}" for i in range(n)],
            TARGET: price,
        }
    )
    return frame.loc[:, list(RECORD_COLUMNS)]


def small_auctions() -> pd.DataFrame:
    try:
        from producers.sources.synthetic import generate_auctions
    except ImportError:
        return hand_built_auctions(4000, seed=1)
    return generate_auctions(4000, seed=1)


@pytest.fixture(scope="module")
def split() -> TimeSplit:
    frame = small_auctions()
    return time_split(frame, auto_cutoff(frame), test_days=30)


@pytest.fixture(scope="module")
def xgb(split: TimeSplit) -> FittedModel:
    x_train, y_train = features_and_target(split.train)
    x_validation, y_validation = features_and_target(split.validation)
    return fit_xgboost(x_train, y_train, x_validation, y_validation, XGB_PARAMS)


@pytest.fixture(scope="module")
def baseline(split: TimeSplit) -> FittedModel:
    return fit_baseline(*features_and_target(split.train))


@pytest.fixture(params=["xgb", "baseline"])
def fitted(request: pytest.FixtureRequest) -> FittedModel:
    return request.getfixturevalue(request.param)


def awkward_listings(split: TimeSplit) -> pd.DataFrame:
    """Raw listing columns with unseen values and every optional field missing somewhere."""
    rows = features_and_target(split.test.head(8))[0].reset_index(drop=True)
    rows = rows.astype({"condition": object, "odometer": object, "mmr": object})
    rows.loc[0, ["make", "model"]] = ["Zorgmobile", "Q9000"]
    rows.loc[1, "model"] = "Never Heard Of It"
    rows.loc[2, ["trim", "body"]] = [None, np.nan]
    rows.loc[3, ["condition", "odometer", "mmr"]] = [None, None, None]
    rows.loc[4, ["condition", "odometer", "mmr"]] = [np.nan, np.nan, np.nan]
    rows.loc[5, ["trim", "body", "transmission", "state", "color", "interior"]] = "—"
    rows.loc[6, ["make", "body"]] = ["  FORD ", "sedan"]
    optional = ["trim", "body", "transmission", "state", "condition", "odometer"]
    rows.loc[7, [*optional, "color", "interior", "seller", "mmr", "vin"]] = None
    return rows


def assert_prices(predictions: Any, n: int) -> None:
    predictions = np.asarray(predictions, dtype=float)
    assert predictions.shape == (n,)
    assert np.isfinite(predictions).all()
    assert (predictions > 0).all()


def test_xgboost_fits_and_records_params(xgb: FittedModel) -> None:
    assert xgb.name == "xgboost"
    assert xgb.params["n_estimators"] == 60
    assert xgb.params["learning_rate"] == XGB_DEFAULTS["learning_rate"]  # defaults fill the rest
    assert 0 <= xgb.params["best_iteration"] < 60
    assert [name for name, _ in xgb.pipeline.steps] == ["features", "encode", "model"]


def test_baseline_fits(baseline: FittedModel) -> None:
    assert baseline.name == "ridge_baseline"
    assert baseline.params == {"alpha": 3.0, "min_frequency": 20}


def test_predictions_are_finite_positive_and_useful(fitted: FittedModel, split: TimeSplit) -> None:
    features, target = features_and_target(split.test)
    predictions = fitted.pipeline.predict(features)
    assert_prices(predictions, len(split.test))
    assert mape(target, predictions) < 0.4
    # Better than pricing every car at the training median.
    median = np.full(len(target), split.train[TARGET].median())
    assert mape(target, predictions) < 0.7 * mape(target, median)


def test_accepts_unseen_and_missing_values(fitted: FittedModel, split: TimeSplit) -> None:
    rows = awkward_listings(split)
    assert_prices(fitted.pipeline.predict(rows), len(rows))


def test_normalised_text_prices_the_same(fitted: FittedModel, split: TimeSplit) -> None:
    rows = features_and_target(split.test.head(5))[0]
    shouted = rows.assign(make=rows["make"].str.upper() + "  ", body=" " + rows["body"])
    np.testing.assert_allclose(fitted.pipeline.predict(shouted), fitted.pipeline.predict(rows))


def test_prices_listings_from_the_serving_path(fitted: FittedModel) -> None:
    listings = [
        Listing(
            auction_id="s1",
            listed_at=datetime(2015, 6, 10, 15, tzinfo=UTC),
            year=2011,
            make="Ford",
            model="Fusion",
            odometer=60000,
            condition=3.0,
            mmr=9000,
        ),
        Listing(
            auction_id="s2",
            listed_at=datetime(2015, 6, 10, 15, tzinfo=UTC),
            year=2013,
            make="Unheardof",
            model="X",
        ),
    ]
    assert_prices(fitted.pipeline.predict(listings_frame(listings)), 2)


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_pickles_and_predicts_the_same(
    fitted: FittedModel, split: TimeSplit, dumps: Callable[[Any], bytes]
) -> None:
    rows = pd.concat([features_and_target(split.test.head(20))[0], awkward_listings(split)])
    restored = pickle.loads(dumps(fitted.pipeline))
    np.testing.assert_array_equal(restored.predict(rows), fitted.pipeline.predict(rows))


def test_evaluate(xgb: FittedModel, split: TimeSplit) -> None:
    metrics, predictions = evaluate(xgb, split.test)
    assert set(metrics) == {"mape", "median_ape", "mae", "r2", "bias", "rows"}
    assert metrics["rows"] == len(split.test)
    assert predictions.index.equals(split.test.index)
    assert metrics["mape"] == pytest.approx(mape(split.test[TARGET], predictions))
    assert 0 < metrics["mape"] < 0.4
    assert metrics["r2"] > 0.5


def auctions_with_mmr(mmr: list[float | None], price: list[float]) -> pd.DataFrame:
    n = len(price)
    frame = hand_built_auctions(n, seed=5)
    return frame.assign(mmr=pd.Series(mmr, dtype=float), **{TARGET: price})


def test_mmr_metrics_known_values_and_skips_missing() -> None:
    frame = auctions_with_mmr([110.0, None, 180.0, np.nan], [100.0, 5000.0, 200.0, 9000.0])
    metrics = mmr_metrics(frame)
    assert metrics["rows"] == 2.0
    assert metrics["mape"] == pytest.approx(0.1)
    assert metrics["mae"] == pytest.approx(15.0)
    assert metrics["bias"] == pytest.approx(0.0)


def test_mmr_metrics_on_the_split(split: TimeSplit) -> None:
    metrics = mmr_metrics(split.test)
    assert metrics["rows"] == split.test["mmr"].notna().sum()
    assert 0 < metrics["mape"] < 1


def test_reference_sample_is_capped(xgb: FittedModel, split: TimeSplit) -> None:
    _, predictions = evaluate(xgb, split.test)
    reference = reference_sample(split.test, predictions, rows=100, seed=3)
    assert len(reference) == 100
    assert list(reference.columns) == [*LISTING_FIELDS, TARGET, "prediction", "held_out"]
    assert reference["held_out"].all()
    assert reference["listed_at"].is_monotonic_increasing
    assert list(reference.index) == list(range(100))
    assert reference["prediction"].notna().all()
    by_id = pd.Series(predictions.to_numpy(), index=split.test["auction_id"])
    np.testing.assert_array_equal(
        reference["prediction"].to_numpy(), by_id.loc[reference["auction_id"]].to_numpy()
    )
    again = reference_sample(split.test, predictions, rows=100, seed=3)
    pd.testing.assert_frame_equal(reference, again)
    other = reference_sample(split.test, predictions, rows=100, seed=4)
    assert set(other["auction_id"]) != set(reference["auction_id"])


def test_reference_sample_keeps_small_frames_whole(xgb: FittedModel, split: TimeSplit) -> None:
    test = split.test.head(30)
    _, predictions = evaluate(xgb, test)
    reference = reference_sample(test, predictions)
    assert len(reference) == 30
    assert reference["auction_id"].tolist() == test["auction_id"].tolist()
    assert reference[TARGET].tolist() == test[TARGET].tolist()
    np.testing.assert_array_equal(reference["prediction"].to_numpy(), predictions.to_numpy())


def test_hand_built_frame_follows_the_contract() -> None:
    """The fallback frame must stay usable when the synthetic source is not importable."""
    from producers.sources.frame import check_auction_frame

    frame = check_auction_frame(hand_built_auctions(500, seed=2))
    assert len(frame) == 500
    split = time_split(frame, auto_cutoff(frame), test_days=30)
    assert len(split.test) >= 5


def test_reference_sample_fills_up_with_seen_rows(xgb: FittedModel, split: TimeSplit) -> None:
    held_out = split.test.head(40)
    _, predictions = evaluate(xgb, held_out)
    seen = (split.train, evaluate(xgb, split.train)[1])
    reference = reference_sample(held_out, predictions, rows=100, seen=seen)
    assert len(reference) == 100
    assert reference["held_out"].sum() == 40
    assert set(reference.loc[reference["held_out"], "auction_id"]) == set(held_out["auction_id"])
    assert set(reference.loc[~reference["held_out"], "auction_id"]) <= set(
        split.train["auction_id"]
    )
    assert reference["listed_at"].is_monotonic_increasing
    # Enough held-out rows: nothing seen is added.
    full = reference_sample(split.test, evaluate(xgb, split.test)[1], rows=100, seen=seen)
    assert full["held_out"].all()
