"""Timestamps: everything in Gavel is timezone-aware UTC.

>>> as_utc_timestamp("2015-01-05")
Timestamp('2015-01-05 00:00:00+0000', tz='UTC')
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd


def as_utc_timestamp(value: str | date | datetime | pd.Timestamp) -> pd.Timestamp:
    """Naive values are read as UTC; aware ones are converted."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
