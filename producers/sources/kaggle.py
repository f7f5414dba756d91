"""Loader for the Kaggle "Used Car Auction Prices" CSV (``car_prices.csv``).

It turns the published CSV into an auction frame (see :mod:`producers.sources.frame`):
messy values are cleaned, rows that cannot become a valid :class:`gavel.schemas.Listing`
are rejected with a reason, and every decision is counted.

Both published variants are accepted: ``condition`` on the 1-49 or the 1.0-5.0 scale, and
``saledate`` as JavaScript text ("Tue Dec 16 2014 12:30:00 GMT-0800 (PST)") or ISO text
("2015-04-30 04:00:00"; naive means UTC).

In the output frame, ``NaN`` in a float column and ``None`` in a text column both mean
"unknown" (``None`` in the ``Listing``).

>>> import pandas as pd
>>> raw = pd.DataFrame([{
...     "year": "2012", "make": "Ford", "model": "Fusion", "trim": "SE", "body": "sedan",
...     "transmission": "automatic", "vin": "1ABC", "state": "ca", "condition": "35",
...     "odometer": "1.0", "color": "—", "interior": "black", "seller": "x", "mmr": "9000",
...     "sellingprice": "9500", "saledate": "Tue Dec 16 2014 12:30:00 GMT-0800 (PST)"}])
>>> load = normalise_kaggle_frame(raw)
>>> row = load.frame.to_dict("records")[0]
>>> row["body"], row["condition"], row["odometer"], row["color"], str(row["listed_at"])
('Sedan', 3.5, nan, None, '2014-12-16 20:30:00+00:00')
>>> sorted(load.repaired)
['body_recased', 'condition_rescaled', 'odometer_placeholder', 'unknown_color']
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from gavel.features import MISSING_TEXT, TARGET
from gavel.schemas import MAX_CONDITION, MAX_ODOMETER, MIN_CONDITION, MIN_MODEL_YEAR, Listing
from producers.sources.frame import RECORD_COLUMNS, check_auction_frame

log = logging.getLogger(__name__)

__all__ = [
    "KAGGLE_COLUMNS",
    "REJECTION_REASONS",
    "KaggleFormatError",
    "KaggleLoad",
    "KaggleRows",
    "clean_kaggle_frame",
    "load_kaggle_csv",
    "normalise_kaggle_frame",
    "parse_saledate",
]

ConditionScale = Literal["auto", "5", "49"]

KAGGLE_COLUMNS: tuple[str, ...] = (
    "year",
    "make",
    "model",
    "trim",
    "body",
    "transmission",
    "vin",
    "state",
    "condition",
    "odometer",
    "color",
    "interior",
    "seller",
    "mmr",
    "sellingprice",
    "saledate",
)

# Rejection reasons, in the order they are checked: a row is counted under the first that applies.
REJECTION_REASONS: tuple[str, ...] = (
    "empty_row",
    "shifted_columns",
    "missing_make_model",
    "bad_saledate",
    "bad_year",
    "missing_price",
    "absurd_price",
    "bad_condition",
    "bad_odometer",
    "text_too_long",
    "invalid_listing",
)

_OPTIONAL_TEXT = ("trim", "body", "color", "interior", "seller")
_TEXT_LIMITS = {"make": 60, "model": 80, **dict.fromkeys(_OPTIONAL_TEXT, 200)}
_TRANSMISSIONS = ("automatic", "manual", "")
_MAX_VIN = 32
_MAX_MMR = 1_000_000.0
# The 1-49 scale tops out at 49; a little slack, beyond that the value is nonsense.
_MAX_CONDITION_49 = 50.0
_ODOMETER_PLACEHOLDER = 999_999.0

_JS_DATE = (
    r"^(?:[A-Za-z]{3},?\s+)?(?P<date>[A-Za-z]{3}\s+\d{1,2}\s+\d{4}\s+\d{1,2}:\d{2}:\d{2})"
    r"\s*(?:GMT|UTC)(?P<offset>[+-]\d{4})(?:\s*\([^)]*\))?$"
)
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}.*)?$"
_NUMBER = r"^[+-]?\d+(?:\.\d*)?$"

# The dataset's own spellings; lower-case variants map onto these.
_BODY_SPELLINGS: tuple[str, ...] = (
    "Access Cab",
    "Beetle Convertible",
    "Cab Plus",
    "Cab Plus 4",
    "Club Cab",
    "Convertible",
    "Coupe",
    "Crew Cab",
    "CrewMax Cab",
    "CTS Coupe",
    "CTS Wagon",
    "CTS-V Coupe",
    "CTS-V Wagon",
    "Double Cab",
    "E-Series Van",
    "Elantra Coupe",
    "Extended Cab",
    "G Convertible",
    "G Coupe",
    "G Sedan",
    "G37 Convertible",
    "G37 Coupe",
    "Genesis Coupe",
    "GranTurismo Convertible",
    "Hatchback",
    "King Cab",
    "Koup",
    "Mega Cab",
    "Minivan",
    "Promaster Cargo Van",
    "Q60 Convertible",
    "Q60 Coupe",
    "Quad Cab",
    "Ram Van",
    "Regular Cab",
    "Sedan",
    "SUV",
    "SuperCab",
    "SuperCrew",
    "Transit Van",
    "TSX Sport Wagon",
    "Van",
    "Wagon",
    "Xtracab",
)
_BODY_CANONICAL = {spelling.lower(): spelling for spelling in _BODY_SPELLINGS}
_BODY_ACRONYMS = frozenset({"SUV", "CTS", "CTS-V", "TSX", "SRT", "AMG", "GT", "XL", "RV"})


class KaggleFormatError(ValueError):
    """A file or frame that is not the Kaggle auction CSV (e.g. a column is missing)."""


@dataclass(frozen=True)
class KaggleLoad:
    """The result of a load: the auction frame and what happened to every row.

    ``rejected`` counts dropped rows by reason (one reason per row, see
    ``REJECTION_REASONS``). ``repaired`` counts values of kept rows that were cleaned:
    ``missing_condition``, ``condition_rescaled`` (read on the 1-49 scale),
    ``odometer_placeholder`` (empty, 0, 1 or >= 999,999), ``missing_mmr``, ``bad_mmr``
    (non-numeric or not positive), ``unknown_color`` / ``unknown_interior`` (and other text
    columns: a dash or a spelled-out missing value, see :data:`gavel.features.MISSING_TEXT`),
    ``body_recased`` and ``bad_vin`` (too long to be a VIN).
    """

    frame: pd.DataFrame
    rejected: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)
    total_rows: int = 0

    @property
    def kept(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class KaggleRows:
    """Every row of a Kaggle frame, cleaned, and the checks each row fails.

    ``text`` holds the Kaggle columns as stripped text; ``values`` the listing columns
    (but ``auction_id``) and ``sellingprice`` of every row, cleaned: ``""`` for unknown
    text, ``NaN`` for unknown numbers. ``failed`` maps each rejection reason but
    ``invalid_listing``, in ``REJECTION_REASONS`` order, to the rows that fail its check;
    ``repairs`` maps each kind of repair to the rows whose value it cleaned.
    """

    text: pd.DataFrame
    values: pd.DataFrame
    failed: dict[str, pd.Series]
    repairs: dict[str, pd.Series]

    def first_reasons(self) -> pd.Series:
        """Each row's rejection reason: the first check it fails (``<NA>`` when none)."""
        reasons = pd.Series(pd.NA, index=self.text.index, dtype="string")
        for reason, rows in self.failed.items():
            # First reason wins, so a shifted row is not also counted as a bad price or date.
            reasons.mask(reasons.isna() & rows, reason, inplace=True)
        return reasons

    def passing(self, tolerated: Collection[str] = ()) -> pd.Series:
        """The rows that fail no check but the ``tolerated`` ones."""
        fails = pd.Series(False, index=self.text.index)
        for reason, rows in self.failed.items():
            if reason not in tolerated:
                fails |= rows
        return ~fails


