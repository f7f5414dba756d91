"""Synthetic used-car auctions, calibrated on real aggregates, seeded and vectorised.

:func:`generate_auctions` returns an auction frame (see :mod:`producers.sources.frame`)
whose joint distribution follows ``calibration.json`` (written by
:mod:`producers.sources.calibrate`): make → model → trim and body, age → odometer →
condition, a depreciation curve for the price and an MMR-like market estimate that is
known before the sale. Drift scenarios (:mod:`producers.sources.scenarios`) are applied
afterwards, each with its own random stream, so that they change only what they claim.

>>> frame = generate_auctions(1000, seed=7)
>>> len(frame), frame["listed_at"].is_monotonic_increasing
(1000, True)
>>> frame["auction_id"].iloc[0]
'syn-7-00000000'
>>> generate_auctions(1000, seed=7).equals(frame)
True
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from gavel.schemas import MAX_CONDITION, MAX_ODOMETER, MIN_CONDITION, MIN_MODEL_YEAR
from gavel.times import as_utc_timestamp
from producers.sources.frame import RECORD_COLUMNS, check_auction_frame
from producers.sources.market_moves import MarketMoves
from producers.sources.scenarios import Scenario, apply_scenarios

CALIBRATION_PATH = Path(__file__).with_name("calibration.json")

# Sales run on US weekdays between 9:00 and 18:00 Eastern standard time, busiest in the
# morning. These weights are a plausible shape, not fitted: the sample's clock times
# are unreliable.
AUCTION_HOURS_UTC: Mapping[int, float] = {
    14: 3.0,
    15: 6.0,
    16: 6.0,
    17: 5.0,
    18: 4.0,
    19: 3.0,
    20: 2.0,
    21: 1.0,
    22: 1.0,
}
# Auction prices are whole hundreds, MMR values multiples of $25.
PRICE_STEPS: Mapping[str, float] = {"sellingprice": 100.0, "mmr": 25.0}
MIN_PRICE = 100.0
MAX_PRICE = 1_000_000.0
_VIN_ALPHABET = np.frombuffer(b"0123456789abcdefghjklmnprstuvwxyz", dtype=np.uint8)
# Model-year codes (VIN position 10) cycle every 30 years from 1980.
_VIN_YEAR_CODES = np.frombuffer(b"abcdefghjklmnprstvwxy123456789", dtype=np.uint8)


@dataclass(frozen=True)
class _Categorical:
    """A categorical distribution sampled by inverse CDF."""

    values: np.ndarray
    cum: np.ndarray

    @classmethod
    def from_counts(cls, counts: Mapping[Any, float]) -> _Categorical:
        """From category counts; no categories means the value is always unknown (None)."""
        if not counts:
            counts = {None: 1.0}
        weights = np.asarray(list(counts.values()), dtype=float)
        values = np.empty(len(counts), dtype=object)
        values[:] = list(counts)
        return cls(values, np.cumsum(weights) / weights.sum())

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Indices into ``values``."""
        index = np.searchsorted(self.cum, rng.random(n), side="right")
        return np.minimum(index, len(self.values) - 1)


