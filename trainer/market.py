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
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder
from xgboost import XGBRegressor

from gavel.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET, derive_features
from gavel.market import MARKET_FEATURES, market_features, reference_log_price
from trainer.intervals import DEFAULT_LEVEL, ConformalIntervals, calibrate, interval_groups
from trainer.pipeline import CONTINUE_DEFAULTS, XGB_DEFAULTS, FittedModel
from trainer.split import TimeSplit

REFERENCE = "mkt_reference"
"""The reference log price, computed in the feature step from the mmr and the market."""
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


def derive_market_features(raw: pd.DataFrame) -> pd.DataFrame:
    """:func:`gavel.features.derive_features`, plus the market features as numeric columns
    (NaN when the frame has none) and the reference price.

    This is what ``derive_features`` itself should do once market features are part of
    the contract (see the report of issue 12).

    >>> raw = pd.DataFrame({"listed_at": [pd.Timestamp("2015-01-05", tz="UTC")],
    ...     "year": [2012], "make": ["Ford"], "model": ["Fusion"], "mmr": [10_000.0],
    ...     "mkt_ratio_hat": [-0.1]})
    >>> out = derive_market_features(raw)
    >>> round(float(np.exp(out.loc[0, REFERENCE]))), bool(np.isnan(out.loc[0, "mkt_mm_n_7d"]))
    (9048, True)
    """
    out = derive_features(raw)
    market = {
        column: (
            pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=float)
            if column in raw
            else np.full(len(raw), np.nan)
        )
        for column in MARKET_FEATURES
    }
    market[REFERENCE] = reference_log_price(
        out["mmr"].to_numpy(), market["mkt_ratio_hat"], market["mkt_level_hat"]
    )
    return pd.concat([out, pd.DataFrame(market, index=out.index)], axis=1)


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


REGIMES: tuple[str, ...] = ("mmr", "no_mmr")


class MarketPriceRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]  # sklearn is untyped
    """Two XGBoost models on log(price) - reference, one for listings with an mmr and one
    for those without, on encoded inputs; predicts dollars.

    ``reference_column`` is the position of the reference log price among the inputs: the
    offset, not a tree input (see :data:`MODEL_MARKET_INPUTS`); ``mmr_column`` that of the
    mmr, which picks the model. A row without a reference (no mmr and no recent sale in its
    segments) gets the training mean log price. One model for both regimes prices worse in
    both (Kaggle sample, validation period: MAPE 16.8% vs 16.2% with mmr, 23.3% vs 21.4%
    without). ``intervals_``, once set, are the model's conformal intervals.
    """

    def __init__(
        self,
        reference_column: int = -1,
        mmr_column: int = -1,
        params: Mapping[str, Any] | None = None,
    ):
        self.reference_column = reference_column
        self.mmr_column = mmr_column
        self.params = params

    def offset(self, x: np.ndarray) -> np.ndarray:
        reference = np.asarray(x[:, self.reference_column], dtype=float)
        offset: np.ndarray = np.where(np.isfinite(reference), reference, self.fallback_)
        return offset

    def tree_inputs(self, x: np.ndarray) -> np.ndarray:
        inputs: np.ndarray = np.delete(x, self.reference_column, axis=1)
        return inputs

    def regime(self, x: np.ndarray) -> np.ndarray:
        """Each row's model: ``mmr`` or ``no_mmr``."""
        mmr = np.asarray(x[:, self.mmr_column], dtype=float)
        regime: np.ndarray = np.where(np.isfinite(mmr) & (mmr > 0), "mmr", "no_mmr")
        return regime

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        eval_set: Sequence[tuple[np.ndarray, np.ndarray]] = (),
        base: MarketPriceRegressor | None = None,
    ) -> MarketPriceRegressor:
        """Fit on prices ``y``, early-stopping each model on its rows of ``eval_set``.
        With ``base``, continue its boosters (without the rounds early stopping rejected),
        with its offsets: they must not change under its trees."""
        log_y = np.log(np.asarray(y, dtype=float))
        self.fallback_: float = float(log_y.mean()) if base is None else base.fallback_
        rows = self.regime(x)
        evals = [(xv, np.log(np.asarray(yv, float)), self.regime(xv)) for xv, yv in eval_set]
        self.regressors_: dict[str, XGBRegressor] = {}
        for name in REGIMES:
            mine = rows == name
            if not mine.any():
                continue
            booster = None if base is None else base.booster(name)
            model = XGBRegressor(**{**XGB_DEFAULTS, **(self.params or {})})
            model.fit(
                self.tree_inputs(x[mine]),
                log_y[mine] - self.offset(x[mine]),
                eval_set=[
                    (self.tree_inputs(xv[r == name]), ly[r == name] - self.offset(xv[r == name]))
                    for xv, ly, r in evals
                    if (r == name).any()
                ]
                or None,
                xgb_model=booster,
                verbose=False,
            )
            self.regressors_[name] = model
        if not self.regressors_:
            raise ValueError("no training rows")
        return self

    def booster(self, name: str) -> Any:
        """The booster of regime ``name`` up to its best round (None if it has none)."""
        model = self.regressors_.get(name)
        if model is None:
            return None
        booster = model.get_booster()
        best = getattr(model, "best_iteration", None)
        return booster if best is None else booster[: best + 1]

    def predict_log(self, x: np.ndarray) -> np.ndarray:
        log_price = self.offset(x)
        rows = self.regime(x)
        trees = self.tree_inputs(x)
        for name in REGIMES:
            mine = rows == name
            if mine.any():
                # A regime never trained on (a training set without any mmr) uses the other.
                model = self.regressors_.get(name) or next(iter(self.regressors_.values()))
                log_price[mine] += model.predict(trees[mine])
        return log_price

    def predict(self, x: np.ndarray) -> np.ndarray:
        price: np.ndarray = np.exp(self.predict_log(x))
        return price

    @property
    def best_iterations(self) -> dict[str, int]:
        return {name: int(m.best_iteration) for name, m in self.regressors_.items()}


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
    params = {**MARKET_XGB_PARAMS, **(params or {})}
    features = FunctionTransformer(derive_market_features)
    encode = _encoder(inputs)
    x_train = encode.fit_transform(features.fit_transform(train))
    x_validation = encode.transform(features.transform(validation))
    names = list(encode.get_feature_names_out())
    model = MarketPriceRegressor(names.index(REFERENCE), names.index("mmr"), params)
    model.fit(x_train, y_train.to_numpy(), eval_set=[(x_validation, y_validation.to_numpy())])
    pipeline = Pipeline([("features", features), ("encode", encode), ("model", model)])
    fitted = {**XGB_DEFAULTS, **params, "best_iteration": model.best_iterations}
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
        **XGB_DEFAULTS,
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
    intervals: ConformalIntervals = dict(pipeline.steps)["model"].intervals_
    low, high = intervals.bounds(log_price, interval_groups(frame))
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
    dict(fitted.pipeline.steps)["model"].intervals_ = intervals
    return MarketModel(fitted, intervals)
