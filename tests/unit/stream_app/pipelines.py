"""Small fitted champion pipelines for the scorer's tests, fitted once per session.

Few, fast rounds with early stopping, so that every model has trees past its
``best_iteration``: prices that used every tree would differ, which is what the parity
tests must be able to notice.
"""

from __future__ import annotations

import functools

import pandas as pd
from sklearn.pipeline import Pipeline

from gavel.schemas import Listing
from producers.sources.scenarios import MarketShock, NewModels
from producers.sources.synthetic import generate_auctions
from producers.timeline import listing_payloads
from trainer.pipeline import continue_xgboost, fit_xgboost
from trainer.training import features_and_target

FAST = {"n_estimators": 120, "learning_rate": 0.3, "early_stopping_rounds": 4, "n_jobs": 1}


@functools.cache
def history() -> pd.DataFrame:
    return generate_auctions(5000, start="2015-01-01", end="2015-04-01", seed=7)


@functools.cache
def recent() -> pd.DataFrame:
    """Sales after a market shock, to continue the champion's boosting on."""
    shock = MarketShock("2015-04-01", {"body": "suv"}, price_change=-0.3)
    return generate_auctions(2500, start="2015-04-01", end="2015-05-01", seed=8, scenarios=[shock])


@functools.cache
def fresh() -> Pipeline:
    """A champion as ``gavel train`` fits one (fewer rounds)."""
    frame = history()
    train, validation = frame.iloc[:4000], frame.iloc[4000:]
    fitted = fit_xgboost(*features_and_target(train), *features_and_target(validation), FAST)
    return fitted.pipeline


@functools.cache
def continued() -> Pipeline:
    """The champion's boosting continued on the shocked sales, as a retraining does."""
    frame = recent()
    train, validation = frame.iloc[:2000], frame.iloc[2000:]
    fitted = continue_xgboost(
        fresh(), *features_and_target(train), *features_and_target(validation), FAST
    )
    assert fitted is not None
    return fitted.pipeline


def listings(n: int, seed: int, new_models: float = 0.1) -> list[Listing]:
    """Listings as the worker reads them (JSON, then validation), some of new makes."""
    frame = generate_auctions(
        n,
        start="2015-05-01",
        end="2015-06-01",
        seed=seed,
        scenarios=[NewModels("2015-05-01", share=new_models)],
    )
    return [Listing.model_validate_json(payload) for payload in listing_payloads(frame)]


@functools.cache
def market_auctions() -> pd.DataFrame:
    """Auctions with their market features as of each listing's day (sold 2 h later)."""
    from trainer.market import with_market_features

    frame = generate_auctions(6000, start="2015-01-01", end="2015-05-01", seed=9)
    return with_market_features(frame, sale_delay=pd.Timedelta(hours=2))


@functools.cache
def market() -> Pipeline:
    """A champion of the market recipe (two boosters, the reference price as offset,
    intervals), as ``gavel train`` fits one (fewer rounds)."""
    from trainer.market import train_market_model
    from trainer.split import time_split

    split = time_split(market_auctions(), "2015-04-01", test_days=20)
    return train_market_model(split, {**FAST, "max_depth": 4}).fitted.pipeline