def load_kaggle_csv(
    path: str | Path,
    *,
    condition_scale: ConditionScale = "auto",
    min_price: float = 500,
    max_price: float = 250_000,
    progress: bool = False,
) -> KaggleLoad:
    """Read a Kaggle auction CSV (plain or ``.gz``) into an auction frame.

    Every value is read as text (no NA guessing), then cleaned by
    :func:`normalise_kaggle_frame`.

    >>> load = load_kaggle_csv("car_prices.csv.gz")  # doctest: +SKIP
    >>> load.kept + sum(load.rejected.values()) == load.total_rows  # doctest: +SKIP
    True
    """
    path = Path(path)
    with _status(progress, f"Reading {path.name}") as say:
        compression: Literal["gzip"] | None = "gzip" if _is_gzip(path) else None
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, compression=compression)
        say(f"Cleaning {len(raw):,} rows")
        return _normalise(
            raw,
            condition_scale=condition_scale,
            min_price=min_price,
            max_price=max_price,
            say=say,
        )


def normalise_kaggle_frame(
    raw: pd.DataFrame,
    *,
    condition_scale: ConditionScale = "auto",
    min_price: float = 500,
    max_price: float = 250_000,
) -> KaggleLoad:
    """Clean a frame of Kaggle CSV text columns into an auction frame.

    ``condition_scale`` says how to read ``condition``:

    - ``"5"``: values are on the 1.0-5.0 scale; others are rejected (``bad_condition``).
    - ``"49"``: values are on the 1-49 scale; they are divided by 10 and clipped to 1.0-5.0.
    - ``"auto"``: decided per value, because real extracts mix both scales in one file. A value
      above 5 is on the 1-49 scale (divided by 10, clipped to 1.0-5.0), a value from 1 to 5 is
      on the 1.0-5.0 scale. So "4.5" and "4" stay 4.5 and 4.0, "45" becomes 4.5, "19" becomes
      1.9. Values 1 to 5 are ambiguous (on the 1-49 scale they would all clip to 1.0) and are
      read as 1.0-5.0; pass ``"49"`` when a file is known to use that scale only.

    Rows that cannot become a :class:`~gavel.schemas.Listing` plus a sale price are dropped
    and counted in ``rejected`` under the first reason of ``REJECTION_REASONS`` that applies:
    ``empty_row``; ``shifted_columns`` (a transmission that is not one, a state that is not
    two letters, or a bare number as sale date: the tell-tales of a row whose cells slid
    sideways); ``missing_make_model``; ``bad_saledate``; ``bad_year`` (not a whole number in
    1950 to sale year + 1); ``missing_price``; ``absurd_price`` (outside ``min_price`` to
    ``max_price``); ``bad_condition`` (off the chosen scale); ``bad_odometer`` (text or
    negative); ``text_too_long``; ``invalid_listing`` (refused by the ``Listing`` model, a
    safety net behind the vectorised checks).

    ``auction_id`` is ``"kg-"`` and 16 hex digits of the SHA-1 of the VIN (or, without one, of
    the descriptive columns), the ISO sale time and the row's rank among earlier rows with the
    same two: the same input gives the same ids, and ids do not depend on which rows are
    rejected.
    """
    return _normalise(
        raw, condition_scale=condition_scale, min_price=min_price, max_price=max_price
    )


