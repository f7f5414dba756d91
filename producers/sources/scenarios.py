"""Drift scenarios: named, dated changes to an auction frame.

A scenario affects the rows listed at or after its ``start`` and changes only what
its name says; everything else, including every earlier row, stays byte-identical.
Each scenario draws from its own random stream (derived from the generator's seed,
its name and how many scenarios of that name came before it), so adding one
scenario does not change the draws of another.

- :class:`MarketShock`: a segment's sale prices move; the MMR lags and does not.
- :class:`MarketDrift`: segment price levels wander as on real auctions; the MMR follows
  late (calibrated: :mod:`producers.sources.market_moves`).
- :class:`MixShift`: older, higher-mileage cars; the price function is unchanged.
- :class:`NewModels`: makes and models never seen in calibration appear.

Scenarios also parse from text, for command-line flags (see :func:`parse_scenario`):

>>> shock = parse_scenario("market_shock:start=2015-03-01,segment=body=SUV,change=-0.2")
>>> shock.start, shock.segment, shock.price_change
(Timestamp('2015-03-01 00:00:00+0000', tz='UTC'), {'body': 'SUV'}, -0.2)
>>> parse_scenario("new_models:start=2015-03-01,share=0.1").spec
'new_models:start=2015-03-01,share=0.1'
"""

from __future__ import annotations

import math
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from gavel.schemas import MAX_CONDITION, MAX_ODOMETER, MIN_CONDITION, MIN_MODEL_YEAR
from gavel.times import as_utc_timestamp

if TYPE_CHECKING:
    from producers.sources.synthetic import Calibration

_SEGMENT_EXCLUDED = frozenset({"listed_at", "sellingprice"})


class ScenarioError(ValueError):
    """A scenario that cannot be built or parsed."""


def _start(value: date | datetime | str | pd.Timestamp) -> pd.Timestamp:
    """A scenario's start in UTC (naive means UTC), or :class:`ScenarioError`."""
    try:
        stamp = as_utc_timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"start={value!r} is not a date or datetime") from exc
    if pd.isna(stamp):
        raise ScenarioError(f"start={value!r} is not a date or datetime")
    return stamp