@dataclass(frozen=True)
class _NestedCategorical:
    """One categorical distribution per group, flattened for vectorised sampling.

    Group ``g``'s cumulative probabilities are stored as ``g + cum``, so a single
    ``searchsorted`` of ``g + u`` samples every row from its own group.
    """

    values: np.ndarray
    extra: np.ndarray
    keys: np.ndarray
    ends: np.ndarray

    @classmethod
    def from_groups(cls, groups: Sequence[Mapping[Any, tuple[float, float]]]) -> _NestedCategorical:
        values: list[Any] = []
        extra: list[float] = []
        keys: list[np.ndarray] = []
        ends: list[int] = []
        for g, group in enumerate(groups):
            weights = np.asarray([w for w, _ in group.values()], dtype=float)
            cum = np.cumsum(weights) / weights.sum()
            cum[-1] = 1.0
            keys.append(g + cum)
            values.extend(group)
            extra.extend(x for _, x in group.values())
            ends.append(len(values) - 1)
        flat = np.empty(len(values), dtype=object)
        flat[:] = values
        return cls(flat, np.asarray(extra), np.concatenate(keys), np.asarray(ends))

    def sample(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        """Flat indices, one per entry of ``groups``."""
        index = np.searchsorted(self.keys, groups + rng.random(len(groups)), side="right")
        flat: np.ndarray = np.minimum(index, self.ends[groups])
        return flat


@dataclass(frozen=True)
class PriceModel:
    """Coefficients of the log-price function (see :mod:`producers.sources.calibrate`)."""

    age: float
    age2: float
    log_odometer: float
    condition: float
    age_cap: int
    global_level: float
    mmr_bias: float
    mmr_beta: float


@dataclass(frozen=True)
class Calibration:
    """The generator's parameters, read from ``calibration.json``.

    Arrays indexed by model hold one entry per calibrated (make, model).

    >>> calibration = load_calibration()
    >>> bool(calibration.n_models > 100), calibration.price.age < 0
    (True, True)
    """

    summary: Mapping[str, Any]
    probs: np.ndarray
    make: np.ndarray
    model: np.ndarray
    models: _Categorical
    level: np.ndarray
    age_mean: np.ndarray
    age_sd: np.ndarray
    trims: _NestedCategorical
    bodies: _NestedCategorical
    age_z: np.ndarray
    age_min: int
    age_max: int
    odometer_mean: np.ndarray
    odometer_sd: np.ndarray
    odometer_z: np.ndarray
    condition_coef: tuple[float, float, float]
    condition_resid: np.ndarray
    price: PriceModel
    price_u: np.ndarray
    price_e: np.ndarray
    transmission: _Categorical
    state: _Categorical
    color: _Categorical
    interior: _Categorical
    seller: _Categorical
    weekday_weights: np.ndarray
    make_levels: Mapping[str, float]
    model_levels: Mapping[tuple[str, str], float]
    trim_offsets: Mapping[tuple[str, str, str], float]
    market: MarketMoves | None = None
    """How segment prices move and the MMR follows (the ``market_moves`` scenario)."""

    @property
    def n_models(self) -> int:
        return len(self.model)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Parse the structure written by :func:`producers.sources.calibrate.build_calibration`."""
        rows = _model_rows(data["makes"])
        bodies, trims = _body_groups(rows), _trim_groups(rows)
        odometer_mean, odometer_sd = _odometer_curve(data["odometer"]["by_age"])
        make_levels, model_levels, trim_offsets = _level_lookups(data["makes"], rows)
        price, condition, weekday = data["price"], data["condition"], data["weekday"]
        return cls(
            summary=dict(data.get("summary", {})),
            probs=np.asarray(data["quantile_probs"], dtype=float),
            make=np.asarray([make for make, _, _ in rows], dtype=object),
            model=np.asarray([name for _, name, _ in rows], dtype=object),
            models=_Categorical.from_counts({i: m["n"] for i, (_, _, m) in enumerate(rows)}),
            level=np.asarray([m["level"] for _, _, m in rows], dtype=float),
            age_mean=np.asarray([m["age"][0] for _, _, m in rows], dtype=float),
            age_sd=np.asarray([m["age"][1] for _, _, m in rows], dtype=float),
            trims=_NestedCategorical.from_groups(trims),
            bodies=_NestedCategorical.from_groups(bodies),
            age_z=np.asarray(data["age"]["z_quantiles"], dtype=float),
            age_min=int(data["age"]["min"]),
            age_max=int(data["age"]["max"]),
            odometer_mean=odometer_mean,
            odometer_sd=odometer_sd,
            odometer_z=np.asarray(data["odometer"]["z_quantiles"], dtype=float),
            condition_coef=(
                float(condition["intercept"]),
                float(condition["age"]),
                float(condition["log_odometer"]),
            ),
            condition_resid=np.asarray(condition["resid_quantiles"], dtype=float),
            price=PriceModel(**{f.name: price[f.name] for f in fields(PriceModel)}),
            price_u=np.asarray(price["u_quantiles"], dtype=float),
            price_e=np.asarray(price["e_sale_quantiles"], dtype=float),
            transmission=_Categorical.from_counts(data["transmission"]),
            state=_Categorical.from_counts(data["state"]),
            color=_Categorical.from_counts(data["color"]),
            interior=_Categorical.from_counts(data["interior"]),
            seller=_Categorical.from_counts(data["seller"]),
            weekday_weights=np.asarray([float(weekday.get(d, 0.0)) for d in _WEEKDAYS]),
            make_levels=make_levels,
            model_levels=model_levels,
            trim_offsets=trim_offsets,
            market=MarketMoves.from_dict(data["market"]) if "market" in data else None,
        )

    @classmethod
    def from_json(cls, path: str | Path) -> Calibration:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def quantile_draw(self, quantiles: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draws from the distribution with the given quantiles at ``self.probs``."""
        draws: np.ndarray = np.interp(rng.random(n), self.probs, quantiles)
        return draws

    def depreciation(
        self, age: npt.ArrayLike, odometer: npt.ArrayLike, condition: npt.ArrayLike
    ) -> np.ndarray:
        """The feature part of log price: what age, miles and condition add to the level.

        >>> cal = load_calibration()
        >>> young, old = cal.depreciation([1, 10], [15_000, 150_000], [4.0, 2.0])
        >>> bool(young > old)
        True
        """
        p = self.price
        a = np.clip(np.asarray(age, dtype=float), 0, p.age_cap)
        part: np.ndarray = (
            p.age * a
            + p.age2 * a**2
            + p.log_odometer * np.log1p(np.asarray(odometer, dtype=float))
            + p.condition * np.asarray(condition, dtype=float)
        )
        return part

    def odometer_curve(self, age: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of ``log1p(odometer)`` at each age."""
        index = np.clip(np.asarray(age), 0, len(self.odometer_mean) - 1).astype(int)
        return self.odometer_mean[index], self.odometer_sd[index]

    def expected_condition(self, age: npt.ArrayLike, odometer: npt.ArrayLike) -> np.ndarray:
        """Mean condition (before clipping) given age and odometer."""
        a, b, c = self.condition_coef
        clipped = np.clip(np.asarray(age, dtype=float), 0, self.price.age_cap)
        mean: np.ndarray = a + b * clipped + c * np.log1p(np.asarray(odometer, dtype=float))
        return mean

    def levels(self, make: pd.Series, model: pd.Series, trim: pd.Series) -> np.ndarray:
        """Log-price level (model level + trim offset) of each row, case-insensitively.

        Unknown models fall back to their make's level, unknown makes to the global one.
        """
        keys = pd.DataFrame(
            {
                "make": make.astype("string").str.strip().str.lower(),
                "model": model.astype("string").str.strip().str.lower(),
                "trim": trim.astype("string").str.strip().str.lower(),
            }
        ).fillna("")
        codes, uniques = pd.MultiIndex.from_frame(keys).factorize()
        table = np.empty(len(uniques))
        for i, (mk, md, tr) in enumerate(uniques):
            base = self.model_levels.get(
                (mk, md), self.make_levels.get(mk, self.price.global_level)
            )
            table[i] = base + self.trim_offsets.get((mk, md, tr), 0.0)
        levels: np.ndarray = table[codes]
        return levels

    def round_price(self, values: npt.ArrayLike, column: str = "sellingprice") -> np.ndarray:
        """Round ``sellingprice`` or ``mmr`` values as auction figures are, within bounds.

        >>> load_calibration().round_price(np.array([12_345.0, 10.0])).tolist()
        [12300.0, 100.0]
        """
        step = PRICE_STEPS[column]
        rounded = np.rint(np.asarray(values, dtype=float) / step) * step
        return np.clip(rounded, MIN_PRICE, MAX_PRICE)


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # calibration's weekday keys

_ModelRow = tuple[str, str, Mapping[str, Any]]
"""A calibrated model: its make, its name and its figures."""


def _model_rows(makes: Mapping[str, Any]) -> list[_ModelRow]:
    """Every calibrated model, make by make, in the file's order."""
    rows = [
        (make, name, model)
        for make, entry in makes.items()
        for name, model in entry["models"].items()
    ]
    if not rows:
        raise ValueError("calibration has no models")
    return rows


def _body_groups(rows: Sequence[_ModelRow]) -> list[dict[Any, tuple[float, float]]]:
    """Each model's body counts; a model without any takes its make's, then everyone's."""
    make_bodies: dict[str, dict[str, float]] = {}
    for make, _, model in rows:
        for body, count in model["bodies"].items():
            make_bodies.setdefault(make, {}).setdefault(body, 0.0)
            make_bodies[make][body] += count
    all_bodies: dict[str, float] = {}
    for bodies in make_bodies.values():
        for body, count in bodies.items():
            all_bodies[body] = all_bodies.get(body, 0.0) + count
    return [
        {b: (c, 0.0) for b, c in (model["bodies"] or make_bodies.get(make) or all_bodies).items()}
        for make, _, model in rows
    ]


def _trim_groups(rows: Sequence[_ModelRow]) -> list[dict[Any, tuple[float, float]]]:
    """Each model's trims as (count, price offset); a model without any has one, unknown."""
    return [
        {t: (c, off) for t, (c, off) in model["trims"].items()} or {None: (1.0, 0.0)}
        for _, _, model in rows
    ]


def _odometer_curve(by_age: Mapping[str, Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of ``log1p(odometer)`` for ages 0..N, from the ``by_age`` table."""
    odometer = sorted((int(age), ms) for age, ms in by_age.items())
    if [age for age, _ in odometer] != list(range(len(odometer))):
        raise ValueError("calibration odometer.by_age must cover ages 0..N without gaps")
    mean = np.asarray([ms[0] for _, ms in odometer], dtype=float)
    sd = np.asarray([ms[1] for _, ms in odometer], dtype=float)
    return mean, sd


def _level_lookups(
    makes: Mapping[str, Any], rows: Sequence[_ModelRow]
) -> tuple[dict[str, float], dict[tuple[str, str], float], dict[tuple[str, str, str], float]]:
    """Log-price levels by make and by (make, model), and trim offsets by (make, model,
    trim), all keyed in lower case."""
    make_levels = {make.lower(): float(entry["level"]) for make, entry in makes.items()}
    model_levels = {(make.lower(), name.lower()): float(m["level"]) for make, name, m in rows}
    trim_offsets = {
        (make.lower(), name.lower(), trim.lower()): float(offset)
        for make, name, m in rows
        for trim, (_, offset) in m["trims"].items()
    }
    return make_levels, model_levels, trim_offsets


@functools.lru_cache(maxsize=8)
def _load_calibration(path: Path) -> Calibration:
    return Calibration.from_json(path)


def load_calibration(path: str | Path | None = None) -> Calibration:
    """The calibration in ``path`` (default: the committed ``calibration.json``), cached."""
    return _load_calibration(Path(path or CALIBRATION_PATH).resolve())


def _as_day(value: date | datetime | str, name: str) -> np.datetime64:
    stamp = as_utc_timestamp(value).tz_localize(None)
    if stamp != stamp.normalize():
        raise ValueError(f"{name}={value!r} must be a date (midnight UTC), not a time of day")
    return np.datetime64(stamp.date(), "D")


def _listing_times(
    rng: np.random.Generator, n: int, start: np.datetime64, end: np.datetime64, weekday: np.ndarray
) -> np.ndarray:
    days = np.arange(start, end, dtype="datetime64[D]")
    # 1970-01-01 was a Thursday; Monday is 0 as in calibration's weekday order.
    weights = weekday[(days.astype(np.int64) + 3) % 7]
    if weights.sum() <= 0:
        weights = np.ones(len(days))
    day = days[_Categorical(days, np.cumsum(weights) / weights.sum()).sample(rng, n)]
    hours = _Categorical.from_counts(AUCTION_HOURS_UTC)
    hour = hours.values.astype(np.int64)[hours.sample(rng, n)]
    seconds = hour * 3600 + rng.integers(0, 3600, n)
    return np.sort(day.astype("datetime64[s]") + seconds.astype("timedelta64[s]"))


def _rows_to_text(chars: np.ndarray) -> np.ndarray:
    """Each row of an ASCII byte matrix as one ``str`` (object array)."""
    chars = np.ascontiguousarray(chars, dtype=np.uint8)
    return chars.view(f"S{chars.shape[1]}").ravel().astype(str).astype(object)


def _fake_vins(rng: np.random.Generator, year: np.ndarray) -> np.ndarray:
    chars = _VIN_ALPHABET[rng.integers(0, len(_VIN_ALPHABET), (len(year), 17), dtype=np.uint8)]
    chars[:, 9] = _VIN_YEAR_CODES[(year - 1980) % 30]
    return _rows_to_text(chars)


def _auction_ids(seed: int, n: int) -> np.ndarray:
    """``syn-{seed}-{i:08d}`` for i in 0..n-1, written digit by digit into a byte matrix."""
    width = max(8, len(str(n - 1)))
    prefix = np.frombuffer(f"syn-{seed}-".encode(), dtype=np.uint8)
    chars = np.empty((n, len(prefix) + width), dtype=np.uint8)
    chars[:, : len(prefix)] = prefix
    rest = np.arange(n, dtype=np.int64)
    for column in range(chars.shape[1] - 1, len(prefix) - 1, -1):
        rest, digit = np.divmod(rest, 10)
        chars[:, column] = digit + ord("0")
    return _rows_to_text(chars)


def _days(
    n: int, seed: int, start: date | datetime | str, end: date | datetime | str
) -> tuple[np.datetime64, np.datetime64]:
    """The first and the last (excluded) listing day, once the arguments are checked."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    first, last = _as_day(start, "start"), _as_day(end, "end")
    if last <= first:
        raise ValueError(f"end ({end}) must be after start ({start})")
    return first, last


@dataclass(frozen=True)
class _Cars:
    """The cars on sale, one entry per row: indices into the calibration's models, trims
    and bodies, then model year, age at listing, odometer and condition."""

    model: np.ndarray
    trim: np.ndarray
    body: np.ndarray
    year: np.ndarray
    age: np.ndarray
    odometer: np.ndarray
    condition: np.ndarray


def _draw_cars(cal: Calibration, rng: np.random.Generator, listed_year: np.ndarray) -> _Cars:
    """Model, trim and body; then age (hence year), odometer given age, condition given both."""
    n = len(listed_year)
    model = cal.models.sample(rng, n)
    trim = cal.trims.sample(rng, model)
    body = cal.bodies.sample(rng, model)
    raw_age = cal.age_mean[model] + cal.age_sd[model] * cal.quantile_draw(cal.age_z, rng, n)
    age = np.clip(np.rint(raw_age), cal.age_min, cal.age_max).astype(np.int64)
    year = np.maximum(listed_year - age, MIN_MODEL_YEAR)
    age = listed_year - year

    odo_mean, odo_sd = cal.odometer_curve(age)
    log_odo = odo_mean + odo_sd * cal.quantile_draw(cal.odometer_z, rng, n)
    odometer = np.clip(np.rint(np.expm1(log_odo)), 0, MAX_ODOMETER - 1)
    condition = cal.expected_condition(age, odometer) + cal.quantile_draw(
        cal.condition_resid, rng, n
    )
    condition = np.clip(np.round(condition, 1), MIN_CONDITION, MAX_CONDITION)
    return _Cars(model, trim, body, year, age, odometer, condition)


def _draw_prices(
    cal: Calibration, rng: np.random.Generator, cars: _Cars
) -> tuple[np.ndarray, np.ndarray]:
    """MMR and sale price: the car's log-price level plus what the market knows (``u``,
    shared by both) and, for the sale, the luck of the auction."""
    n = len(cars.model)
    mu = (
        cal.level[cars.model]
        + cal.trims.extra[cars.trim]
        + cal.depreciation(cars.age, cars.odometer, cars.condition)
    )
    u = cal.quantile_draw(cal.price_u, rng, n)
    e_sale = cal.quantile_draw(cal.price_e, rng, n)
    mmr = cal.round_price(np.exp(mu + cal.price.mmr_bias + u), "mmr")
    price = cal.round_price(np.exp(mu + cal.price.mmr_beta * u + e_sale), "sellingprice")
    return mmr, price


def _draw_details(cal: Calibration, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Transmission, state, colour, interior and seller, each drawn on its own."""
    tables = {
        "transmission": cal.transmission,
        "state": cal.state,
        "color": cal.color,
        "interior": cal.interior,
        "seller": cal.seller,
    }
    return {column: table.values[table.sample(rng, n)] for column, table in tables.items()}


def generate_auctions(
    n: int,
    *,
    start: date | datetime | str = "2015-01-01",
    end: date | datetime | str = "2015-06-30",
    seed: int = 0,
    scenarios: Sequence[Scenario] = (),
    calibration: Calibration | None = None,
) -> pd.DataFrame:
    """``n`` synthetic auctions listed in ``[start, end)``, as an auction frame.

    The same arguments always give the same frame. Scenarios are applied in order,
    each with its own random stream, so rows listed before a scenario's start are
    exactly those of the frame without it.

    >>> from producers.sources.scenarios import MarketShock
    >>> base = generate_auctions(500, seed=1)
    >>> shocked = generate_auctions(500, seed=1, scenarios=[MarketShock("2015-04-01")])
    >>> early = base["listed_at"] < "2015-04-01"
    >>> shocked[early].equals(base[early])
    True
    """
    first, last = _days(n, seed, start, end)
    cal = calibration or load_calibration()
    rng = np.random.default_rng(seed)
    # The draws come in a fixed order (times, cars, prices, details, VINs): changing it
    # changes every generated frame.
    listed_at = _listing_times(rng, n, first, last, cal.weekday_weights)
    cars = _draw_cars(cal, rng, listed_at.astype("datetime64[Y]").astype(np.int64) + 1970)
    mmr, price = _draw_prices(cal, rng, cars)
    details = _draw_details(cal, rng, n)
    frame = pd.DataFrame(
        {
            "auction_id": _auction_ids(seed, n),
            "listed_at": pd.to_datetime(listed_at.astype("datetime64[ns]"), utc=True),
            "year": cars.year,
            "make": cal.make[cars.model],
            "model": cal.model[cars.model],
            "trim": cal.trims.values[cars.trim],
            "body": cal.bodies.values[cars.body],
            "condition": cars.condition,
            "odometer": cars.odometer,
            "mmr": mmr,
            "vin": _fake_vins(rng, cars.year),
            "sellingprice": price,
            **details,
        },
        columns=list(RECORD_COLUMNS),
        copy=False,  # the arrays are fresh; consolidating them would copy every string column
    )
    frame = apply_scenarios(frame, scenarios, seed=seed, calibration=cal)
    return check_auction_frame(frame)