def clean_kaggle_frame(
    raw: pd.DataFrame,
    *,
    condition_scale: ConditionScale = "auto",
    min_price: float = 500,
    max_price: float = 250_000,
) -> KaggleRows:
    """Every row of a frame of Kaggle CSV text columns, cleaned, and the checks it fails.

    The first step of :func:`normalise_kaggle_frame` (whose docstring lists the checks),
    for a reader with a row policy of its own: the calibration keeps rows without a make.

    >>> rows = clean_kaggle_frame(pd.DataFrame([{**dict.fromkeys(KAGGLE_COLUMNS, ""),
    ...     "make": "Ford", "sellingprice": "90", "saledate": "2015-04-30 04:00:00"}]))
    >>> [reason for reason, failed in rows.failed.items() if failed.any()]
    ['missing_make_model', 'bad_year', 'absurd_price']
    >>> rows.first_reasons().tolist(), rows.passing({"missing_make_model"}).tolist()
    (['missing_make_model'], [False])
    """
    _check_condition_scale(condition_scale)
    return _clean(_text_columns(raw), condition_scale, min_price, max_price)


def _normalise(
    raw: pd.DataFrame,
    *,
    condition_scale: ConditionScale,
    min_price: float,
    max_price: float,
    say: Callable[[str], None] | None = None,
) -> KaggleLoad:
    _check_condition_scale(condition_scale)
    text = _text_columns(raw)
    if len(text) == 0:
        log.info("kaggle: kept 0 of 0 rows")
        return KaggleLoad(frame=_empty_frame(), total_rows=0)
    rows = _clean(text, condition_scale, min_price, max_price)
    reject = rows.first_reasons()
    if say is not None:
        say("Validating listings")
    kept = _kept_listings(rows, reject.isna())
    invalid = _invalid_rows(kept)
    if len(invalid):
        reject.loc[pd.Index(invalid)] = "invalid_listing"
        kept = kept.drop(index=invalid)
    return _load_result(kept, reject, rows.repairs)


