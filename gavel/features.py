"""Feature preparation shared by training and serving.

Models take raw listing columns; :func:`derive_features` turns them into the
model's inputs inside the sklearn pipeline. It is a pandas wrapper around
:func:`derive_columns`, which the worker's compiled scorer calls on columns read
straight from listings (:func:`listing_columns`): one derivation, so serving and
training cannot disagree.

>>> import pandas as pd
>>> raw = pd.DataFrame({"listed_at": [pd.Timestamp("2015-01-05", tz="UTC")], "year": [2012],
...                     "make": [" Ford "], "model": ["Fusion"], "odometer": [36000.0]})
>>> out = derive_features(raw)
>>> out.loc[0, "make"], float(out.loc[0, "age"])
('ford', 3.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from gavel.market import MARKET_FEATURES, reference_log_price
from gavel.schemas import LISTING_FIELDS, Listing
from gavel.text import MISSING_TEXT as MISSING_TEXT  # re-exported: the loaders read it here

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


OPTIONAL_INPUTS: tuple[str, ...] = tuple(
    name
    for name in LISTING_FIELDS
    if name in (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES) and name not in ("year", "make", "model")
)
"""The listing fields the model reads that a listing may lack (outputs name the missing)."""

REFERENCE = "mkt_reference"
"""The market's reference log price of a listing (:func:`gavel.market.reference_log_price`
of its mmr and its market features), derived with the other features."""
MARKET_COLUMNS: tuple[str, ...] = (*MARKET_FEATURES, REFERENCE)
"""The market columns :func:`derive_columns` passes on after :data:`MODEL_FEATURES`: the
market features a listing was given (NaN when it has none), and :data:`REFERENCE`."""

DERIVED_NUMERIC: tuple[str, ...] = ("age", "miles_per_year")
"""Numeric features computed from other columns; every other numeric feature is a raw column."""
RAW_NUMERIC: tuple[str, ...] = tuple(c for c in NUMERIC_FEATURES if c not in DERIVED_NUMERIC)
LISTED_YEAR = "listed_year"
"""The raw column :func:`derive_columns` reads for the listing's time: the UTC calendar year
of ``listed_at``, as a float (NaN when unknown)."""


def normalise_text(values: Sequence[object] | np.ndarray) -> np.ndarray:
    """Text as the encoders read it: stripped, lower-cased, and NaN when it means "unknown"
    (see :data:`MISSING_TEXT`) or is not text at all.

    >>> normalise_text([" Ford ", "—", None, "SUV"]).tolist()
    ['ford', nan, nan, 'suv']
    """
    # Plain loops beat pandas string methods on serving-sized batches by ~5x.
    texts = [value.strip().lower() if isinstance(value, str) else "" for value in values]
    out = np.empty(len(texts), dtype=object)
    # Encoders want one missing marker: NaN in an object column, never pd.NA or None.
    out[:] = [np.nan if text in MISSING_TEXT else text for text in texts]
    return out


def derive_columns(raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model inputs from raw columns: the one derivation that training and serving share.

    ``raw`` holds :data:`LISTED_YEAR` and ``year`` as float arrays, the other raw numeric
    columns (:data:`RAW_NUMERIC`) as float arrays with NaN for missing, and the text
    columns (:data:`CATEGORICAL_FEATURES`) as object arrays, and the listing's market
    features (:data:`gavel.market.MARKET_FEATURES`, from the online store or the offline
    as-of join) as float arrays; a column that is absent is missing in every row. The
    result has the columns of :data:`MODEL_FEATURES` then :data:`MARKET_COLUMNS`, in that
    order: object arrays of normalised text (NaN when unknown), and float64 numbers.
    :func:`derive_features` (inside every trained pipeline) and the compiled scorer of the
    worker (``stream_app.scorer``) both call it, so a feature added here reaches both.

    >>> out = derive_columns({LISTED_YEAR: np.array([2015.0, 2015.0]),
    ...                       "year": np.array([2012.0, 2016.0]),
    ...                       "odometer": np.array([36000.0, np.nan]),
    ...                       "make": np.array([" Ford ", "-"], dtype=object)})
    >>> out["make"].tolist(), out["age"].tolist(), out["miles_per_year"].tolist()
    (['ford', nan], [3.0, 0.0], [12000.0, nan])
    """
    listed_year = np.asarray(raw[LISTED_YEAR], dtype=float)
    rows = len(listed_year)
    out: dict[str, np.ndarray] = {}
    for column in CATEGORICAL_FEATURES:
        if column in raw:
            out[column] = normalise_text(raw[column])
        else:
            out[column] = np.full(rows, np.nan, dtype=object)
    numbers = {
        column: np.asarray(raw[column], dtype=float) if column in raw else np.full(rows, np.nan)
        for column in RAW_NUMERIC
    }
    # NaN stays NaN through both: an unknown year or listing time gives an unknown age.
    age = np.maximum(listed_year - numbers["year"], 0.0)
    # A car in its first year counts as half a year old, so miles_per_year stays finite.
    derived = {"age": age, "miles_per_year": numbers["odometer"] / np.maximum(age, 0.5)}
    for column in NUMERIC_FEATURES:
        out[column] = derived[column] if column in derived else numbers[column]
    ordered = {column: out[column] for column in MODEL_FEATURES}
    for column in MARKET_FEATURES:
        ordered[column] = (
            np.asarray(raw[column], dtype=float) if column in raw else np.full(rows, np.nan)
        )
    ordered[REFERENCE] = reference_log_price(
        numbers["mmr"], ordered["mkt_ratio_hat"], ordered["mkt_level_hat"]
    )
    return ordered