@dataclass(frozen=True)
class Scenario(ABC):
    """A change to the auctions listed at or after ``start`` (UTC; naive means UTC)."""

    name: ClassVar[str]
    aliases: ClassVar[Mapping[str, str]] = {}

    start: pd.Timestamp | datetime | date | str

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _start(self.start))

    def affected(self, frame: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the rows this scenario may change."""
        return (frame["listed_at"] >= self.start).to_numpy()

    @abstractmethod
    def apply(
        self, frame: pd.DataFrame, rng: np.random.Generator, calibration: Calibration
    ) -> pd.DataFrame:
        """A changed copy of ``frame``; ``frame`` itself is left alone.

        Copies are shallow: changed columns are replaced whole, never written into.
        """

    @property
    def spec(self) -> str:
        """The text :func:`parse_scenario` turns back into this scenario."""
        parts: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "start":
                text = value.strftime(
                    "%Y-%m-%d" if value == value.normalize() else "%Y-%m-%dT%H:%M:%S"
                )
                parts.append(f"start={text}")
            elif isinstance(value, Mapping):
                parts.extend(f"{f.name}={k}={v}" for k, v in value.items())
            else:
                parts.append(f"{f.name}={value:g}")
        return f"{self.name}:{','.join(parts)}"


@dataclass(frozen=True)
class MarketShock(Scenario):
    """Sale prices of a segment move by ``price_change`` (-0.2 = 20% cheaper) from ``start``.

    ``segment`` maps columns to values (case-insensitive); a row must match them all,
    and an empty segment is the whole market. The MMR does not move: the market
    estimate lags the market, which is what hurts a model that leans on it.

    >>> MarketShock("2015-03-01", {"body": "suv"}).spec
    'market_shock:start=2015-03-01,segment=body=suv,price_change=-0.2'
    """

    name: ClassVar[str] = "market_shock"
    aliases: ClassVar[Mapping[str, str]] = {"change": "price_change"}

    segment: Mapping[str, str] = field(default_factory=dict)
    price_change: float = -0.20

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "segment", {str(k): str(v) for k, v in self.segment.items()})
        object.__setattr__(self, "price_change", float(self.price_change))
        for column in self.segment:
            if column in _SEGMENT_EXCLUDED:
                raise ScenarioError(f"market_shock: cannot segment on {column!r}")
        if not self.price_change > -1.0:
            raise ScenarioError(f"market_shock: change must be > -1, got {self.price_change}")

    def matches(self, frame: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the rows in the segment (any listing date)."""
        mask = np.ones(len(frame), dtype=bool)
        for column, wanted in self.segment.items():
            if column not in frame.columns:
                raise ScenarioError(f"market_shock: frame has no column {column!r}")
            codes, uniques = pd.factorize(frame[column])
            text = pd.Series(uniques.astype(str)).str.strip().str.lower()
            hits = np.flatnonzero(text.to_numpy() == wanted.strip().lower())
            mask &= np.isin(codes, hits)
        return mask

    def apply(
        self, frame: pd.DataFrame, rng: np.random.Generator, calibration: Calibration
    ) -> pd.DataFrame:
        rows = self.affected(frame) & self.matches(frame)
        out = frame.copy(deep=False)
        price = out["sellingprice"].to_numpy(dtype=float, copy=True)
        price[rows] *= 1.0 + self.price_change
        out["sellingprice"] = price
        return out


@dataclass(frozen=True)
class MarketDrift(Scenario):
    """From ``start`` the price levels of the whole market, of each body style and of each
    make wander (random walks in calendar days) and the MMR follows them late, with the
    sizes the calibration measured on real auctions (``calibration.json``, ``market``),
    times ``scale``. Sale prices and MMRs move; nothing else does.

    >>> MarketDrift("2015-01-01").spec
    'market_moves:start=2015-01-01,scale=1'
    """

    name: ClassVar[str] = "market_moves"

    scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "scale", float(self.scale))
        if not self.scale >= 0:
            raise ScenarioError(f"market_moves: scale must be >= 0, got {self.scale}")

    def apply(
        self, frame: pd.DataFrame, rng: np.random.Generator, calibration: Calibration
    ) -> pd.DataFrame:
        from producers.sources.market_moves import segment_drift

        rows = self.affected(frame)
        out = frame.copy(deep=False)
        if not rows.any() or calibration.market is None:
            return out
        assert isinstance(self.start, pd.Timestamp)  # __post_init__ made it one
        day = (frame["listed_at"][rows] - self.start.normalize()) // pd.Timedelta(days=1)
        segments = {
            "body": (_lower(frame["body"][rows]), _known(calibration.bodies.values)),
            "make": (_lower(frame["make"][rows]), _known(calibration.make)),
        }
        price_move, mmr_move = segment_drift(
            calibration.market, rng, day.to_numpy(dtype=np.int64), segments, self.scale
        )
        for column, move in (("sellingprice", price_move), ("mmr", mmr_move)):
            values = frame[column].to_numpy(dtype=float, copy=True)
            values[rows] = calibration.round_price(values[rows] * np.exp(move), column)
            out[column] = values
        return out


def _lower(values: pd.Series) -> list[str | None]:
    return [v.strip().lower() if isinstance(v, str) else None for v in values.tolist()]


def _known(values: np.ndarray) -> list[str]:
    """The distinct values of a calibration table, lower case, in their first order."""
    return list(dict.fromkeys(str(v).strip().lower() for v in values if isinstance(v, str)))


