"""Timestamps: everything in Gavel is timezone-aware UTC, and a naive time means UTC.

:func:`as_utc` is the one rule, for datetimes (the schemas validate with it);
:func:`as_utc_timestamp` applies it to anything pandas reads as a time.

>>> from datetime import datetime
>>> as_utc(datetime(2015, 1, 5, 9, 30))
datetime.datetime(2015, 1, 5, 9, 30, tzinfo=datetime.timezone.utc)
>>> as_utc_timestamp("2015-01-05")
Timestamp('2015-01-05 00:00:00+0000', tz='UTC')
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported on use: the schemas import this module and stay light
    import pandas as pd


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC: a naive value is read as UTC, an aware one is converted.

    An offset that pushes the time past year 1 or 9999 raises ``ValueError`` (not
    ``OverflowError``), so that pydantic reports it as a validation error.

    >>> from datetime import timedelta, timezone
    >>> as_utc(datetime(2015, 1, 5, 1, 0, tzinfo=timezone(timedelta(hours=2))))
    datetime.datetime(2015, 1, 4, 23, 0, tzinfo=datetime.timezone.utc)
    >>> as_utc(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    Traceback (most recent call last):
    ...
    ValueError: 0001-01-01T00:00:00+01:00 cannot be expressed in UTC
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # an offset that pushes year 1 or 9999 out of range
        raise ValueError(f"{value.isoformat()} cannot be expressed in UTC") from exc


def as_utc_timestamp(value: str | date | datetime | pd.Timestamp) -> pd.Timestamp:
    """``value`` as a UTC ``pandas.Timestamp``, by the rule of :func:`as_utc`.

    ``NaT`` (from ``None`` or ``"NaT"``) stays ``NaT``; text pandas cannot read raises
    ``ValueError``.

    >>> import pandas as pd
    >>> as_utc_timestamp(pd.Timestamp("2015-03-01 05:00", tz="Europe/Berlin"))
    Timestamp('2015-03-01 04:00:00+0000', tz='UTC')
    """
    import pandas as pd

    stamp = pd.Timestamp(value)
    if pd.isna(stamp):  # NaT, which pandas-stubs do not expect from the constructor
        return stamp
    return pd.Timestamp(as_utc(stamp))
