"""Drift scenarios change what they claim, from their start, and nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gavel.schemas import Listing
from producers.sources.scenarios import (
    NEW_MODELS,
    SCENARIOS,
    MarketDrift,
    MarketShock,
    MixShift,
    NewModels,
    Scenario,
    ScenarioError,
    apply_scenarios,
    parse_scenario,
)
from producers.sources.synthetic import Calibration, generate_auctions, load_calibration

N = 20_000
SEED = 5
START = "2015-03-16"


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    return load_calibration()


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return generate_auctions(N, seed=SEED)


def _with(*scenarios: Scenario) -> pd.DataFrame:
    return generate_auctions(N, seed=SEED, scenarios=scenarios)


def _after(frame: pd.DataFrame) -> np.ndarray:
    return (frame["listed_at"] >= pd.Timestamp(START, tz="UTC")).to_numpy()


def _changed_columns(before: pd.DataFrame, after: pd.DataFrame) -> set[str]:
    return {column for column in before.columns if not before[column].equals(after[column])}


def _assert_rows_before_start_identical(base: pd.DataFrame, changed: pd.DataFrame) -> None:
    early = ~_after(base)
    assert early.sum() > N // 3
    pd.testing.assert_frame_equal(changed[early], base[early])


def test_registry_names() -> None:
    # market_moves: issue 12, calibrated segment drifts (tests in test_market_moves.py)
    assert set(SCENARIOS) == {"market_shock", "market_moves", "mix_shift", "new_models"}
    assert SCENARIOS["mix_shift"] is MixShift


# MarketShock


def test_market_shock_moves_only_the_segment_price_after_start(base: pd.DataFrame) -> None:
    shocked = _with(MarketShock(START, {"body": "suv"}, price_change=-0.25))
    assert _changed_columns(base, shocked) == {"sellingprice"}
    _assert_rows_before_start_identical(base, shocked)
    hit = _after(base) & base["body"].eq("SUV").to_numpy()
    assert hit.sum() > 1000
    np.testing.assert_allclose(
        shocked["sellingprice"][hit], base["sellingprice"][hit] * 0.75, rtol=1e-12
    )
    assert shocked["sellingprice"][~hit].equals(base["sellingprice"][~hit])
    assert shocked["mmr"].equals(base["mmr"])


def test_market_shock_segment_on_several_columns(base: pd.DataFrame) -> None:
    shock = MarketShock(START, {"make": "FORD", "body": "SUV"}, price_change=0.1)
    shocked = _with(shock)
    hit = _after(base) & base["make"].eq("Ford").to_numpy() & base["body"].eq("SUV").to_numpy()
    moved = (shocked["sellingprice"] != base["sellingprice"]).to_numpy()
    assert hit.sum() > 100
    assert (moved == hit).all()


def test_market_shock_without_segment_moves_the_whole_market(base: pd.DataFrame) -> None:
    shocked = _with(MarketShock(START))
    moved = (shocked["sellingprice"] != base["sellingprice"]).to_numpy()
    assert (moved == _after(base)).all()


def test_market_shock_rejects_bad_arguments(base: pd.DataFrame, calibration: Calibration) -> None:
    with pytest.raises(ScenarioError, match="change must be > -1"):
        MarketShock(START, price_change=-1.0)
    with pytest.raises(ScenarioError, match="cannot segment on 'sellingprice'"):
        MarketShock(START, {"sellingprice": "100"})
    shock = MarketShock(START, {"colour": "red"})
    with pytest.raises(ScenarioError, match="no column 'colour'"):
        shock.apply(base, np.random.default_rng(0), calibration)


# MixShift


def test_mix_shift_makes_cars_older_and_higher_mileage(base: pd.DataFrame) -> None:
    shifted = _with(MixShift(START, older_years=4, extra_miles=10_000))
    assert _changed_columns(base, shifted) <= {
        "year",
        "odometer",
        "condition",
        "mmr",
        "sellingprice",
    }
    _assert_rows_before_start_identical(base, shifted)
    late = _after(base)
    before, after = base[late], shifted[late]
    age_gain = (before["year"] - after["year"]).mean()
    assert age_gain == pytest.approx(4, abs=0.15)
    assert (after["year"] <= before["year"]).all()
    assert (after["odometer"] >= before["odometer"] + 1).mean() > 0.99
    assert after["odometer"].mean() > before["odometer"].mean() + 20_000
    assert after["condition"].mean() < before["condition"].mean() - 0.2
    assert after["sellingprice"].mean() < before["sellingprice"].mean()


def test_mix_shift_keeps_price_given_features(base: pd.DataFrame, calibration: Calibration) -> None:
    shifted = _with(MixShift(START))
    late = _after(base)

    def residual(frame: pd.DataFrame, column: str) -> np.ndarray:
        part = frame[late]
        age = part["listed_at"].dt.year - part["year"]
        value = calibration.depreciation(age, part["odometer"], part["condition"])
        return np.log(part[column].to_numpy()) - value

    for column, step in (("sellingprice", 100.0), ("mmr", 25.0)):
        price = shifted.loc[late, column].to_numpy()
        unclipped = price > 100
        gap = np.abs(residual(shifted, column) - residual(base, column))[unclipped]
        # Equal up to rounding to the price step.
        assert (gap <= step / price[unclipped] + 1e-9).all()


def test_mix_shift_of_zero_strength_is_the_identity(base: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(_with(MixShift(START, older_years=0, extra_miles=0)), base)


def test_mix_shift_keeps_missing_values_missing(calibration: Calibration) -> None:
    frame = generate_auctions(2_000, seed=1, start="2015-03-01", end="2015-04-01")
    frame.loc[::3, "odometer"] = np.nan
    frame.loc[1::3, "condition"] = np.nan
    shifted = MixShift("2015-03-01").apply(frame, np.random.default_rng(0), calibration)
    assert shifted["odometer"].isna().equals(frame["odometer"].isna())
    assert shifted["condition"].isna().equals(frame["condition"].isna())
    assert shifted[["sellingprice", "mmr"]].notna().all().all()


# NewModels


def test_new_models_appear_in_a_share_of_rows_after_start(
    base: pd.DataFrame, calibration: Calibration
) -> None:
    changed = _with(NewModels(START, share=0.2))
    assert _changed_columns(base, changed) <= {
        "make",
        "model",
        "trim",
        "body",
        "transmission",
        "mmr",
        "sellingprice",
    }
    _assert_rows_before_start_identical(base, changed)
    new_makes = {m.make for m in NEW_MODELS}
    assert not new_makes & set(calibration.make)
    late = _after(base)
    is_new = changed["make"].isin(new_makes).to_numpy()
    assert not is_new[~late].any()
    assert is_new[late].mean() == pytest.approx(0.2, abs=0.02)
    swapped = (changed["make"] != base["make"]).to_numpy()
    assert (swapped == is_new).all()
    untouched = ~is_new
    pd.testing.assert_frame_equal(changed[untouched], base[untouched])
    new_rows = changed[is_new]
    assert set(new_rows["transmission"]) == {"automatic"}
    for column in ("year", "odometer", "condition", "state", "seller"):
        assert new_rows[column].equals(base.loc[is_new, column])
    # EVs from these makes are dear; the MMR follows the new level as the price does.
    assert new_rows["sellingprice"].median() > base["sellingprice"].median()
    ratio = np.log(new_rows["mmr"] / new_rows["sellingprice"])
    base_ratio = np.log(base.loc[is_new, "mmr"] / base.loc[is_new, "sellingprice"])
    assert np.abs(ratio - base_ratio).max() < 0.1


def test_new_models_of_share_zero_change_nothing(base: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(_with(NewModels(START, share=0.0)), base)


def test_new_models_rejects_a_bad_share() -> None:
    with pytest.raises(ScenarioError, match="share must be in"):
        NewModels(START, share=1.5)


# Composition


def test_scenarios_compose_and_keep_their_own_draws(base: pd.DataFrame) -> None:
    mix = MixShift(START)
    alone = _with(mix)
    composed = _with(
        MarketDrift(START),
        MarketShock("2015-05-01", {"body": "Sedan"}),
        mix,
        NewModels("2015-06-01"),
    )
    _assert_rows_before_start_identical(base, composed)
    assert composed["year"].equals(alone["year"])
    assert composed["odometer"].equals(alone["odometer"])
    for row in composed.sample(200, random_state=1).to_dict("records"):
        Listing.model_validate(row)


def test_repeated_scenarios_get_different_streams(calibration: Calibration) -> None:
    frame = generate_auctions(5_000, seed=2)
    twice = apply_scenarios(
        frame,
        [NewModels(START, share=0.5), NewModels(START, share=0.5)],
        seed=2,
        calibration=calibration,
    )
    once = apply_scenarios(frame, [NewModels(START, share=0.5)], seed=2, calibration=calibration)
    assert not twice["model"].equals(once["model"])


def test_apply_leaves_the_input_alone(base: pd.DataFrame, calibration: Calibration) -> None:
    copy = base.copy()
    for scenario in (MarketShock(START), MarketDrift(START), MixShift(START), NewModels(START)):
        scenario.apply(base, np.random.default_rng(0), calibration)
    pd.testing.assert_frame_equal(base, copy)


# Parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "market_shock:start=2015-03-01,segment=body=SUV,change=-0.2",
            MarketShock("2015-03-01", {"body": "SUV"}, price_change=-0.2),
        ),
        (
            " Market-Shock : start = 2015-03-01 , segment = make = Land Rover , price_change=0.1",
            MarketShock("2015-03-01", {"make": "Land Rover"}, price_change=0.1),
        ),
        ("market_shock:start=2015-03-01", MarketShock("2015-03-01")),
        ("mix_shift:start=2015-03-01", MixShift("2015-03-01")),
        (
            "mix_shift:start=2015-03-01T12:30:00Z,older_years=2.5,extra_miles=0",
            MixShift(pd.Timestamp("2015-03-01 12:30", tz="UTC"), older_years=2.5, extra_miles=0),
        ),
        ("new_models:start=2015-03-01,share=0.1", NewModels("2015-03-01", share=0.1)),
        ("market_moves:start=2015-01-01", MarketDrift("2015-01-01")),
        ("market-moves:start=2015-01-01,scale=0.5", MarketDrift("2015-01-01", scale=0.5)),
    ],
)
def test_parse_scenario_accepts_the_grammar(text: str, expected: Scenario) -> None:
    parsed = parse_scenario(text)
    assert parsed == expected
    assert parse_scenario(parsed.spec) == parsed


def test_parse_scenario_merges_repeated_segments() -> None:
    parsed = parse_scenario("market_shock:start=2015-03-01,segment=make=Ford,segment=body=SUV")
    assert parsed == MarketShock("2015-03-01", {"make": "Ford", "body": "SUV"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("heatwave:start=2015-03-01", "unknown scenario 'heatwave'; known: market_shock"),
        ("mix_shift:start=2015-03-01,years=3", "unknown key 'years'; known keys: start"),
        ("mix_shift", "missing required key 'start'"),
        ("new_models:share=0.1", "missing required key 'start'"),
        ("mix_shift:start=yesterday-ish", "start='yesterday-ish' is not a date"),
        ("new_models:start=2015-03-01,share=lots", "share='lots' is not a number"),
        ("mix_shift:start=2015-03-01,older_years=nan", "older_years='nan' is not a number"),
        ("new_models:start=2015-03-01,share", "expected KEY=VALUE, got 'share'"),
        ("new_models:start=2015-03-01,share=0.1,share=0.2", "share given twice"),
        ("market_shock:start=2015-03-01,segment=SUV", "segment must look like COLUMN=VALUE"),
        ("market_shock:start=2015-03-01,change=-1.5", "change must be > -1"),
        ("new_models:start=2015-03-01,share=2", "share must be in"),
    ],
)
def test_parse_scenario_rejects_bad_input(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(text)
