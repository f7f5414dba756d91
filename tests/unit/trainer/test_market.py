"""The market model: the reference is an offset the trees cannot undo, listings without
mmr, condition or market history get sensible prices, intervals travel with the model."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from gavel.features import TARGET, derive_features
from gavel.market import MARKET_FEATURES
from gavel.price_errors import mape
from producers.sources.scenarios import MarketDrift
from producers.sources.synthetic import generate_auctions
from trainer.intervals import GROUPS, interval_groups
from trainer.market import (
    REFERENCE,
    MarketModel,
    MarketPriceRegressor,
    continue_market_xgboost,
    fit_market_xgboost,
    predict_log,
    price_with_interval,
    train_market_model,
    training_frames,
    with_market_features,
)
from trainer.split import time_split

SMALL = {"n_estimators": 200, "n_jobs": 1}


@pytest.fixture(scope="module")
def auctions() -> pd.DataFrame:
    drift = MarketDrift("2015-01-01")
    frame = generate_auctions(12_000, seed=4, start="2015-01-01", end="2015-04-01",
                              scenarios=[drift])  # fmt: skip
    return with_market_features(frame, sale_delay=pd.Timedelta(hours=2))


@pytest.fixture(scope="module")
def model(auctions: pd.DataFrame) -> MarketModel:
    return train_market_model(time_split(auctions, "2015-03-01", test_days=31), SMALL)


def listings(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[TARGET])


def test_market_features_reach_the_model_as_numeric_columns(auctions: pd.DataFrame) -> None:
    derived = derive_features(listings(auctions.head(50)))
    assert set(MARKET_FEATURES) <= set(derived.columns)
    assert derived[REFERENCE].notna().all()
    bare = derive_features(listings(auctions.head(5)).drop(columns=list(MARKET_FEATURES)))
    assert bare[list(MARKET_FEATURES)].isna().all(axis=None)


def test_a_market_move_reaches_the_price_in_full(
    model: MarketModel, auctions: pd.DataFrame
) -> None:
    """The reference is the offset and no tree sees it: moving a segment's ratio to mmr by
    -0.3 (beyond anything in training) moves the log price by exactly -0.3."""
    rows = listings(auctions.tail(200))
    moved = rows.assign(mkt_ratio_hat=rows["mkt_ratio_hat"] - 0.3)
    shift = predict_log(model.fitted.pipeline, moved) - predict_log(model.fitted.pipeline, rows)
    assert np.allclose(shift, -0.3)


def test_the_trees_never_see_the_reference(model: MarketModel) -> None:
    step = dict(model.fitted.pipeline.steps)["model"]
    assert isinstance(step, MarketPriceRegressor)
    encoded = dict(model.fitted.pipeline.steps)["encode"].get_feature_names_out().tolist()
    assert encoded[step.reference_column] == REFERENCE
    assert encoded[step.mmr_column] == "mmr"
    for regressor in step.regressors_.values():
        assert regressor.n_features_in_ == len(encoded) - 1


def test_prices_stay_sensible_without_mmr_condition_or_history(
    model: MarketModel, auctions: pd.DataFrame
) -> None:
    test = auctions[auctions["listed_at"] >= "2015-03-01"]
    y = test[TARGET]
    full = mape(y, model.fitted.pipeline.predict(listings(test)))
    no_mmr = mape(y, model.fitted.pipeline.predict(listings(test).assign(mmr=np.nan)))
    no_condition = mape(y, model.fitted.pipeline.predict(listings(test).assign(condition=np.nan)))
    amnesic = listings(test).drop(columns=list(MARKET_FEATURES))
    no_history = mape(y, model.fitted.pipeline.predict(amnesic.assign(mmr=np.nan)))
    assert full < 0.25
    assert no_mmr < 1.6 * full and no_condition < 1.3 * full
    assert no_history < 0.6  # the make, model and age alone: far from the 600% of before


def test_intervals_cover_about_their_level_in_every_group(
    model: MarketModel, auctions: pd.DataFrame
) -> None:
    assert set(model.intervals.quantiles) == set(GROUPS)
    test = auctions[auctions["listed_at"] >= "2015-03-01"]
    for frame in (test, test.assign(mmr=np.nan), test.assign(condition=np.nan)):
        priced = price_with_interval(model.fitted.pipeline, listings(frame))
        covered = (frame[TARGET] >= priced["low"]) & (frame[TARGET] <= priced["high"])
        assert 0.72 < covered.mean() < 0.88
        assert (priced["low"] < priced["price"]).all() and (priced["price"] < priced["high"]).all()


def test_intervals_travel_with_the_pickled_pipeline(
    model: MarketModel, auctions: pd.DataFrame
) -> None:
    pipeline = pickle.loads(pickle.dumps(model.fitted.pipeline))
    rows = listings(auctions.tail(20))
    pd.testing.assert_frame_equal(
        price_with_interval(pipeline, rows), price_with_interval(model.fitted.pipeline, rows)
    )
    assert set(interval_groups(rows)) <= set(model.intervals.quantiles)


def test_continuing_the_boosting_keeps_the_offsets(
    model: MarketModel, auctions: pd.DataFrame
) -> None:
    split = time_split(auctions, "2015-03-20", test_days=12)
    frames = training_frames(time_split(split.test, "2015-03-29", test_days=3))
    continued = continue_market_xgboost(model.fitted.pipeline, *frames, {"n_jobs": 1})
    assert continued is not None
    base = dict(model.fitted.pipeline.steps)["model"]
    step = dict(continued.pipeline.steps)["model"]
    assert step.fallback_ == base.fallback_
    assert continued.params["base_rounds"] == {
        name: regressor.best_iteration + 1 for name, regressor in base.regressors_.items()
    }
    rows = listings(auctions.tail(100))
    assert np.isfinite(continued.pipeline.predict(rows)).all()
    assert continue_market_xgboost(object(), *frames) is None  # type: ignore[arg-type]  # not a pipeline


def test_the_reference_must_be_an_input(auctions: pd.DataFrame) -> None:
    frames = training_frames(time_split(auctions, "2015-03-01", test_days=31))
    with pytest.raises(ValueError, match="mkt_reference"):
        fit_market_xgboost(*frames, SMALL, inputs=("mkt_level_hat",))
