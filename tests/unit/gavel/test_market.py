"""Market memory: the offline as-of join and the online one-sale-at-a-time store agree
exactly, never look at the listing's own day or later, and count a sale once."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gavel.market import (
    LOOKBACK_DAYS,
    MARKET_FEATURES,
    RATIO_CLIP,
    RATIO_MOVE_THRESHOLD,
    SEGMENT_KINDS,
    WINDOW_FIELDS,
    WINDOWS,
    MarketMemory,
    day_numbers,
    features_from_windows,
    market_features,
    reference_log_price,
    sale_contributions,
    segment_keys,
    window_sums,
)

START = pd.Timestamp("2015-03-01", tz="UTC")
MAKES = ["Ford", " ford", "Kia", "—", "Land Rover"]
MODELS = ["Fusion", "FUSION ", "Rio", "-", "Range Rover"]
BODIES = ["SUV", "suv", "Sedan", None, "", "none"]

cars = st.fixed_dictionaries(
    {
        "make": st.sampled_from(MAKES),
        "model": st.sampled_from(MODELS),
        "year": st.one_of(st.integers(2000, 2016), st.just(float("nan"))),
        "body": st.sampled_from(BODIES),
    }
)
times = st.builds(
    lambda day, second: START + pd.Timedelta(days=day, seconds=second),
    st.integers(0, 45),
    st.integers(0, 86_399),
)
prices = st.one_of(st.floats(50, 200_000), st.sampled_from([1.0, 1e6]))
sales_strategy = st.lists(
    st.tuples(cars, times, prices, st.one_of(st.none(), st.floats(100, 150_000))),
    max_size=40,
)
listings_strategy = st.lists(st.tuples(cars, times), min_size=1, max_size=12)


def sales_frame(
    rows: list[tuple[dict[str, Any], pd.Timestamp, float, float | None]],
) -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {
                **car,
                "auction_id": f"a{i}",
                "sold_at": sold_at,
                "sellingprice": price,
                "mmr": np.nan if mmr is None else mmr,
            }
            for i, (car, sold_at, price, mmr) in enumerate(rows)
        ],
        columns=["auction_id", "sold_at", "sellingprice", "mmr", "make", "model", "year", "body"],
    )
    frame["sold_at"] = pd.to_datetime(frame["sold_at"], utc=True)
    return frame


def listings_frame(rows: list[tuple[dict[str, Any], pd.Timestamp]]) -> pd.DataFrame:
    frame = pd.DataFrame([{**car, "listed_at": at} for car, at in rows])
    frame["listed_at"] = pd.to_datetime(frame["listed_at"], utc=True)
    return frame


def online(
    sales: pd.DataFrame, listings: pd.DataFrame, order: list[int] | None = None
) -> pd.DataFrame:
    memory = MarketMemory()
    for position in order if order is not None else range(len(sales)):
        sale = sales.iloc[position]
        mmr = None if math.isnan(sale["mmr"]) else float(sale["mmr"])
        memory.add_sale(
            sale["auction_id"], sale["sold_at"], sale["sellingprice"], mmr,
            sale["make"], sale["model"], sale["year"], sale["body"],
        )  # fmt: skip
    return memory.features(listings.to_dict("records"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sales_strategy, listings_strategy, st.randoms(use_true_random=False))
def test_online_store_reproduces_the_offline_join_exactly(
    sale_rows: list[Any], listing_rows: list[Any], random: Any
) -> None:
    sales, listings = sales_frame(sale_rows), listings_frame(listing_rows)
    order = list(range(len(sales)))
    random.shuffle(order)  # sales arrive in any order: the sums are integers
    offline = market_features(listings, sales).reset_index(drop=True)
    pd.testing.assert_frame_equal(online(sales, listings, order), offline, check_exact=True)


@settings(max_examples=40, deadline=None)
@given(sales_strategy, listings_strategy, sales_strategy)
def test_sales_on_or_after_the_listing_day_never_change_its_features(
    sale_rows: list[Any], listing_rows: list[Any], later_rows: list[Any]
) -> None:
    sales, listings = sales_frame(sale_rows), listings_frame(listing_rows)
    before = market_features(listings, sales)
    for i, listed_at in enumerate(listings["listed_at"]):
        day_start = listed_at.normalize()
        later = sales_frame(later_rows)
        later["sold_at"] = day_start + (later["sold_at"] - START)  # on or after its day
        later["auction_id"] = "late-" + later["auction_id"]
        both = pd.concat([f for f in (sales, later) if len(f)] or [sales], ignore_index=True)
        after = market_features(listings.iloc[[i]], both)
        pd.testing.assert_frame_equal(after, before.iloc[[i]], check_exact=True)


@settings(max_examples=40, deadline=None)
@given(sales_strategy, listings_strategy)
def test_a_sale_applied_twice_counts_once(sale_rows: list[Any], listing_rows: list[Any]) -> None:
    sales, listings = sales_frame(sale_rows), listings_frame(listing_rows)
    once = online(sales, listings)
    twice = online(sales, listings, [*range(len(sales)), *range(len(sales))])
    pd.testing.assert_frame_equal(twice, once, check_exact=True)
    doubled = market_features(listings, pd.concat([sales, sales], ignore_index=True))
    pd.testing.assert_frame_equal(doubled.reset_index(drop=True), once, check_exact=True)


def test_add_sale_says_whether_it_counted() -> None:
    memory = MarketMemory()
    args = (START, 9000.0, 10_000.0, "Ford", "Fusion", 2012, "Sedan")
    assert memory.add_sale("a", *args) is True
    assert memory.add_sale("a", *args) is False
    assert memory.add_sale("b", START, float("nan"), None, "Ford", "Fusion", 2012, None) is False


def test_a_listing_without_history_gets_missing_values_and_zero_counts() -> None:
    listings = listings_frame([({"make": "Kia", "model": "Rio", "year": 2012, "body": "Sedan"},
                                START)])  # fmt: skip
    out = market_features(listings, sales_frame([]))
    assert list(out.columns) == list(MARKET_FEATURES)
    counts = [c for c in MARKET_FEATURES if "_n_" in c]
    assert (out[counts] == 0).all(axis=None)
    assert out.drop(columns=counts).isna().all(axis=None)


@pytest.mark.parametrize("days_before", [1, 2, 3, 4, 7, 8, 30, 31, 90, 91])
def test_a_sale_counts_in_the_windows_that_hold_its_day(days_before: int) -> None:
    car = {"make": "Kia", "model": "Rio", "year": 2012, "body": "Sedan"}
    sold_at = START - pd.Timedelta(days=days_before) + pd.Timedelta(hours=23, minutes=59)
    sales = sales_frame([(car, sold_at, 9000.0, 10_000.0)])
    out = market_features(listings_frame([(car, START + pd.Timedelta(hours=1))]), sales)
    for w in WINDOWS:
        assert out.loc[0, f"mkt_mm_n_{w}d"] == (1.0 if days_before <= w else 0.0)
    if days_before <= LOOKBACK_DAYS:
        expected = days_before - (23 * 60 + 59) / 1440
        assert out.loc[0, "mkt_mm_days_since"] == pytest.approx(expected)
    else:
        assert math.isnan(out.loc[0, "mkt_mm_days_since"])


def test_segment_keys_read_text_as_the_model_does() -> None:
    assert segment_keys(" FORD ", "fusion", 2013.0, "SEDAN") == segment_keys(
        "Ford", "Fusion", 2012, "sedan"
    )
    keys = segment_keys("Ford", "—", 2013, "none")
    assert keys["mm"] is keys["mmy"] is keys["body"] is None
    assert keys["all"] == "all" and keys["make"] == "make=ford"
    assert segment_keys("Ford", "Fusion", float("nan"), None)["mmy"] is None
    assert set(keys) == set(SEGMENT_KINDS)


def test_one_absurd_sale_moves_the_ratio_by_at_most_the_clip() -> None:
    normal = sale_contributions([10_000.0] * 9, [10_000.0] * 9)
    absurd = sale_contributions([200.0], [15_000.0])
    assert absurd[0, 2] == -RATIO_CLIP * 1_000_000
    mean = (normal[:, 2].sum() + absurd[0, 2]) / 10 / 1_000_000
    assert mean == pytest.approx(-RATIO_CLIP / 10)
    # Its robust price is its mmr moved by the clipped ratio, not $200.
    assert math.exp(absurd[0, 3] / 1_000_000) == pytest.approx(15_000 * math.exp(-RATIO_CLIP))


def test_window_sums_ignore_the_day_itself_and_days_beyond_the_lookback() -> None:
    one = np.array([1, 1, 10, 20, 5], dtype=np.int64)
    assert not window_sums({100: one}, 100).any()
    assert not window_sums({100 - LOOKBACK_DAYS - 1: one}, 100).any()
    assert window_sums({99: one, 98: one}, 100)[: len(WINDOW_FIELDS) - 1].tolist()[:4] == [
        2, 2, 20, 40,
    ]  # fmt: skip


def windows_with(**ratio_by_kind: tuple[int, float, float]) -> dict[str, np.ndarray]:
    """As-of windows where each named kind has ``n`` sales of ratio r30 (30 days) and r3
    (3 days) at a log price of 9."""
    out = {}
    for kind in SEGMENT_KINDS:
        row = np.zeros(len(WINDOW_FIELDS), dtype=np.int64)
        if kind in ratio_by_kind:
            n, r30, r3 = ratio_by_kind[kind]
            for i, w in enumerate(WINDOWS):
                ratio = r3 if w <= 3 else r30
                row[i * 4 : i * 4 + 4] = [n, n, round(n * ratio * 1e6), round(n * 9e6)]
        out[kind] = row[None, :]
    return out


def test_the_ratio_estimate_follows_recent_moves_beyond_the_threshold_only() -> None:
    day = np.array([16_500])
    calm = features_from_windows(windows_with(all=(1000, -0.04, -0.06)), day)
    assert calm.loc[0, "mkt_ratio_hat"] == pytest.approx(-0.04)  # a 2% wobble is ignored
    moved = features_from_windows(windows_with(all=(1000, -0.04, -0.34)), day)
    expected = -0.34 + RATIO_MOVE_THRESHOLD
    assert moved.loc[0, "mkt_ratio_hat"] == pytest.approx(expected)


def test_a_segment_without_sales_passes_its_parents_estimate_on() -> None:
    day = np.array([16_500])
    out = features_from_windows(windows_with(all=(500, -0.05, -0.05), body=(0, 0, 0)), day)
    assert out.loc[0, "mkt_ratio_hat"] == pytest.approx(-0.05)
    few = features_from_windows(windows_with(all=(500, -0.05, -0.05), mm=(5, 0.10, 0.10)), day)
    assert -0.05 < few.loc[0, "mkt_ratio_hat"] < 0.0  # five sales move it a little


def test_the_reference_price_uses_the_mmr_when_there_is_one() -> None:
    out = reference_log_price([10_000.0, np.nan, np.nan], [-0.1, -0.1, np.nan], [9.0, 9.5, np.nan])
    assert out[0] == pytest.approx(math.log(10_000) - 0.1)
    assert out[1] == 9.5 and math.isnan(out[2])


def test_day_numbers_are_utc_days() -> None:
    stamps = pd.to_datetime(["2015-03-01 23:59:59+00:00", "2015-03-01 23:30:00-05:00"], utc=True)
    first, second = day_numbers(stamps).tolist()
    assert second == first + 1
