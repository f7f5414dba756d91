"""Continuing the champion's boosting on a drift window, and picking the better XGBoost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gavel.features import TARGET
from gavel.price_errors import mape
from tests.unit.trainer.test_pipeline import XGB_PARAMS, hand_built_auctions
from trainer.lease import LeaseLost
from trainer.pipeline import FittedModel, continue_xgboost, fit_baseline, fit_xgboost
from trainer.split import TimeSplit
from trainer.training import better_on, features_and_target, fit_candidates

SHOCKED = "BMW"


def shocked(frame: pd.DataFrame, change: float = -0.3) -> pd.DataFrame:
    """One make's prices moved: what a market shock looks like to the model."""
    factor = np.where(frame["make"] == SHOCKED, 1 + change, 1.0)
    return frame.assign(**{TARGET: frame[TARGET] * factor})


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return hand_built_auctions(3000, seed=11)


@pytest.fixture(scope="module")
def champion(history: pd.DataFrame) -> FittedModel:
    x, y = features_and_target(history.iloc[:2500])
    x_validation, y_validation = features_and_target(history.iloc[2500:])
    return fit_xgboost(x, y, x_validation, y_validation, {"n_estimators": 200})


@pytest.fixture(scope="module")
def recent() -> pd.DataFrame:
    return shocked(hand_built_auctions(900, seed=12))


def test_continued_boosting_learns_the_shift_and_keeps_the_encoding(
    champion: FittedModel, recent: pd.DataFrame
) -> None:
    train, validation, test = recent.iloc[:400], recent.iloc[400:500], recent.iloc[500:]
    continued = continue_xgboost(
        champion.pipeline, *features_and_target(train), *features_and_target(validation)
    )
    assert continued is not None
    assert continued.name == "xgboost-continued"
    base = champion.pipeline["model"].regressor_
    assert continued.params["base_rounds"] == base.best_iteration + 1
    assert continued.pipeline["encode"] is champion.pipeline["encode"]
    x_test, y_test = features_and_target(test)
    assert mape(y_test, continued.pipeline.predict(x_test)) < 0.8 * mape(
        y_test, champion.pipeline.predict(x_test)
    )
    # The champion itself is left untouched.
    assert base.get_booster().num_boosted_rounds() > base.best_iteration + 1


def test_only_xgboost_pipelines_can_be_continued(history: pd.DataFrame) -> None:
    x, y = features_and_target(history.iloc[:500])
    ridge = fit_baseline(x, y)
    assert continue_xgboost(ridge.pipeline, x, y, x, y) is None


def test_better_on_picks_the_lower_mape(champion: FittedModel, recent: pd.DataFrame) -> None:
    x, y = features_and_target(recent.iloc[:400])
    ridge = fit_baseline(x, y)
    frame = recent.iloc[400:]
    scores = {
        c.name: mape(frame[TARGET], c.pipeline.predict(features_and_target(frame)[0]))
        for c in (champion, ridge)
    }
    best = min(scores, key=scores.__getitem__)
    assert better_on(frame, champion, ridge).name == best
    assert better_on(frame, ridge, champion).name == best


def test_fit_candidates_tries_the_continued_champion(
    champion: FittedModel, recent: pd.DataFrame
) -> None:
    split = TimeSplit(
        train=recent.iloc[:60],
        validation=recent.iloc[60:300],
        test=recent.iloc[300:],
        train_until=recent["listed_at"].iloc[300],
        test_until=recent["listed_at"].iloc[-1],
    )
    main, baseline = fit_candidates(split, xgb_params=XGB_PARAMS, base=champion.pipeline)
    # 60 rows are too few to learn prices from scratch; the champion's history wins.
    assert main.name == "xgboost-continued"
    assert baseline.name == "ridge_baseline"
    without, _ = fit_candidates(split, xgb_params=XGB_PARAMS)
    assert without.name == "xgboost"


def test_a_failing_checkpoint_aborts_the_fit_within_a_boosting_round(
    recent: pd.DataFrame,
) -> None:
    """What a lost lease does to a training: the checkpoint raises and the fit stops."""
    split = TimeSplit(
        train=recent.iloc[:600],
        validation=recent.iloc[600:750],
        test=recent.iloc[750:],
        train_until=recent["listed_at"].iloc[750],
        test_until=recent["listed_at"].iloc[-1],
    )
    rounds: list[int] = []

    def checkpoint() -> None:
        rounds.append(1)
        if len(rounds) == 5:
            raise LeaseLost("lost the training lock")

    with pytest.raises(LeaseLost):
        fit_candidates(split, xgb_params={"n_estimators": 500}, checkpoint=checkpoint)
    assert len(rounds) == 5  # stopped at once, not after the 500 rounds
    calls: list[int] = []
    fitted, _ = fit_candidates(
        split, xgb_params={"n_estimators": 30}, checkpoint=lambda: calls.append(1)
    )
    rounds_run = fitted.pipeline.named_steps["model"].regressor_.get_booster().num_boosted_rounds()
    assert len(calls) == rounds_run + 1  # once per round, and once after the fit
