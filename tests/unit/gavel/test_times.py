"""The one UTC rule: naive means UTC, aware is converted, overflow is a ValueError."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone

import pandas as pd
import pytest
from pydantic import ValidationError

from gavel.schemas import Sale
from gavel.times import as_utc, as_utc_timestamp

PLUS_TWO = timezone(timedelta(hours=2))


def test_a_naive_datetime_is_read_as_utc() -> None:
    moment = as_utc(datetime(2015, 1, 5, 9, 30, 15, 123456))
    assert moment == datetime(2015, 1, 5, 9, 30, 15, 123456, tzinfo=UTC)
    assert moment.tzinfo is UTC


def test_an_aware_datetime_is_converted() -> None:
    moment = as_utc(datetime(2015, 1, 5, 1, 0, tzinfo=PLUS_TWO))
    assert moment == datetime(2015, 1, 4, 23, 0, tzinfo=UTC)
    assert moment.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))),
    ],
)
def test_overflow_is_a_value_error(value: datetime) -> None:
    with pytest.raises(ValueError, match="cannot be expressed in UTC") as caught:
        as_utc(value)
    assert isinstance(caught.value.__cause__, OverflowError)


def test_the_schemas_use_the_same_rule() -> None:
    naive = Sale(auction_id="a1", sold_at=datetime(2015, 1, 5, 9, 30), sellingprice=1.0)
    assert naive.sold_at == datetime(2015, 1, 5, 9, 30, tzinfo=UTC)
    aware = Sale(auction_id="a1", sold_at="2015-01-05T01:00:00+02:00", sellingprice=1.0)
    assert aware.sold_at == datetime(2015, 1, 4, 23, 0, tzinfo=UTC)
    with pytest.raises(ValidationError, match="cannot be expressed in UTC"):
        Sale(auction_id="a1", sold_at="0001-01-01T00:00:00+01:00", sellingprice=1.0)


@pytest.mark.parametrize(
    "value",
    [
        "2015-03-01 05:00",
        date(2015, 3, 1),
        datetime(2015, 3, 1, 5),
        pd.Timestamp("2015-03-01 05:00"),
        pd.Timestamp("2015-03-01 06:00", tz="Europe/Berlin"),
        "2015-03-01T07:00:00+02:00",
    ],
)
def test_timestamps_follow_the_rule(value: str | date | datetime | pd.Timestamp) -> None:
    stamp = as_utc_timestamp(value)
    assert isinstance(stamp, pd.Timestamp)
    assert str(stamp.tz) == "UTC"
    assert stamp.floor("D") == pd.Timestamp("2015-03-01", tz="UTC")
    assert stamp.hour in (0, 5)


def test_timestamps_keep_nanoseconds_and_nat() -> None:
    stamp = as_utc_timestamp(pd.Timestamp("2015-03-01 00:00:00.000000001"))
    assert stamp.nanosecond == 1
    assert as_utc_timestamp("NaT") is pd.NaT
    with pytest.raises(ValueError):
        as_utc_timestamp("not a time")


def test_importing_the_rule_and_the_schemas_stays_light() -> None:
    heavy = ("pandas", "mlflow", "confluent_kafka", "faust", "xgboost", "evidently")
    code = (
        "import sys, gavel.times, gavel.schemas; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
