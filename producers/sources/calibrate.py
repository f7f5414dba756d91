"""Aggregate statistics of real auctions that drive the synthetic generator.

:func:`build_calibration` reads a Kaggle "Used Car Auction Prices" CSV, cleans it
with the Kaggle loader's rules (:func:`clean_auctions`) and returns only aggregates:
category counts (every stored category was seen at least :data:`MIN_COUNT` times),
regression coefficients and quantiles.
No row, nor anything derived row by row, leaves this module, so the result can be
committed as ``calibration.json`` and the generator runs without the real data.

The generative story the figures describe (see :mod:`producers.sources.synthetic`)::

    age        = model mean age + model age sd * z_age
    log1p(odo) = m(age) + s(age) * z_odo
    condition  = a + b * age + c * log1p(odo) + e_cond            (clipped to 1..5)
    mu         = model level + trim offset + b_age * age + b_age2 * age**2
                 + b_odo * log1p(odo) + b_cond * condition
    log(mmr)   = mu + mmr_bias + u + e(t)
    log(price) = mu + mmr_beta * u + e_sale + m(t)

``u`` is what the market (and the MMR) knows about a car beyond the listed
features; ``e_sale`` is the luck of the auction. ``m(t)`` is how the price level of the
car's segments (the whole market, its body, its make) moved by day t, ``e(t)`` the part
of it the MMR has caught up with (both zero unless the ``market_moves`` scenario runs;
:mod:`producers.sources.market_moves`). ``z_age``, ``z_odo``, ``e_cond``, ``u`` and
``e_sale`` are drawn from stored quantiles.

Regenerate the committed file with::

    python -m producers.sources.calibrate ../shared/data/car_auctions_sample.csv.gz
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gavel.features import MISSING_TEXT, TARGET
from producers.sources.kaggle import clean_kaggle_frame
from producers.sources.market_moves import fit_market_moves

MIN_COUNT = 5
# Thresholds above MIN_COUNT keep the file small and the per-age figures steady.
MIN_MODEL_ROWS = 10
MIN_AGE_ROWS = 30
MAX_MODELS = 360
MAX_TRIMS_PER_MODEL = 4
MAX_SELLERS = 40
AGE_CAP = 25
MIN_PRICE = 500.0
# Percentiles, denser in the tails, where the auction's surprises live.
_TAIL = (0.001, 0.0025, 0.005, 0.0075)
QUANTILE_PROBS: tuple[float, ...] = (
    *_TAIL,
    *(round(k / 100, 2) for k in range(1, 100)),
    *(round(1 - p, 4) for p in reversed(_TAIL)),
)
TRIM_SHRINKAGE = 5.0
DEFAULT_PATH = Path(__file__).with_name("calibration.json")

# Spellings of one make that case-folding alone does not merge.
MAKE_ALIASES: dict[str, str] = {
    "mercedes": "mercedes-benz",
    "mercedes-b": "mercedes-benz",
    "landrover": "land rover",
    "vw": "volkswagen",
    "chev truck": "chevrolet",
    "ford truck": "ford",
    "ford tk": "ford",
    "dodge tk": "dodge",
    "mazda tk": "mazda",
    "gmc truck": "gmc",
    "hyundai tk": "hyundai",
}
WEEKDAYS: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Checks of the Kaggle loader that a calibration row may fail (see clean_auctions).
TOLERATED_CHECKS = frozenset(
    {"missing_make_model", "bad_condition", "bad_odometer", "text_too_long"}
)


def _text(series: pd.Series) -> pd.Series:
    """Stripped text with unknown markers as ``NA``."""
    text = series.astype("string").str.strip()
    return text.mask(text.str.lower().isin(MISSING_TEXT))


def _canonical(keys: pd.Series, shown: pd.Series) -> pd.Series:
    """For each key, its most frequent spelling in ``shown`` (case variants merge)."""
    pairs = pd.DataFrame({"key": keys, "shown": shown}).dropna()
    counts = pairs.value_counts().reset_index(name="n")
    # Ties prefer the spelling with capitals ("BMW" over "bmw").
    counts["lower"] = counts["shown"].str.islower()
    best = counts.sort_values(["key", "n", "lower"], ascending=[True, False, True])
    mapping = best.drop_duplicates("key").set_index("key")["shown"]
    return keys.map(mapping)


def clean_auctions(raw: pd.DataFrame) -> pd.DataFrame:
    """The auctions to calibrate on: typed columns, missing values as ``NA``.

    The values are the Kaggle loader's (see :func:`~producers.sources.kaggle.clean_kaggle_frame`),
    and so are the rows, but for the calibration's own policy: a row passes with a missing
    make or model (it still counts in the other tables), an unreadable condition or
    odometer (then missing) or an overlong text; it needs a two-letter state and a sale
    price of at least :data:`MIN_PRICE`, with no upper bound. Makes, models, trims and
    bodies get one spelling each; colours, interiors and sellers are lower case.
    """
    rows = clean_kaggle_frame(raw, min_price=MIN_PRICE, max_price=math.inf)
    keep = rows.passing(tolerated=TOLERATED_CHECKS) & (rows.values["state"] != "")
    values = rows.values[keep]
    out = pd.DataFrame(index=values.index)
    out["sold_at"] = values["listed_at"]
    out["year"] = values["year"].astype(int)
    out["age"] = out["sold_at"].dt.year - out["year"]
    out = out.join(_spellings(values))
    out["transmission"] = values["transmission"].mask(values["transmission"] == "")
    out["state"] = values["state"]
    for column in ("odometer", "condition", "mmr", TARGET):
        out[column] = values[column]
    return out.reset_index(drop=True)


def _spellings(values: pd.DataFrame) -> pd.DataFrame:
    """One spelling per make (aliases merged), model, trim and body; other text in lower case."""
    out = pd.DataFrame(index=values.index)
    make_key = _text(values["make"]).str.lower().replace(MAKE_ALIASES)
    out["make"] = _canonical(make_key, _text(values["make"]))
    model_key = make_key + "|" + _text(values["model"]).str.lower()
    out["model"] = _canonical(model_key, _text(values["model"]))
    trim_key = model_key + "|" + _text(values["trim"]).str.lower()
    out["trim"] = _canonical(trim_key, _text(values["trim"]))
    body = _text(values["body"])
    out["body"] = _canonical(body.str.lower(), body)
    for column in ("color", "interior", "seller"):
        out[column] = _text(values[column]).str.lower()
    return out


def _counts(series: pd.Series, *, top: int | None = None) -> dict[str, int]:
    """Category counts of at least :data:`MIN_COUNT`, most frequent first."""
    counts = series.dropna().value_counts()
    counts = counts[counts >= MIN_COUNT]
    if top is not None:
        counts = counts.head(top)
    return {str(key): int(value) for key, value in counts.items()}


def _quantiles(values: np.ndarray | pd.Series) -> list[float]:
    return [round(float(q), 4) for q in np.quantile(values, QUANTILE_PROBS)]


def _r2(y: np.ndarray, fitted: np.ndarray) -> float:
    return float(1 - np.sum((y - fitted) ** 2) / np.sum((y - y.mean()) ** 2))


def _price_design(age: pd.Series, odometer: pd.Series, condition: pd.Series) -> np.ndarray:
    age_c = age.clip(0, AGE_CAP).to_numpy(float)
    return np.column_stack(
        [age_c, age_c**2, np.log1p(odometer.to_numpy(float)), condition.to_numpy(float)]
    )


def _fit_price(clean: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """Log-price regression with a fixed effect per model (rare models share their make's).

    Returns the coefficients and the fitted rows' group keys and residual parts.
    """
    rows = clean.dropna(subset=["make", "model", "odometer", "condition", "mmr"]).copy()
    model_n = rows.groupby(["make", "model"])["year"].transform("size")
    make_n = rows.groupby("make")["year"].transform("size")
    rows["group"] = np.where(
        model_n >= MIN_COUNT,
        rows["make"] + "|" + rows["model"],
        np.where(make_n >= MIN_COUNT, rows["make"] + "|*", "*"),
    )
    y = np.log(rows["sellingprice"].to_numpy(float))
    x = _price_design(rows["age"], rows["odometer"], rows["condition"])
    groups = rows["group"].to_numpy()
    # Within transformation: slopes from group-demeaned data, then intercepts.
    y_dm = y - pd.Series(y).groupby(groups).transform("mean").to_numpy()
    x_dm = x - pd.DataFrame(x).groupby(groups).transform("mean").to_numpy()
    coef, *_ = np.linalg.lstsq(x_dm, y_dm, rcond=None)
    intercepts = pd.Series(y - x @ coef).groupby(groups).mean()
    rows["level"] = intercepts.reindex(groups).to_numpy()
    fitted = rows["level"].to_numpy() + x @ coef
    resid = y - fitted

    # Trim offsets: shrunken mean residuals, so a trim seen 5 times moves little.
    trim_stats = pd.DataFrame({"make": rows["make"], "model": rows["model"], "trim": rows["trim"]})
    trim_stats["resid"] = resid
    by_trim = trim_stats.dropna().groupby(["make", "model", "trim"])["resid"].agg(["sum", "size"])
    by_trim = by_trim[by_trim["size"] >= MIN_COUNT]
    offsets = by_trim["sum"] / (by_trim["size"] + TRIM_SHRINKAGE)
    index = pd.MultiIndex.from_frame(rows[["make", "model", "trim"]])
    rows["offset"] = offsets.reindex(index).fillna(0.0).to_numpy()
    fitted_trim = fitted + rows["offset"].to_numpy()

    r_sale = y - fitted_trim
    r_mmr = np.log(rows["mmr"].to_numpy(float)) - fitted_trim
    bias = float(r_mmr.mean())
    u = r_mmr - bias
    beta = float(np.dot(u, r_sale) / np.dot(u, u))
    e_sale = r_sale - beta * u
    e_sale -= e_sale.mean()
    mmr_ratio = rows["mmr"].to_numpy(float) / rows["sellingprice"].to_numpy(float)
    price = {
        "age": round(float(coef[0]), 6),
        "age2": round(float(coef[1]), 7),
        "log_odometer": round(float(coef[2]), 6),
        "condition": round(float(coef[3]), 6),
        "age_cap": AGE_CAP,
        "global_level": round(float(np.mean(y - x @ coef)), 4),
        "mmr_bias": round(bias, 4),
        "mmr_beta": round(beta, 4),
        "u_quantiles": _quantiles(u),
        "e_sale_quantiles": _quantiles(e_sale),
        "fit": {
            "rows": len(rows),
            "groups": int(intercepts.size),
            "r2_log": round(_r2(y, fitted), 4),
            "r2_log_with_trims": round(_r2(y, fitted_trim), 4),
            "resid_sd_log": round(float(np.std(resid)), 4),
            "resid_sd_log_with_trims": round(float(np.std(r_sale)), 4),
            "mmr_r2_log": round(_r2(y, np.log(rows["mmr"].to_numpy(float))), 4),
            "mmr_mape": round(float(np.mean(np.abs(mmr_ratio - 1))), 4),
        },
    }
    return price, rows[["make", "model", "trim", "level", "offset"]]


def _fit_odometer(clean: pd.DataFrame) -> dict[str, Any]:
    rows = clean.dropna(subset=["odometer"])
    age = rows["age"].clip(0, AGE_CAP)
    log_odo = np.log1p(rows["odometer"])
    stats = log_odo.groupby(age).agg(["mean", "std", "size"])
    stats = stats[stats["size"] >= MIN_AGE_ROWS].dropna()
    if stats.empty:
        raise ValueError(f"no age has {MIN_AGE_ROWS} cars with an odometer reading")
    # Ages 0..oldest well-observed age, gaps filled from the neighbours.
    ages = pd.RangeIndex(0, int(stats.index.max()) + 1)
    stats = stats.reindex(ages).interpolate().bfill()
    table = stats.reindex(age.clip(upper=ages[-1]))
    z = (log_odo.to_numpy() - table["mean"].to_numpy()) / table["std"].to_numpy()
    return {
        "by_age": {
            str(a): [round(float(m), 4), round(float(s), 4)]
            for a, m, s in zip(stats.index, stats["mean"], stats["std"], strict=True)
        },
        "z_quantiles": _quantiles(z[np.isfinite(z)]),
    }


def _fit_condition(clean: pd.DataFrame) -> dict[str, Any]:
    rows = clean.dropna(subset=["odometer", "condition"])
    x = np.column_stack(
        [
            np.ones(len(rows)),
            rows["age"].clip(0, AGE_CAP).to_numpy(float),
            np.log1p(rows["odometer"].to_numpy(float)),
        ]
    )
    y = rows["condition"].to_numpy(float)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    return {
        "intercept": round(float(coef[0]), 5),
        "age": round(float(coef[1]), 5),
        "log_odometer": round(float(coef[2]), 5),
        "r2": round(_r2(y, x @ coef), 4),
        "resid_quantiles": _quantiles(resid),
    }


def _ages(clean: pd.DataFrame) -> dict[str, Any]:
    rows = clean.dropna(subset=["make", "model"])
    age = rows["age"].clip(-1, None)
    grouped = age.groupby([rows["make"], rows["model"]])
    mean, sd = grouped.transform("mean"), grouped.transform("std")
    z = ((age - mean) / sd.clip(lower=0.5)).dropna()
    return {"min": -1, "max": int(np.quantile(age, 0.999)), "z_quantiles": _quantiles(z)}


def _makes(clean: pd.DataFrame, fit_rows: pd.DataFrame) -> dict[str, Any]:
    rows = clean.dropna(subset=["make", "model"])
    model_n = rows.groupby(["make", "model"]).size().sort_values(ascending=False, kind="stable")
    kept = set(model_n[model_n >= MIN_MODEL_ROWS].index[:MAX_MODELS])
    model_level = fit_rows.groupby(["make", "model"])["level"].first()
    make_level = fit_rows.groupby("make")["level"].mean()
    offsets = fit_rows.dropna(subset=["trim"]).groupby(["make", "model", "trim"])["offset"].first()
    makes: dict[str, Any] = {}
    for make, make_rows in rows.groupby("make", sort=False):
        if make not in make_level:
            continue  # none of its rows could be fitted (all lack odometer, condition or mmr)
        models: dict[str, Any] = {}
        for model, model_rows in make_rows.groupby("model", sort=False):
            if (make, model) not in kept:
                continue
            age = model_rows["age"].clip(-1, None)
            trims = _counts(model_rows["trim"], top=MAX_TRIMS_PER_MODEL)
            models[str(model)] = {
                "n": len(model_rows),
                "level": round(float(model_level.get((make, model), make_level[make])), 3),
                "age": [round(float(age.mean()), 1), round(float(max(age.std(), 0.5)), 1)],
                "bodies": _counts(model_rows["body"]),
                "trims": {
                    trim: [count, round(float(offsets.get((make, model, trim), 0.0)), 3) + 0.0]
                    for trim, count in trims.items()
                },
            }
        if not models:
            continue
        models = dict(sorted(models.items(), key=lambda item: -item[1]["n"]))
        makes[str(make)] = {
            "n": sum(m["n"] for m in models.values()),
            "level": round(float(make_level[make]), 3),
            "models": models,
        }
    return dict(sorted(makes.items(), key=lambda item: -item[1]["n"]))


def build_calibration(csv_path: str | Path) -> dict[str, Any]:
    """Aggregate statistics of the auctions in ``csv_path`` (see the module docstring)."""
    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    clean = clean_auctions(raw)
    if len(clean) < 2 * MIN_COUNT:
        raise ValueError(f"{csv_path}: only {len(clean)} usable rows, too few to calibrate")
    price, fit_rows = _fit_price(clean)
    weekday = clean["sold_at"].dt.tz_convert("America/Los_Angeles").dt.dayofweek
    with_mmr = clean.dropna(subset=["mmr"])
    ape = (with_mmr["mmr"] / with_mmr["sellingprice"] - 1).abs()
    return {
        "version": 1,
        "source": "Kaggle 'Used Car Auction Prices'; aggregates only (see calibrate.py)",
        "min_count": MIN_COUNT,
        "quantile_probs": list(QUANTILE_PROBS),
        "summary": {
            "rows_read": len(raw),
            "rows_clean": len(clean),
            "rows_price_fit": price["fit"]["rows"],
            "price_r2_log": price["fit"]["r2_log_with_trims"],
            "price_resid_sd_log": price["fit"]["resid_sd_log_with_trims"],
            "mmr_mape": round(float(ape.mean()), 4),
            "mmr_median_ape": round(float(ape.median()), 4),
            "median_price": float(clean["sellingprice"].median()),
        },
        "makes": _makes(clean, fit_rows),
        "age": _ages(clean),
        "odometer": _fit_odometer(clean),
        "condition": _fit_condition(clean),
        "price": price,
        "transmission": _counts(clean["transmission"]),
        "state": _counts(clean["state"]),
        "color": _counts(clean["color"]),
        "interior": _counts(clean["interior"]),
        "seller": _counts(clean["seller"], top=MAX_SELLERS),
        "weekday": {WEEKDAYS[int(k)]: v for k, v in _counts(weekday.astype(str)).items()},
        "market": fit_market_moves(clean),
    }


def dumps_calibration(calibration: Mapping[str, Any]) -> str:
    """Compact but diffable JSON: one line per make, per price figure, per table."""

    def dump(value: Any, depth: int) -> str:
        if isinstance(value, Mapping) and depth < 2 and value:
            pad = " " * (depth + 1)
            items = [f"{pad}{json.dumps(k)}: {dump(v, depth + 1)}" for k, v in value.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    return dump(calibration, 0) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="Kaggle car_prices CSV (optionally gzipped)")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help="output JSON path")
    args = parser.parse_args(argv)
    calibration = build_calibration(args.csv)
    args.out.write_text(dumps_calibration(calibration), encoding="utf-8")
    summary = calibration["summary"]
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} KB): {summary}")


if __name__ == "__main__":
    main()