def _check_condition_scale(condition_scale: str) -> None:
    if condition_scale not in ("auto", "5", "49"):
        raise ValueError(f"condition_scale must be 'auto', '5' or '49', not {condition_scale!r}")


def _clean(
    text: pd.DataFrame, condition_scale: ConditionScale, min_price: float, max_price: float
) -> KaggleRows:
    """Every column cleaned and every check but ``invalid_listing`` made, on all rows."""
    transmission = _per_unique(text["transmission"], lambda u: u.str.lower())
    state = _per_unique(text["state"], lambda u: u.str.lower())
    listed_at = parse_saledate(text["saledate"])
    year, bad_year = _year(text["year"], listed_at)
    price, missing_price, absurd_price = _price(text[TARGET], min_price, max_price)
    condition, condition_ok, rescaled = _condition(text["condition"], condition_scale)
    odometer, bad_odometer, placeholder = _odometer(text["odometer"])
    mmr, missing_mmr, bad_mmr = _mmr(text["mmr"])
    described, text_repairs, too_long = _descriptions(text)
    vin, bad_vin = _vin(text["vin"])
    failed = {
        "empty_row": (text == "").all(axis=1),
        "shifted_columns": _shifted_columns(text["saledate"], transmission, state),
        "missing_make_model": (text["make"] == "") | (text["model"] == ""),
        "bad_saledate": listed_at.isna(),
        "bad_year": bad_year,
        "missing_price": missing_price,
        "absurd_price": absurd_price,
        "bad_condition": ~condition_ok,
        "bad_odometer": bad_odometer,
        "text_too_long": too_long,
    }
    repairs = {
        "missing_condition": text["condition"] == "",
        "condition_rescaled": rescaled,
        "odometer_placeholder": placeholder,
        "missing_mmr": missing_mmr,
        "bad_mmr": bad_mmr,
        **text_repairs,
        "bad_vin": bad_vin,
    }
    values = described.assign(
        listed_at=listed_at,
        year=year,
        transmission=transmission,
        state=state,
        condition=condition,
        odometer=odometer,
        mmr=mmr,
        vin=vin,
        **{TARGET: price},
    )
    return KaggleRows(text=text, values=values, failed=failed, repairs=repairs)


def _shifted_columns(saledate: pd.Series, transmission: pd.Series, state: pd.Series) -> pd.Series:
    """The tell-tales of a row whose cells slid sideways: a transmission that is not one,
    a state that is not two letters, or a bare number as sale date."""
    return (
        ~transmission.isin(_TRANSMISSIONS)
        | _per_unique(state, lambda u: (u != "") & ~u.str.fullmatch(r"[a-z]{2}"))
        | _per_unique(saledate, lambda u: u.str.fullmatch(_NUMBER))
    )


