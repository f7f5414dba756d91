"""Market movements of the generator: calibrated from aggregates, deterministic, moving
only prices, and recovered by the calibration that set them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.sources.calibrate import dumps_calibration
from producers.sources.market_moves import (
    FOLLOW_RANGE,
    MONTH_DAYS,
    MarketMoves,
    change_variance,
    daily_step_sd,
    fit_market_moves,
    follow_from,
    mean_change_factor,
)
from producers.sources.scenarios import MarketShock
from producers.sources.synthetic import (
    CALIBRATION_PATH,
    Calibration,
    generate_auctions,
    load_calibration,
)


def committed() -> dict[str, object]:
    data: dict[str, object] = json.loads(CALIBRATION_PATH.read_text(encoding="utf-8"))
    return data


@given(st.floats(0.85, 0.99))
def test_follow_is_recovered_from_the_change_variances_it_implies(follow: float) -> None:
    weekly = mean_change_factor(follow, 7)
    monthly = mean_change_factor(follow, MONTH_DAYS)
    assert follow_from(weekly, monthly) == pytest.approx(follow, abs=1e-6)


def test_follow_stays_within_its_range() -> None:
    assert follow_from(0.0, 1.0) == FOLLOW_RANGE[1]  # no week-to-week change: a random walk
    assert follow_from(2.0, 1.0) == FOLLOW_RANGE[0]  # weekly means move more: reverting
    assert follow_from(1.0, 0.0) == FOLLOW_RANGE[1]


@pytest.mark.parametrize("follow", [0.9, 0.96, 0.995])
def test_the_simulated_ratio_has_the_calibrated_month_to_month_variance(follow: float) -> None:
    target = 0.0009
    moves = MarketMoves(follow, {"all": daily_step_sd(target, follow)})
    price, mmr = moves.paths(np.random.default_rng(3), days=360, components=600)
    monthly_means = (price - mmr).reshape(12, 30, -1).mean(axis=1)
    change = np.diff(monthly_means, axis=0)
    assert float(np.mean(change**2)) == pytest.approx(target, rel=0.1)
    assert np.allclose(price[0], 0.0)  # the first day is the calibrated level


def test_the_mmr_follows_the_market_late() -> None:
    moves = MarketMoves(0.9, {"all": 0.0})
    price, mmr = moves.paths(np.random.default_rng(0), days=50, components=1)
    assert not price.any() and not mmr.any()
    # A step of the market: the MMR closes 10% of the gap a day.
    walk = MarketMoves(0.9, {"all": 1.0})
    price, mmr = walk.paths(np.random.default_rng(1), days=3, components=1)
    gap = price - mmr
    assert gap[2, 0] == pytest.approx(0.9 * (gap[1, 0] + (price[2, 0] - price[1, 0])))


def test_market_moves_change_prices_and_nothing_else() -> None:
    moving = generate_auctions(20_000, seed=5)
    still = generate_auctions(20_000, seed=5, market_moves=False)
    others = [c for c in moving.columns if c not in ("sellingprice", "mmr")]
    pd.testing.assert_frame_equal(moving[others], still[others])
    assert not moving["sellingprice"].equals(still["sellingprice"])
    pd.testing.assert_frame_equal(generate_auctions(20_000, seed=5), moving)


def test_a_calibration_without_a_market_is_stationary() -> None:
    data = committed()
    del data["market"]
    calibration = Calibration.from_dict(data)
    assert calibration.market is None
    frame = generate_auctions(5_000, seed=2, calibration=calibration)
    pd.testing.assert_frame_equal(frame, generate_auctions(5_000, seed=2, market_moves=False))


def test_scenarios_still_leave_earlier_rows_alone_in_a_moving_market() -> None:
    shock = MarketShock("2015-04-01", {"body": "SUV"}, -0.25)
    base = generate_auctions(20_000, seed=9)
    shocked = generate_auctions(20_000, seed=9, scenarios=[shock])
    early = base["listed_at"] < "2015-04-01"
    pd.testing.assert_frame_equal(shocked[early], base[early])


def monthly_ratio_changes(frame: pd.DataFrame) -> pd.Series:
    ratio = np.log(frame["sellingprice"] / frame["mmr"]).clip(-0.5, 0.5)
    month = frame["listed_at"].dt.month
    return ratio.groupby(month).mean().diff().dropna()


def test_segment_ratios_drift_only_when_the_market_moves() -> None:
    moving = generate_auctions(100_000, seed=17)
    still = generate_auctions(100_000, seed=17, market_moves=False)
    assert monthly_ratio_changes(still).abs().max() < 0.006  # sampling noise only
    assert monthly_ratio_changes(moving).abs().max() > 0.01


def test_the_calibration_recovers_the_movement_it_generated() -> None:
    """Fitting generated auctions gives back the body-level month-to-month variance the
    generator was given, within sampling error of a few random paths."""
    calibration = load_calibration()
    assert calibration.market is not None
    target = calibration.market
    seen = []
    for seed in range(4):
        frame = generate_auctions(150_000, seed=seed, start="2015-01-01", end="2015-12-31")
        frame = frame.rename(columns={"listed_at": "sold_at"})
        variance, pairs = change_variance(frame, "body", "M", 20)
        seen.append(variance)
        assert pairs > 50
    factor = mean_change_factor(target.follow, MONTH_DAYS)
    expected = (target.daily_sd["all"] ** 2 + target.daily_sd["body"] ** 2) * factor
    assert 0.5 * expected < float(np.mean(seen)) < 2.0 * expected


def test_fit_market_moves_gives_the_committed_structure() -> None:
    frame = generate_auctions(50_000, seed=1).rename(columns={"listed_at": "sold_at"})
    fitted = fit_market_moves(frame)
    assert set(fitted) == set(committed()["market"])  # type: ignore[arg-type]  # a dict
    assert json.loads(dumps_calibration({"market": fitted}))["market"] == fitted
