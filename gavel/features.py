"""Feature preparation shared by training and serving.

Models take raw listing columns; :func:`derive_features` turns them into the
model's inputs inside the sklearn pipeline, so serving and training cannot
disagree.

>>> import pandas as pd
>>> raw = pd.DataFrame({"listed_at": [pd.Timestamp("2015-01-05", tz="UTC")], "year": [2012],
...                     "make": [" Ford "], "model": ["Fusion"], "odometer": [36000.0]})
>>> out = derive_features(raw)
>>> out.loc[0, "make"], float(out.loc[0, "age"])
('ford', 3.0)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from gavel.schemas import LISTING_FIELDS, Listing

CATEGORICAL_FEATURES: tuple[str, ...] = (
    "make",
    "model",
    "trim",
    "body",
    "transmission",
    "state",
    "color",
    "interior",
)
NUMERIC_FEATURES: tuple[str, ...] = (
    "year",
    "age",
    "odometer",
    "miles_per_year",
    "condition",
    "mmr",
)
MODEL_FEATURES: tuple[str, ...] = CATEGORICAL_FEATURES + NUMERIC_FEATURES
TARGET = "sellingprice"
"""What the models predict: the sale price column (:attr:`gavel.schemas.Sale.sellingprice`)."""

# The columns drift monitoring compares; derived ones add nothing new.
MONITORED_NUMERIC: tuple[str, ...] = ("year", "odometer", "condition", "mmr")
MONITORED_CATEGORICAL: tuple[str, ...] = ("make", "body", "transmission", "state")


def listings_frame(listings: Iterable[Listing]) -> pd.DataFrame:
    """Raw listing columns as a frame, one row per listing (the serving entry point)."""
    rows = [listing.__dict__ for listing in listings]
    return pd.DataFrame.from_records(rows, columns=list(LISTING_FIELDS))


MISSING_TEXT: frozenset[str] = frozenset({"", "\u2014", "\u2013", "-", "nan", "none", "null"})
"""Text that means "unknown" once stripped and lower-cased: nothing, a dash (em dash, en
dash or hyphen) or a spelled-out missing value. Loaders and the model read it alike.

>>> sorted(value for value in (" — ", "None", "Ford") if value.strip().lower() in MISSING_TEXT)
[' — ', 'None']
"""


def _normalise_text(series: pd.Series) -> np.ndarray:
    # A plain loop beats pandas string methods on serving-sized batches by ~5x.
    out = np.empty(len(series), dtype=object)
    for index, value in enumerate(series.to_numpy(dtype=object)):
        text = value.strip().lower() if isinstance(value, str) else ""
        # Encoders want one missing marker: NaN in an object column, never pd.NA or None.
        out[index] = np.nan if text in MISSING_TEXT else text
    return out


def derive_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Model inputs from raw listing columns; unknown values become missing."""
    listed_at = pd.to_datetime(raw["listed_at"], utc=True)
    year = pd.to_numeric(raw["year"], errors="coerce").astype(float)
    age = (listed_at.dt.year.astype(float) - year).clip(lower=0.0)
    out = pd.DataFrame(index=raw.index)
    for column in CATEGORICAL_FEATURES:
        if column in raw:
            out[column] = _normalise_text(raw[column])
        else:
            out[column] = np.nan
    out["year"] = year
    out["age"] = age
    for column in ("odometer", "condition", "mmr"):
        out[column] = pd.to_numeric(raw[column], errors="coerce") if column in raw else np.nan
    out["miles_per_year"] = out["odometer"] / age.clip(lower=0.5)
    out = out.astype({c: float for c in NUMERIC_FEATURES})
    return out[list(MODEL_FEATURES)]