def _float_column(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def derive_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Model inputs from raw listing columns; unknown values become missing.

    The pandas face of :func:`derive_columns`: it reads ``listed_at`` as UTC, coerces
    numbers (text that is not a number becomes NaN) and keeps ``raw``'s index.
    """
    columns = {
        LISTED_YEAR: pd.to_datetime(raw["listed_at"], utc=True).dt.year.to_numpy(
            dtype=float, na_value=np.nan
        ),
        "year": _float_column(raw["year"]),
    }
    for column in RAW_NUMERIC:
        if column in raw and column not in columns:
            columns[column] = _float_column(raw[column])
    for column in CATEGORICAL_FEATURES:
        if column in raw:
            columns[column] = raw[column].to_numpy(dtype=object)
    for column in MARKET_FEATURES:
        if column in raw:
            columns[column] = _float_column(raw[column])
    return pd.DataFrame(derive_columns(columns), index=raw.index)


def listing_columns(listings: Sequence[Listing]) -> dict[str, np.ndarray]:
    """The raw columns :func:`derive_columns` reads, straight from validated listings.

    What :func:`listings_frame` then :func:`derive_features` would read, without a frame:
    the serving path's entry point.

    >>> from datetime import datetime, UTC
    >>> listing = Listing(auction_id="a1", listed_at=datetime(2015, 1, 5, tzinfo=UTC),
    ...                   year=2012, make="Ford", model="Fusion", odometer=36000)
    >>> columns = listing_columns([listing])
    >>> columns[LISTED_YEAR].tolist(), columns["odometer"].tolist(), columns["trim"].tolist()
    ([2015.0], [36000.0], [None])
    """
    rows = [listing.__dict__ for listing in listings]
    columns: dict[str, np.ndarray] = {
        LISTED_YEAR: np.array([row["listed_at"].year for row in rows], dtype=float)
    }
    for column in RAW_NUMERIC:
        if column in _LISTING_FIELD_SET:  # None becomes NaN
            columns[column] = np.array([row[column] for row in rows], dtype=float)
    for column in CATEGORICAL_FEATURES:
        if column in _LISTING_FIELD_SET:
            values = np.empty(len(rows), dtype=object)
            values[:] = [row[column] for row in rows]
            columns[column] = values
    return columns


_LISTING_FIELD_SET = frozenset(LISTING_FIELDS)
