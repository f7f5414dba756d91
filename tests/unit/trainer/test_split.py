"""Tests for trainer.split: time-based train/validation/test splits."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from gavel.times import as_utc_timestamp
from trainer.split import SplitError, auto_cutoff, short_part, split_off_validation, time_split


def daily(start: str = "2015-01-01", days: int = 60, per_day: int = 1) -> pd.DataFrame:
    times = pd.date_range(start, periods=days, freq="D", tz="UTC").repeat(per_day)
    offsets = pd.to_timedelta(np.tile(np.arange(per_day) * 37, days), unit="min")
    return pd.DataFrame({"listed_at": times + offsets, "row": np.arange(days * per_day)})


def test_docstring_sizes() -> None:
    split = time_split(daily(), train_until="2015-02-01", test_days=14, validation_share=0.2)
    assert (len(split.train), len(split.validation), len(split.test)) == (25, 6, 14)
    assert split.train_until == pd.Timestamp("2015-02-01", tz="UTC")
    assert split.test_until == pd.Timestamp("2015-02-15", tz="UTC")


def test_boundaries() -> None:
    frame = daily(days=90, per_day=5)
    cut = pd.Timestamp("2015-02-10", tz="UTC")
    split = time_split(frame, cut, test_days=21, validation_share=0.15)
    assert split.train["listed_at"].max() < cut
    assert split.validation["listed_at"].max() < cut
    assert split.test["listed_at"].min() >= cut
    assert split.test["listed_at"].max() < cut + timedelta(days=21)
    # Validation is the latest part of the period before the cut-off.
    assert split.train["listed_at"].max() <= split.validation["listed_at"].min()
    before = frame.loc[frame["listed_at"] < cut]
    assert len(split.train) + len(split.validation) == len(before)
    assert len(split.validation) == round(len(before) * 0.15)
    assert set(split.validation["row"]) == set(before.nlargest(len(split.validation), "row")["row"])
    # Rows after the test window are in no part.
    used = set(split.train["row"]) | set(split.validation["row"]) | set(split.test["row"])
    later = frame.loc[frame["listed_at"] >= cut + timedelta(days=21), "row"]
    assert used.isdisjoint(later)
    assert len(used) == len(split.train) + len(split.validation) + len(split.test)


def test_unsorted_input_gives_the_same_parts() -> None:
    frame = daily(days=60, per_day=3)
    shuffled = frame.sample(frac=1.0, random_state=3)
    a = time_split(frame, "2015-02-01", test_days=10)
    b = time_split(shuffled, "2015-02-01", test_days=10)
    assert set(a.train["row"]) == set(b.train["row"])
    assert set(a.validation["row"]) == set(b.validation["row"])
    assert set(a.test["row"]) == set(b.test["row"])
    assert b.train["listed_at"].is_monotonic_increasing
    assert b.validation["listed_at"].is_monotonic_increasing


@pytest.mark.parametrize(
    "cut",
    [
        "2015-02-01",
        date(2015, 2, 1),
        datetime(2015, 2, 1),
        datetime(2015, 2, 1, 2, tzinfo=timezone(timedelta(hours=2))),
        pd.Timestamp("2015-01-31 19:00", tz="US/Eastern"),
    ],
)
def test_cutoff_types_are_read_as_utc(cut: object) -> None:
    split = time_split(daily(), cut, test_days=14)
    assert split.train_until == pd.Timestamp("2015-02-01", tz="UTC")
    assert str(split.train_until.tz) == "UTC"


def test_as_utc_timestamp() -> None:
    assert as_utc_timestamp("2015-03-01") == pd.Timestamp("2015-03-01", tz="UTC")
    converted = as_utc_timestamp(pd.Timestamp("2015-03-01 05:00", tz="Europe/Berlin"))
    assert converted == pd.Timestamp("2015-03-01 04:00", tz="UTC")
    assert str(converted.tz) == "UTC"


@pytest.mark.parametrize(
    ("cut", "test_days", "part", "rows"),
    [
        ("2014-12-01", 30, "train", 0),  # cut-off before the data
        ("2015-03-15", 30, "test", 0),  # cut-off after the data
        ("2015-01-04", 30, "train", 2),  # too little history
        ("2015-02-28", 30, "test", 2),  # too little future
    ],
)
def test_empty_part_raises_helpful_error(cut: str, test_days: int, part: str, rows: int) -> None:
    with pytest.raises(SplitError) as caught:
        time_split(daily(), cut, test_days=test_days, validation_share=0.1)
    message = str(caught.value)
    assert f"the {part} period has {rows} rows (need 5)" in message
    assert "2015-01-01 to 2015-03-01" in message
    assert f"cut-off {cut}" in message
    assert f"test window {test_days} days" in message
    assert "--train-until" in message


def test_validation_too_small_raises() -> None:
    with pytest.raises(SplitError, match="the validation period has 1 rows"):
        time_split(daily(), "2015-02-01", validation_share=0.0)


def test_min_rows_is_configurable() -> None:
    split = time_split(daily(), "2015-02-28", test_days=30, min_rows=2)
    assert len(split.test) == 2


def test_split_error_on_empty_frame() -> None:
    empty = pd.DataFrame({"listed_at": pd.Series([], dtype="datetime64[ns, UTC]")})
    with pytest.raises(SplitError, match="the data spans empty"):
        time_split(empty, "2015-01-01")


def test_split_error_is_a_value_error() -> None:
    assert issubclass(SplitError, ValueError)


def test_describe() -> None:
    split = time_split(daily(), "2015-02-01", test_days=14, validation_share=0.2)
    assert split.describe() == {
        "train_rows": 25,
        "validation_rows": 6,
        "test_rows": 14,
        "train_span": "2015-01-01 → 2015-01-25",
        "validation_span": "2015-01-26 → 2015-01-31",
        "test_span": "2015-02-01 → 2015-02-14",
    }


def test_auto_cutoff_prefers_a_month_start() -> None:
    frame = daily("2015-01-01", days=180)
    cut = auto_cutoff(frame, test_share=0.15)
    assert cut == pd.Timestamp("2015-06-01", tz="UTC")
    split = time_split(frame, cut)
    assert len(split.test) == 29  # 2015-06-01 to 2015-06-29


def test_auto_cutoff_falls_back_to_the_quantile_day() -> None:
    # Within one month: the month start would leave no training rows.
    frame = daily("2015-03-02", days=20, per_day=4)
    cut = auto_cutoff(frame, test_share=0.25)
    assert cut.day != 1
    assert cut == frame["listed_at"].quantile(0.75).normalize()
    assert (frame["listed_at"] < cut).mean() > 0.5
    assert (frame["listed_at"] >= cut).any()


@pytest.mark.parametrize("share", [0.1, 0.2, 0.3])
def test_auto_cutoff_leaves_roughly_the_share_for_testing(share: float) -> None:
    frame = daily("2014-01-01", days=730)
    cut = auto_cutoff(frame, test_share=share)
    assert cut.day == 1
    tested = (frame["listed_at"] >= cut).mean()
    assert share <= tested < share + 31 / 730


@pytest.mark.parametrize(("rows", "share", "expected"), [(0, 0.15, 0), (1, 0.15, 1), (10, 0.15, 2)])
def test_split_off_validation_keeps_the_latest_rows(rows: int, share: float, expected: int) -> None:
    frame = pd.DataFrame({"n": range(rows)})
    train, validation = split_off_validation(frame, share)
    assert len(validation) == expected
    assert train["n"].tolist() + validation["n"].tolist() == list(range(rows))


def test_short_part_names_the_first_part_that_is_too_small() -> None:
    big, small = pd.DataFrame({"n": range(5)}), pd.DataFrame({"n": range(2)})
    assert short_part({"a": big, "b": big}, 5) is None
    assert short_part({"a": big, "b": small, "c": small.iloc[:0]}, 5) == ("b", 2)
    assert short_part({}, 5) is None
