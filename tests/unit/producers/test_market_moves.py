"""Market drift of the generator (the ``market_moves`` scenario): calibrated from
aggregates, deterministic, moving only prices, and recovered by the calibration that set
it."""

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
    segment_drift,
)
from producers.sources.scenarios import MarketDrift, MarketShock, ScenarioError
from producers.sources.synthetic import (
    CALIBRATION_PATH,
    Calibration,
    generate_auctions,
    load_calibration,
)

DRIFT = MarketDrift("2015-01-01")


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
    still = MarketMoves(0.9, {"all": 0.0})
    price, mmr = still.paths(np.random.default_rng(0), days=50, components=1)
    assert not price.any() and not mmr.any()
    walk = MarketMoves(0.9, {"all": 1.0})
    price, mmr = walk.paths(np.random.default_rng(1), days=3, components=1)
    gap = price - mmr  # the MMR closes 10% of the gap a day
    assert gap[2, 0] == pytest.approx(0.9 * (gap[1, 0] + (price[2, 0] - price[1, 0])))


def test_a_longer_stretch_extends_the_paths_without_changing_them() -> None:
    moves = MarketMoves(0.97, {"all": 0.01, "body": 0.01})
    segments = {"body": (["suv", "sedan", None, "coupe"], ["suv", "sedan"])}
    short = segment_drift(moves, np.random.default_rng(5), np.array([0, 3, 7, 9]), segments)
    longer = segment_drift(moves, np.random.default_rng(5), np.array([0, 3, 7, 90]), segments)
    for a, b in zip(short, longer, strict=True):
        assert np.array_equal(a[:3], b[:3])
    # An unknown body (None, or one the calibration never saw) moves with the market only.
    market_only = segment_drift(moves, np.random.default_rng(5), np.array([7, 7]),
                                {"body": ([None, "coupe"], ["suv", "sedan"])})  # fmt: skip
    assert market_only[0][0] == market_only[0][1]


def test_market_drift_changes_prices_and_nothing_else() -> None:
    moving = generate_auctions(20_000, seed=5, scenarios=[DRIFT])
    still = generate_auctions(20_000, seed=5)
    others = [c for c in moving.columns if c not in ("sellingprice", "mmr")]
    pd.testing.assert_frame_equal(moving[others], still[others])
    assert not moving["sellingprice"].equals(still["sellingprice"])
    pd.testing.assert_frame_equal(generate_auctions(20_000, seed=5, scenarios=[DRIFT]), moving)


def test_a_calibration_without_a_market_does_not_drift() -> None:
    data = committed()
    del data["market"]
    calibration = Calibration.from_dict(data)
    assert calibration.market is None
    frame = generate_auctions(5_000, seed=2, calibration=calibration, scenarios=[DRIFT])
    pd.testing.assert_frame_equal(frame, generate_auctions(5_000, seed=2))


def test_scale_must_not_be_negative() -> None:
    with pytest.raises(ScenarioError, match="scale"):
        MarketDrift("2015-01-01", scale=-1)
    zero = generate_auctions(5_000, seed=2, scenarios=[MarketDrift("2015-01-01", scale=0)])
    pd.testing.assert_frame_equal(zero, generate_auctions(5_000, seed=2))


def test_a_shock_composes_with_the_drift_and_earlier_rows_stay_alone() -> None:
    shock = MarketShock("2015-04-01", {"body": "SUV"}, -0.25)
    drifting = generate_auctions(20_000, seed=9, scenarios=[DRIFT])
    shocked = generate_auctions(20_000, seed=9, scenarios=[DRIFT, shock])
    early = drifting["listed_at"] < "2015-04-01"
    pd.testing.assert_frame_equal(shocked[early], drifting[early])
    late_suv = ~early & (drifting["body"] == "SUV")
    ratio = shocked.loc[late_suv, "sellingprice"] / drifting.loc[late_suv, "sellingprice"]
    assert ratio.median() == pytest.approx(0.75, abs=0.01)


def monthly_ratio_changes(frame: pd.DataFrame) -> pd.Series:
    ratio = np.log(frame["sellingprice"] / frame["mmr"]).clip(-0.5, 0.5)
    return ratio.groupby(frame["listed_at"].dt.month).mean().diff().dropna()


def test_segment_ratios_drift_only_with_the_scenario() -> None:
    moving = generate_auctions(100_000, seed=17, scenarios=[DRIFT])
    still = generate_auctions(100_000, seed=17)
    assert monthly_ratio_changes(still).abs().max() < 0.006  # sampling noise only
    assert monthly_ratio_changes(moving).abs().max() > 0.01


def test_the_calibration_recovers_the_movement_it_generated() -> None:
    """Fitting drifting auctions gives back the body-level month-to-month variance the
    generator was given, within the sampling error of a few random paths."""
    target = load_calibration().market
    assert target is not None
    seen = []
    for seed in range(4):
        frame = generate_auctions(150_000, seed=seed, start="2015-01-01", end="2015-12-31",
                                  scenarios=[DRIFT])  # fmt: skip
        variance, pairs = change_variance(frame.rename(columns={"listed_at": "sold_at"}),
                                          "body", "M", 20)  # fmt: skip
        seen.append(variance)
        assert pairs > 50
    factor = mean_change_factor(target.follow, MONTH_DAYS)
    expected = (target.daily_sd["all"] ** 2 + target.daily_sd["body"] ** 2) * factor
    assert 0.5 * expected < float(np.mean(seen)) < 2.0 * expected


def test_fit_market_moves_gives_the_committed_structure() -> None:
    frame = generate_auctions(50_000, seed=1, scenarios=[DRIFT])
    fitted = fit_market_moves(frame.rename(columns={"listed_at": "sold_at"}))
    assert set(fitted) == set(committed()["market"])  # type: ignore[arg-type]  # a dict
    assert json.loads(dumps_calibration({"market": fitted}))["market"] == fitted
