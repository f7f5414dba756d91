"""The registered price model's own estimator, and its intervals: what the trainer fits
and the worker loads from the registry (MLflow pickles the pipeline, so both import this
module; it holds no training policy).

The model step of a market pipeline (:func:`trainer.market.fit_market_xgboost`) is a
:class:`MarketPriceRegressor`: two XGBoost models on log(price) minus the market's
reference price, one for listings with an mmr and one for those without. Its
``intervals_`` is the JSON table of :class:`trainer.intervals.ConformalIntervals`:
per group of listings (:func:`interval_group`), the log-residual quantiles of the
nominal level, so the worker's interval is ``price * exp(quantile)``.

>>> interval_group(has_mmr=np.array([True, False]), has_condition=np.array([False, True]))
array(['mmr_no_condition', 'no_mmr'], dtype=object)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from xgboost import XGBRegressor

INTERVAL_GROUPS: tuple[str, ...] = ("mmr", "mmr_no_condition", "no_mmr", "no_mmr_no_condition")


def interval_group(has_mmr: np.ndarray, has_condition: np.ndarray) -> np.ndarray:
    """Each listing's interval group: ``mmr`` or ``no_mmr``, and ``_no_condition``."""
    mmr = np.where(np.asarray(has_mmr, bool), "mmr", "no_mmr").astype(str)
    condition = np.where(np.asarray(has_condition, bool), "", "_no_condition").astype(str)
    groups: np.ndarray = np.char.add(mmr, condition).astype(object)
    return groups


def interval_bounds(
    table: Mapping[str, Any], log_price: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper prices from an intervals table (``ConformalIntervals.to_json()``);
    NaN for a group it has no quantiles for.

    >>> table = {"level": 0.8, "log_residual_quantiles": {"mmr": [-0.1, 0.2]}}
    >>> low, high = interval_bounds(table, np.log([1000.0, 1000.0]), np.array(["mmr", "x"]))
    >>> np.round(low, 1).tolist(), np.round(high, 1).tolist()
    ([904.8, nan], [1221.4, nan])
    """
    groups = np.asarray(groups, object)
    low = np.full(len(groups), np.nan)
    high = np.full(len(groups), np.nan)
    for name, (q_low, q_high) in table["log_residual_quantiles"].items():
        rows = groups == name
        low[rows], high[rows] = q_low, q_high
    log_price = np.asarray(log_price, dtype=float)
    return np.exp(log_price + low), np.exp(log_price + high)


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
            model = XGBRegressor(**(self.params or {}))
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