@dataclass(frozen=True)
class MixShift(Scenario):
    """From ``start`` the cars on sale are older and have more miles.

    Each car becomes Poisson(``older_years``) years older, its odometer follows the
    calibrated mileage curve to the new age (keeping its place in the distribution,
    and never going down) plus Exponential(``extra_miles``) miles, and its condition
    follows the calibrated condition model. Price and MMR move by exactly what the
    calibrated price function says the new features are worth, so the relationship
    price | features is unchanged. Make, model, body, state etc. are unchanged.
    """

    name: ClassVar[str] = "mix_shift"

    older_years: float = 4.0
    extra_miles: float = 15_000.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "older_years", float(self.older_years))
        object.__setattr__(self, "extra_miles", float(self.extra_miles))
        if self.older_years < 0 or self.extra_miles < 0:
            raise ScenarioError("mix_shift: older_years and extra_miles must be >= 0")

    def apply(
        self, frame: pd.DataFrame, rng: np.random.Generator, calibration: Calibration
    ) -> pd.DataFrame:
        n = len(frame)
        # Draw for every row, so a row's draw does not depend on which rows are affected.
        extra_age = rng.poisson(self.older_years, n)
        extra_miles = rng.exponential(self.extra_miles, n) if self.extra_miles > 0 else np.zeros(n)
        rows = self.affected(frame)
        out = frame.copy(deep=False)
        if not rows.any():
            return out
        listed_year = frame["listed_at"].dt.year.to_numpy()[rows]
        year0 = frame["year"].to_numpy()[rows]
        year1 = np.maximum(year0 - extra_age[rows], MIN_MODEL_YEAR)
        age0, age1 = listed_year - year0, listed_year - year1

        odo0 = frame["odometer"].to_numpy(dtype=float)[rows]
        mean0, sd0 = calibration.odometer_curve(age0)
        mean1, sd1 = calibration.odometer_curve(age1)
        z = (np.log1p(odo0) - mean0) / sd0
        odo1 = np.maximum(np.expm1(mean1 + sd1 * z), odo0) + extra_miles[rows]
        odo1 = np.clip(np.rint(odo1), 0, MAX_ODOMETER - 1)

        cond0 = frame["condition"].to_numpy(dtype=float)[rows]
        shift = calibration.expected_condition(age1, 0) - calibration.expected_condition(age0, 0)
        shift += np.nan_to_num(
            calibration.expected_condition(0, odo1) - calibration.expected_condition(0, odo0)
        )
        cond1 = np.clip(np.round(cond0 + shift, 1), MIN_CONDITION, MAX_CONDITION)

        # Missing odometer or condition stay missing and add nothing to the price change.
        change = (
            calibration.depreciation(age1, 0, 0)
            - calibration.depreciation(age0, 0, 0)
            + np.nan_to_num(
                calibration.depreciation(0, odo1, 0) - calibration.depreciation(0, odo0, 0)
            )
            + np.nan_to_num(
                calibration.depreciation(0, 0, cond1) - calibration.depreciation(0, 0, cond0)
            )
        )
        factor = np.exp(change)
        _set(out, "year", rows, year1)
        _set(out, "odometer", rows, odo1)
        _set(out, "condition", rows, cond1)
        _scale_prices(out, rows, factor, calibration)
        return out


@dataclass(frozen=True)
class NewModel:
    """A model absent from calibration; ``reference_price`` is what a 3-year-old car
    with 36,000 miles in condition 3.5 fetches at auction."""

    make: str
    model: str
    trim: str
    body: str
    reference_price: float


NEW_MODELS: tuple[NewModel, ...] = (
    NewModel("Rivian", "R1S", "Adventure", "SUV", 62_000),
    NewModel("Rivian", "R1T", "Adventure", "Crew Cab", 56_000),
    NewModel("Polestar", "2", "Long Range Dual Motor", "Hatchback", 31_000),
    NewModel("Polestar", "3", "Long Range Dual Motor", "SUV", 55_000),
    NewModel("Lucid", "Air", "Touring", "Sedan", 48_000),
    NewModel("VinFast", "VF 8", "Eco", "SUV", 27_000),
)


@dataclass(frozen=True)
class NewModels(Scenario):
    """From ``start`` a ``share`` of the cars are new (electric) models from new makes.

    Picked rows get the new make, model, trim and body (and an automatic
    transmission: these cars have no manual); price and MMR move by the difference
    between the new and the old model's calibrated level. Year, odometer, condition
    and the rest are unchanged.
    """

    name: ClassVar[str] = "new_models"

    share: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "share", float(self.share))
        if not 0.0 <= self.share <= 1.0:
            raise ScenarioError(f"new_models: share must be in [0, 1], got {self.share}")

    def apply(
        self, frame: pd.DataFrame, rng: np.random.Generator, calibration: Calibration
    ) -> pd.DataFrame:
        n = len(frame)
        picked = rng.random(n) < self.share
        choice = rng.integers(0, len(NEW_MODELS), n)
        rows = self.affected(frame) & picked
        out = frame.copy(deep=False)
        if not rows.any():
            return out
        choice = choice[rows]
        reference = calibration.depreciation(np.array(3), np.array(36_000.0), np.array(3.5))
        new_level = np.log([m.reference_price for m in NEW_MODELS]) - reference
        old_level = calibration.levels(
            frame["make"][rows], frame["model"][rows], frame["trim"][rows]
        )
        for column in ("make", "model", "trim", "body"):
            values = np.asarray([getattr(m, column) for m in NEW_MODELS], dtype=object)
            _set(out, column, rows, values[choice])
        _set(out, "transmission", rows, np.full(len(choice), "automatic", dtype=object))
        _scale_prices(out, rows, np.exp(new_level[choice] - old_level), calibration)
        return out