def _year(text: pd.Series, listed_at: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Model years, and which are bad: not a whole number in 1950 to sale year + 1."""
    year = pd.to_numeric(text, errors="coerce")
    sale_year = listed_at.dt.year
    year_ok = (year == np.floor(year)) & (year >= MIN_MODEL_YEAR) & (year <= sale_year + 1)
    return year, ~year_ok


def _price(
    text: pd.Series, min_price: float, max_price: float
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Sale prices, which are missing and which are outside ``min_price`` to ``max_price``."""
    price = pd.to_numeric(text, errors="coerce")
    absurd = (price <= 0) | (price < min_price) | (price > max_price)
    return price, price.isna(), absurd


def _odometer(text: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Readings (``NaN`` for placeholders), which are bad (text or negative) and which
    were placeholders (empty, 0, 1 or >= 999,999)."""
    odometer = pd.to_numeric(text, errors="coerce")
    bad = ((text != "") & odometer.isna()) | (odometer < 0)
    placeholder = odometer.isna() | (odometer <= 1) | (odometer >= _ODOMETER_PLACEHOLDER)
    return odometer.mask(placeholder | (odometer > MAX_ODOMETER)), bad, placeholder


def _mmr(text: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """MMR values (``NaN`` unless positive and plausible), which were empty and which bad."""
    mmr = pd.to_numeric(text, errors="coerce")
    unusable = mmr.isna() | (mmr <= 0) | (mmr > _MAX_MMR)
    return mmr.mask(unusable), text == "", unusable & (text != "")


def _descriptions(text: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.Series], pd.Series]:
    """Make, model and the optional text columns cleaned (``""`` when unknown), their
    repairs, and the rows with a text too long for a listing."""
    out = pd.DataFrame(index=text.index)
    repairs: dict[str, pd.Series] = {}
    for column in ("make", "model"):
        out[column] = text[column]
    for column in _OPTIONAL_TEXT:
        values = text[column]
        if column in ("color", "interior"):
            values = _per_unique(values, lambda u: u.str.lower())
        unknown = _per_unique(values, lambda u: (u != "") & u.str.lower().isin(MISSING_TEXT))
        repairs[f"unknown_{column}"] = unknown
        out[column] = values.mask(unknown, "")
    out["body"], repairs["body_recased"] = _canonical_body(out["body"])
    too_long = pd.Series(False, index=text.index)
    for column, limit in _TEXT_LIMITS.items():
        too_long |= _per_unique(out[column], _longer_than(limit))
    return out, repairs, too_long


def _longer_than(limit: int) -> Callable[[pd.Series], pd.Series]:
    return lambda u: u.str.len() > limit


def _vin(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """VINs in lower case (``""`` when too long to be one), and which were too long."""
    vin = text.str.lower()
    too_long = vin.str.len() > _MAX_VIN
    return vin.mask(too_long, ""), too_long


def _kept_listings(rows: KaggleRows, keep: pd.Series) -> pd.DataFrame:
    """The kept rows, typed as the auction frame wants them, with their auction ids."""
    kept = rows.values.loc[keep].copy()
    kept["year"] = kept["year"].astype("int64")
    for column in ("condition", "odometer", "mmr", TARGET):
        kept[column] = kept[column].astype("float64")
    for column in ("make", "model", *_OPTIONAL_TEXT, "transmission", "state", "vin"):
        kept[column] = _none_if_empty(kept[column])
    kept["auction_id"] = _auction_ids(rows.text, rows.values["listed_at"], keep)
    return kept


def _load_result(
    kept: pd.DataFrame, reject: pd.Series, repairs: dict[str, pd.Series]
) -> KaggleLoad:
    """The load: the kept rows as a sorted auction frame, and the counts (logged)."""
    total = len(reject)
    keep = reject.isna()
    rejected = Counter({str(k): int(v) for k, v in reject.value_counts().items()})
    repaired = Counter(
        {name: int((mask & keep).sum()) for name, mask in repairs.items() if (mask & keep).any()}
    )
    frame = kept.sort_values("listed_at", kind="stable").reset_index(drop=True)
    frame = check_auction_frame(frame.loc[:, list(RECORD_COLUMNS)])
    log.info(
        "kaggle: kept %d of %d rows, rejected %d (%s)",
        len(frame),
        total,
        total - len(frame),
        ", ".join(f"{reason}={count}" for reason, count in rejected.most_common()) or "none",
    )
    return KaggleLoad(frame=frame, rejected=rejected, repaired=repaired, total_rows=total)


def _empty_frame() -> pd.DataFrame:
    floats = ("condition", "odometer", "mmr", TARGET)
    columns = {
        column: pd.Series(
            dtype="datetime64[ns, UTC]"
            if column == "listed_at"
            else "int64"
            if column == "year"
            else "float64"
            if column in floats
            else object
        )
        for column in RECORD_COLUMNS
    }
    return pd.DataFrame(columns)


def _text_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """The Kaggle columns as stripped ``object`` text, ``""`` for empty."""
    columns = {str(c).strip().lower(): c for c in raw.columns}
    missing = [c for c in KAGGLE_COLUMNS if c not in columns]
    if missing:
        raise KaggleFormatError(f"not a Kaggle auction frame: columns {missing} are missing")
    raw = raw.reset_index(drop=True)  # Rejections are tracked by label; labels must be unique.
    text = pd.DataFrame(index=raw.index)
    for column in KAGGLE_COLUMNS:
        values = raw[columns[column]]
        text[column] = _per_unique(
            values.where(values.notna(), ""), lambda u: u.astype(str).str.strip()
        ).astype(object)
    return text


def _per_unique(values: pd.Series, func: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """``func(values)``, computed once per distinct value (most columns repeat a lot)."""
    codes, uniques = pd.factorize(values)
    result = func(pd.Series(uniques, dtype=values.dtype)).array
    return pd.Series(result.take(codes), index=values.index)


def parse_saledate(saledate: pd.Series) -> pd.Series:
    """Sale times as UTC timestamps (``NaT`` when unparseable), from the text of either
    published variant: JavaScript ``Date.toString`` text or ISO text (naive means UTC).

    >>> text = pd.Series(["Tue Dec 16 2014 12:30:00 GMT-0800 (PST)", "2015-04-30 04:00:00", "?"])
    >>> parse_saledate(text).dt.strftime("%Y-%m-%d %H:%M").tolist()
    ['2014-12-16 20:30', '2015-04-30 04:00', nan]
    """
    if saledate.hasnans:
        saledate = saledate.where(saledate.notna(), "")
    return _per_unique(saledate, _parse_saledate_unique)


def _parse_saledate_unique(saledate: pd.Series) -> pd.Series:
    saledate = saledate.str.strip()
    parsed = pd.Series(pd.NaT, index=saledate.index, dtype="datetime64[ns, UTC]")
    js = saledate.str.extract(_JS_DATE)
    is_js = js["date"].notna()
    if is_js.any():
        # Drop the weekday and the zone name: the numeric offset alone says it all.
        stamp = js.loc[is_js, "date"].str.replace(r"\s+", " ", regex=True)
        parsed.loc[is_js] = pd.to_datetime(
            stamp + " " + js.loc[is_js, "offset"],
            format="%b %d %Y %H:%M:%S %z",
            utc=True,
            errors="coerce",
        )
    is_iso = ~is_js & saledate.str.fullmatch(_ISO_DATE)
    if is_iso.any():
        # utc=True reads naive text as UTC and converts text with offsets.
        parsed.loc[is_iso] = pd.to_datetime(
            saledate[is_iso], format="ISO8601", utc=True, errors="coerce"
        )
    return parsed


def _condition(
    condition: pd.Series, scale: ConditionScale
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Conditions on the 1.0-5.0 scale, whether each is acceptable, whether it was rescaled."""
    value = pd.to_numeric(condition, errors="coerce")
    empty = condition == ""
    if scale == "5":
        on_49 = pd.Series(False, index=condition.index)
    elif scale == "49":
        on_49 = value.notna()
    else:
        on_49 = value > MAX_CONDITION
    on_5 = value.notna() & ~on_49
    ok_49 = on_49 & (value > 0) & (value <= _MAX_CONDITION_49)
    ok_5 = on_5 & (value >= MIN_CONDITION) & (value <= MAX_CONDITION)
    scaled = value.where(~on_49, (value / 10).clip(MIN_CONDITION, MAX_CONDITION))
    acceptable = empty | ok_49 | ok_5
    return scaled.where(ok_49 | ok_5), acceptable, ok_49


def _canonical_body(body: pd.Series) -> tuple[pd.Series, pd.Series]:
    """One spelling per body style (the dataset's own), and which values changed."""
    uniques = body.unique()
    lookup = {value: _spell_body(value) for value in uniques}
    canonical = body.map(lookup)
    return canonical, canonical != body


def _spell_body(value: str) -> str:
    words = value.split()
    joined = " ".join(words)
    if joined.lower() in _BODY_CANONICAL:
        return _BODY_CANONICAL[joined.lower()]
    spelled = []
    for word in words:
        if word.upper() in _BODY_ACRONYMS:
            spelled.append(word.upper())
        elif word.islower() or word.isupper():
            spelled.append("-".join(part.capitalize() for part in word.split("-")))
        else:  # Mixed case such as "SuperCrew" is deliberate.
            spelled.append(word)
    return " ".join(spelled)


def _none_if_empty(values: pd.Series) -> pd.Series:
    values = values.astype(object)
    return _none_unless(values, values != "")


def _none_unless(values: pd.Series, keep: pd.Series) -> pd.Series:
    """``values`` with ``None`` where ``keep`` is false."""
    kept: pd.Series = values.where(keep, None)  # type: ignore[call-overload]  # pandas takes None as `other`, its stubs do not
    return kept


def _auction_ids(text: pd.DataFrame, listed_at: pd.Series, keep: pd.Series) -> pd.Series:
    """Stable ids for the kept rows; the duplicate rank is taken over all rows."""
    vin = text["vin"].str.lower()
    described = text["year"].str.cat(
        text[["make", "model", "trim", "odometer", "state", "seller", TARGET]], sep="|"
    )
    key = vin.where(vin != "", "novin|" + described)
    rank = (
        pd.DataFrame({"key": key, "when": listed_at})
        .groupby(["key", "when"], dropna=False, sort=False)
        .cumcount()
    )

    kept_at = listed_at[keep]
    codes, uniques = pd.factorize(kept_at)
    iso = np.array([stamp.isoformat() for stamp in uniques], dtype=object)[codes]
    seeds = key[keep] + "|" + iso + "|" + rank[keep].astype(str)
    ids = ["kg-" + hashlib.sha1(seed.encode()).hexdigest()[:16] for seed in seeds]
    return pd.Series(ids, index=seeds.index, dtype=object)


_LISTINGS = TypeAdapter(list[Listing])


def _invalid_rows(kept: pd.DataFrame) -> list[object]:
    """Index labels of rows the ``Listing`` model still refuses (the safety net)."""
    if kept.empty:
        return []
    fields = [c for c in RECORD_COLUMNS if c != TARGET]
    columns = [
        # Naive UTC datetimes: the schema's UTC check is far slower on aware Timestamps.
        list(kept[c].dt.tz_convert(None).array.to_pydatetime())
        if c == "listed_at"
        else _none_unless(kept[c].astype(object), kept[c].notna()).tolist()
        for c in fields
    ]
    records = [dict(zip(fields, row, strict=True)) for row in zip(*columns, strict=True)]
    # Hundreds of thousands of new objects would trigger many useless cyclic GC passes.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _LISTINGS.validate_python(records)
    except ValidationError as error:
        positions = sorted({e["loc"][0] for e in error.errors() if e["loc"]})
        labels = [kept.index[p] for p in positions if isinstance(p, int)]
        for error_detail in error.errors()[:5]:
            log.debug("kaggle: invalid listing %s", error_detail)
        return labels
    finally:
        if gc_was_enabled:
            gc.enable()
    return []


def _is_gzip(path: Path) -> bool:
    if path.suffix == ".gz":
        return True
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


@contextmanager
def _status(enabled: bool, message: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while loading, or a no-op."""
    if not enabled:
        yield lambda _message: None
        return
    console = Console(stderr=True)
    with console.status(message) as status:
        yield status.update
