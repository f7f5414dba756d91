"""The price model with market memory: XGBoost around the market's reference price.

The recipe (issue 12):

- inputs: the listing's columns plus its market features (:mod:`gavel.market`), passed
  through the pipeline's feature step as numeric columns (:func:`derive_market_features`);
- target: log price minus the market's reference price
  (:func:`gavel.market.reference_log_price`: the mmr moved by what the segment's recent
  sales fetched relative to theirs, or the segment's recent price level without an mmr).
  The reference is an offset, never a tree input, so a market move reaches the price in
  full even when it is larger than any the trees saw;
- missing-value augmentation: every training row is seen once more without its mmr, and a
  quarter of them without their condition, so that such listings get sensible prices;
- split-conformal intervals (:mod:`trainer.intervals`) calibrated on the validation
  period, carried by the pipeline's model step.

>>> from producers.sources.synthetic import generate_auctions
>>> from trainer.split import time_split
>>> auctions = with_market_features(generate_auctions(3_000, seed=1, end="2015-03-01"))
>>> model = train_market_model(time_split(auctions, "2015-02-15", test_days=14),
...                            params={"n_estimators": 50, "n_jobs": 1})
>>> priced = price_with_interval(model.fitted.pipeline, auctions.head(2).assign(mmr=None))
>>> bool((priced["low"] < priced["price"]).all() and (priced["price"] < priced["high"]).all())
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

from gavel.features import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    REFERENCE,
    TARGET,
    derive_features,
)
from gavel.market import MARKET_FEATURES, market_features
from shell.price_model import REGIMES as REGIMES
from shell.price_model import MarketPriceRegressor as MarketPriceRegressor
from shell.price_model import interval_bounds
from trainer.intervals import DEFAULT_LEVEL, ConformalIntervals, calibrate, interval_groups
from trainer.pipeline import CONTINUE_DEFAULTS, XGB_DEFAULTS, FittedModel
from trainer.split import TimeSplit

MODEL_MARKET_INPUTS: tuple[str, ...] = (
    REFERENCE,
    "mkt_level_hat",
    "mkt_mm_logp_90d",
    "mkt_mm_n_90d",
    "mkt_mmy_logp_90d",
    "mkt_mmy_n_90d",
)
"""What the model reads of the market: the reference (as its offset only) and, for the
trees, the segment's price levels. Not the ratios to mmr: trees that see them learn to undo
their moves, most of which are noise in training, and then undo a real shock too (frozen
model during the SUV shock: 1.13-1.17x its MAPE before, against 1.03-1.08x without)."""
CONDITION_SHARE = 0.25
MARKET_XGB_PARAMS: dict[str, Any] = {"max_depth": 7}
"""Changes to :data:`trainer.pipeline.XGB_DEFAULTS` for this model. Deeper trees: without
an mmr the model needs more interactions (a search of 8 settings, chosen on the validation
period of the Kaggle sample; the synthetic data were indifferent)."""


def with_market_features(
    frame: pd.DataFrame,
    sales: pd.DataFrame | None = None,
    sale_delay: pd.Timedelta | None = None,
) -> pd.DataFrame:
    """``frame`` (an auction frame) with its market features as of each listing's day.

    ``sales`` defaults to the frame's own auctions, sold ``sale_delay`` after listing (none
    for the Kaggle data, whose ``listed_at`` is the sale date).
    """
    if sales is None:
        sales = frame.assign(sold_at=frame["listed_at"] + (sale_delay or pd.Timedelta(0)))
    features = market_features(frame, sales)
    kept = frame.drop(columns=list(MARKET_FEATURES), errors="ignore")
    return pd.concat([kept, features], axis=1)


def without_mmr(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(mmr=np.nan)


def augment_missing(
    frame: pd.DataFrame,
    y: pd.Series,
    *,
    seed: int = 0,
    condition_share: float = CONDITION_SHARE,
) -> tuple[pd.DataFrame, pd.Series]:
    """The rows as they are, then again without their mmr; in both copies a share of the
    rows (drawn independently) also loses its condition. Missing values the listings
    really have stay missing.

    >>> frame = pd.DataFrame({"mmr": [9000.0, 8000.0], "condition": [3.0, 4.0]})
    >>> out, y = augment_missing(frame, pd.Series([1.0, 2.0]), condition_share=0.0)
    >>> out["mmr"].isna().tolist(), y.tolist()
    ([False, False, True, True], [1.0, 2.0, 1.0, 2.0])
    """
    rng = np.random.default_rng(seed)
    copies = []
    for mask_mmr in (False, True):
        copy = frame.copy()
        if mask_mmr:
            copy["mmr"] = np.nan
        copy.loc[rng.random(len(copy)) < condition_share, "condition"] = np.nan
        copies.append(copy)
    return pd.concat(copies, ignore_index=True), pd.concat([y, y], ignore_index=True)


def _encoder(market_inputs: Sequence[str]) -> ColumnTransformer:
    return ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=-1,
                    encoded_missing_value=-2,
                    min_frequency=5,
                    dtype=np.float32,
                ),
                list(CATEGORICAL_FEATURES),
            ),
            ("numeric", "passthrough", [*NUMERIC_FEATURES, *market_inputs]),
        ],
        verbose_feature_names_out=False,
    )


def fit_market_xgboost(
    train: pd.DataFrame,
    y_train: pd.Series,
    validation: pd.DataFrame,
    y_validation: pd.Series,
    params: Mapping[str, Any] | None = None,
    inputs: Sequence[str] = MODEL_MARKET_INPUTS,
) -> FittedModel:
    """The market model's pipeline on already augmented frames (listing columns plus
    market features), early-stopped on ``validation``."""
    if REFERENCE not in inputs:
        raise ValueError(f"the model's inputs must include {REFERENCE!r}, its offset")
    params = {**XGB_DEFAULTS, **MARKET_XGB_PARAMS, **(params or {})}
    features = FunctionTransformer(derive_features)
    encode = _encoder(inputs)
    x_train = encode.fit_transform(features.fit_transform(train))
    x_validation = encode.transform(features.transform(validation))
    names = list(encode.get_feature_names_out())
    model = MarketPriceRegressor(names.index(REFERENCE), names.index("mmr"), params)
    model.fit(x_train, y_train.to_numpy(), eval_set=[(x_validation, y_validation.to_numpy())])
    pipeline = Pipeline([("features", features), ("encode", encode), ("model", model)])
    fitted = {**params, "best_iteration": model.best_iterations}
    return FittedModel("xgboost-market", pipeline, fitted)


def continue_market_xgboost(
    base: Pipeline,
    train: pd.DataFrame,
    y_train: pd.Series,
    validation: pd.DataFrame,
    y_validation: pd.Series,
    params: Mapping[str, Any] | None = None,
) -> FittedModel | None:
    """More boosting rounds on top of ``base`` (a pipeline of :func:`fit_market_xgboost`),
    its feature and encoding steps and its offsets kept; None for another kind of base."""
    steps = dict(getattr(base, "steps", []))
    model = steps.get("model")
    if not {"features", "encode"} <= steps.keys() or not isinstance(model, MarketPriceRegressor):
        return None
    features, encode = steps["features"], steps["encode"]
    x_train = encode.transform(features.transform(train))
    x_validation = encode.transform(features.transform(validation))
    params = {**(model.params or {}), **CONTINUE_DEFAULTS, **(params or {})}
    continued = MarketPriceRegressor(model.reference_column, model.mmr_column, params)
    continued.fit(
        x_train,
        y_train.to_numpy(),
        eval_set=[(x_validation, y_validation.to_numpy())],
        base=model,
    )
    pipeline = Pipeline([("features", features), ("encode", encode), ("model", continued)])
    fitted = {
        **params,
        "best_iteration": continued.best_iterations,
        "base_rounds": {n: int(model.booster(n).num_boosted_rounds()) for n in model.regressors_},
    }
    return FittedModel("xgboost-market-continued", pipeline, fitted)


def predict_log(pipeline: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """The log price a market pipeline predicts for ``frame`` (raw listing columns)."""
    steps = dict(pipeline.steps)
    x = steps["encode"].transform(steps["features"].transform(frame))
    log_price: np.ndarray = steps["model"].predict_log(x)
    return log_price


def price_with_interval(pipeline: Pipeline, frame: pd.DataFrame) -> pd.DataFrame:
    """Price and interval (columns ``price``, ``low``, ``high``) of each listing, from a
    market pipeline whose model step carries ``intervals_``."""
    log_price = predict_log(pipeline, frame)
    table = dict(pipeline.steps)["model"].intervals_
    low, high = interval_bounds(table, log_price, interval_groups(frame))
    return pd.DataFrame({"price": np.exp(log_price), "low": low, "high": high}, index=frame.index)


@dataclass(frozen=True)
class MarketModel:
    fitted: FittedModel
    intervals: ConformalIntervals


def training_frames(
    split: TimeSplit, seed: int = 0
) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    """Augmented training and validation frames (and prices) of ``split``."""
    train, y_train = augment_missing(
        split.train.drop(columns=[TARGET]), split.train[TARGET].astype(float), seed=seed
    )
    validation, y_validation = augment_missing(
        split.validation.drop(columns=[TARGET]),
        split.validation[TARGET].astype(float),
        seed=seed + 1,
    )
    return train, y_train, validation, y_validation


def train_market_model(
    split: TimeSplit,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    base: Pipeline | None = None,
) -> MarketModel:
    """The whole recipe on a time split whose frames carry their market features
    (:func:`with_market_features`): augment, fit (or continue ``base``), calibrate the
    intervals on the validation period and attach them to the model step."""
    frames = training_frames(split, seed)
    fitted = None
    if base is not None:
        fitted = continue_market_xgboost(base, *frames, params)
    if fitted is None:
        fitted = fit_market_xgboost(*frames, params)
    intervals = calibrate(lambda f: predict_log(fitted.pipeline, f), split.validation, level)
    # A plain table, so that the worker needs no trainer class to read it.
    dict(fitted.pipeline.steps)["model"].intervals_ = intervals.to_json()
    return MarketModel(fitted, intervals)