def _set(frame: pd.DataFrame, column: str, rows: np.ndarray, values: np.ndarray) -> None:
    """Assign ``values`` to ``frame[column]`` at ``rows``, keeping the column's dtype."""
    data = frame[column].to_numpy(copy=True)
    data[rows] = values
    frame[column] = data


def _scale_prices(
    frame: pd.DataFrame, rows: np.ndarray, factor: np.ndarray, calibration: Calibration
) -> None:
    """Multiply price and MMR of ``rows`` by ``factor``, rounded as generated prices are."""
    for column in ("sellingprice", "mmr"):
        values = frame[column].to_numpy(dtype=float, copy=True)
        values[rows] = calibration.round_price(values[rows] * factor, column)
        frame[column] = values


SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls for cls in (MarketShock, MarketDrift, MixShift, NewModels)
}


def scenario_rng(seed: int, name: str, occurrence: int = 0) -> np.random.Generator:
    """The random stream of the ``occurrence``-th scenario called ``name``."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, zlib.crc32(name.encode()), occurrence])
    )


def apply_scenarios(
    frame: pd.DataFrame,
    scenarios: Sequence[Scenario],
    *,
    seed: int,
    calibration: Calibration,
) -> pd.DataFrame:
    """Apply ``scenarios`` in order, each with its own random stream."""
    seen: dict[str, int] = {}
    for scenario in scenarios:
        occurrence = seen.get(scenario.name, 0)
        seen[scenario.name] = occurrence + 1
        frame = scenario.apply(frame, scenario_rng(seed, scenario.name, occurrence), calibration)
    return frame


def _number(name: str, key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ScenarioError(f"{name}: {key}={text!r} is not a number")
    return value


def parse_scenario(text: str) -> Scenario:
    """A scenario from its text form, as given to command-line flags.

    Grammar (spaces around separators are ignored; values cannot contain commas)::

        SPEC  := NAME [":" PARAM ("," PARAM)*]
        PARAM := KEY "=" VALUE

    ========================  =====================================================
    ``market_shock``          ``start``, ``segment=COLUMN=VALUE`` (repeatable; rows
                              must match all), ``change`` (or ``price_change``)
    ``market_moves``          ``start``, ``scale``
    ``mix_shift``             ``start``, ``older_years``, ``extra_miles``
    ``new_models``            ``start``, ``share``
    ========================  =====================================================

    ``start`` is required: a date or ISO datetime, UTC unless it says otherwise.
    ``-`` works as ``_`` in names. Errors raise :class:`ScenarioError` naming the
    scenario, the bad key or value and what is allowed.

    >>> parse_scenario("mix-shift:start=2015-03-01T12:00,older_years=6").spec
    'mix_shift:start=2015-03-01T12:00:00,older_years=6,extra_miles=15000'
    >>> parse_scenario("market_shock:start=2015-03-01,segment=make=Ford,segment=body=SUV").segment
    {'make': 'Ford', 'body': 'SUV'}
    """
    name, _, params = text.strip().partition(":")
    name = name.strip().lower().replace("-", "_")
    if name not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    cls = SCENARIOS[name]
    names = [f.name for f in fields(cls)]
    known = names + list(cls.aliases)
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in params.split(","))):
        key, sep, value = item.partition("=")
        key, value = cls.aliases.get(key.strip(), key.strip()), value.strip()
        if not sep or not value:
            raise ScenarioError(f"{name}: expected KEY=VALUE, got {item!r}")
        if key not in names:
            raise ScenarioError(f"{name}: unknown key {key!r}; known keys: {', '.join(known)}")
        if key == "segment":
            column, sep, wanted = value.partition("=")
            if not sep or not column.strip() or not wanted.strip():
                raise ScenarioError(f"{name}: segment must look like COLUMN=VALUE, got {value!r}")
            kwargs.setdefault("segment", {})[column.strip()] = wanted.strip()
        elif key in kwargs:
            raise ScenarioError(f"{name}: {key} given twice")
        else:
            kwargs[key] = _start(value) if key == "start" else _number(name, key, value)
    if "start" not in kwargs:
        raise ScenarioError(f"{name}: missing required key 'start' (e.g. start=2015-03-01)")
    return cls(**kwargs)
