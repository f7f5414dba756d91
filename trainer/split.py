"""Time-based splits: train on earlier auctions, test on the period that follows.

>>> import pandas as pd
>>> frame = pd.DataFrame({"listed_at": pd.date_range("2015-01-01", periods=60, freq="D", tz="UTC")})
>>> split = time_split(frame, train_until="2015-02-01", test_days=14, validation_share=0.2)
>>> len(split.train), len(split.validation), len(split.test)
(25, 6, 14)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

from gavel.times import as_utc_timestamp


class SplitError(ValueError):
    """A split that would leave a part empty; the message says which and why."""


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    train_until: pd.Timestamp
    test_until: pd.Timestamp

    def describe(self) -> dict[str, str | int]:
        def span(frame: pd.DataFrame) -> str:
            times = frame["listed_at"]
            return f"{times.min():%Y-%m-%d} → {times.max():%Y-%m-%d}" if len(frame) else "-"

        return {
            "train_rows": len(self.train),
            "validation_rows": len(self.validation),
            "test_rows": len(self.test),
            "train_span": span(self.train),
            "validation_span": span(self.validation),
            "test_span": span(self.test),
        }


def split_off_validation(
    frame: pd.DataFrame, validation_share: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``frame`` (sorted by time) cut in two: the rows before its latest
    ``validation_share`` and those latest rows (at least one of them).

    >>> train, validation = split_off_validation(pd.DataFrame({"n": range(10)}), 0.15)
    >>> len(train), validation["n"].tolist()
    (8, [8, 9])
    """
    n_validation = max(round(len(frame) * validation_share), 1)
    return frame.iloc[:-n_validation], frame.iloc[-n_validation:]


def short_part(parts: Mapping[str, pd.DataFrame], min_rows: int) -> tuple[str, int] | None:
    """The first of ``parts`` with fewer than ``min_rows`` rows, and its size; ``None``
    when every part is large enough.

    >>> short_part({"train": pd.DataFrame({"n": range(9)}), "test": pd.DataFrame()}, 5)
    ('test', 0)
    """
    for name, rows in parts.items():
        if len(rows) < min_rows:
            return name, len(rows)
    return None


def time_split(
    frame: pd.DataFrame,
    train_until: str | date | datetime | pd.Timestamp,
    test_days: int = 30,
    validation_share: float = 0.15,
    min_rows: int = 5,
) -> TimeSplit:
    """Train and validation before ``train_until`` (validation = the latest share of that
    period), test in ``[train_until, train_until + test_days)``."""
    cut = as_utc_timestamp(train_until)
    test_end = cut + timedelta(days=test_days)
    times = frame["listed_at"]
    before = frame.loc[times < cut].sort_values("listed_at", kind="stable")
    test = frame.loc[(times >= cut) & (times < test_end)]
    train, validation = split_off_validation(before, validation_share)
    short = short_part({"train": train, "validation": validation, "test": test}, min_rows)
    if short is not None:
        part, rows = short
        span = f"{times.min():%Y-%m-%d} to {times.max():%Y-%m-%d}" if len(frame) else "empty"
        raise SplitError(
            f"the {part} period has {rows} rows (need {min_rows}); the data spans {span}, "
            f"cut-off {cut:%Y-%m-%d}, test window {test_days} days. Move --train-until."
        )
    return TimeSplit(train, validation, test, cut, test_end)


def auto_cutoff(frame: pd.DataFrame, test_share: float = 0.15) -> pd.Timestamp:
    """The month start that leaves roughly the last ``test_share`` of rows for testing.

    Falls back to the quantile day itself when the month start would leave no training rows.
    """
    times = frame["listed_at"]
    quantile = pd.Timestamp(times.quantile(1.0 - test_share))  # the stubs say float
    month_start = quantile.normalize().replace(day=1)
    return month_start if (times < month_start).mean() > 0.5 else quantile.normalize()
