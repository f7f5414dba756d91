"""Issue 12, market memory and sane prices: every target measured in one run.

- market shock, no retraining: the demo's plan (200k synthetic auctions 2015-01..06, SUV
  prices -25% from 2015-05-01 while the MMR stays, sales 2 h after listing, first model
  trained until 2015-03-01 and frozen); MAPE of the stream 04-23..05-21 before and during
  the shock, with the market features each listing had at its listing time; today's recipe
  next to the market recipe, on a market that drifts as calibrated (``market_moves``) and
  on the stationary one of today's demo;
- missing mmr (and condition): the test period with them removed; MAPE ratio and the share
  of prices off by more than 2x, next to the MMR's own share on the same rows;
- intervals: coverage of the nominal 80% interval on held-out sales, with and without mmr;
- real data (the shared Kaggle sample, test period from 2015-01-01): MAPE and median APE
  of today's recipe, of the market recipe without and with market features, and of MMR;
- hot path: the cost per listing of the market features at read time.

Usage: .venv/bin/python bench/bench_market.py [--sample PATH] [--rows 200000]
Writes bench/results/market-<timestamp>.json (aggregates only, never a row) and exits 1
when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gavel.features import TARGET  # noqa: E402  # after the path is set
from gavel.market import (  # noqa: E402
    SEGMENT_KINDS,
    WINDOW_FIELDS,
    features_from_windows,
    read_market_features,
    segment_key_columns,
)
from gavel.price_errors import price_metrics  # noqa: E402
from trainer.intervals import interval_groups  # noqa: E402
from trainer.market import (  # noqa: E402
    MarketModel,
    price_with_interval,
    train_market_model,
    with_market_features,
)
from trainer.pipeline import fit_xgboost  # noqa: E402
from trainer.split import TimeSplit, time_split  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SAMPLE = ROOT.parent / "shared" / "data" / "car_auctions_sample.csv.gz"
PARAMS = {"n_jobs": 2}
SHOCK = "market_shock:start=2015-05-01,segment=body=SUV,change=-0.25"
DRIFT = "market_moves:start=2015-01-01"  # calibrated segment drifts, the MMR following late
STREAM = ("2015-04-23", "2015-05-01", "2015-05-21")  # from, onset, to
BOUNDS = {
    "shock_during_to_before": 1.15,
    "no_mmr_mape_to_with_mmr": 1.5,
    "coverage": (0.78, 0.82),
    "real_mape_to_mmr": 0.8,
}

Predict = Callable[[pd.DataFrame], np.ndarray]


def listings(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[TARGET])


def off_by_2x(actual: pd.Series, predicted: np.ndarray | pd.Series) -> float:
    """Share of prices above twice or below half the sale price."""
    ratio = np.asarray(predicted, float) / actual.to_numpy(float)
    return float(((ratio > 2) | (ratio < 0.5)).mean())


def metrics(actual: pd.Series, predicted: np.ndarray | pd.Series) -> dict[str, float]:
    m = price_metrics(actual, predicted)
    return {
        "mape": m["mape"],
        "median_ape": m["median_ape"],
        "off_by_2x": off_by_2x(actual, predicted),
        "rows": m["rows"],
    }


def today(split: TimeSplit) -> Predict:
    """Today's recipe: XGBoost on the listing alone, no augmentation."""
    fitted = fit_xgboost(
        listings(split.train),
        split.train[TARGET].astype(float),
        listings(split.validation),
        split.validation[TARGET].astype(float),
        PARAMS,
    )
    return lambda frame: fitted.pipeline.predict(listings(frame))


def market(split: TimeSplit) -> tuple[MarketModel, Predict]:
    model = train_market_model(split, PARAMS)
    return model, lambda frame: model.fitted.pipeline.predict(listings(frame))


def degraded_metrics(test: pd.DataFrame, predict: Predict) -> dict[str, Any]:
    """Metrics with and without mmr and condition, and how the no-mmr case compares."""
    y = test[TARGET]
    cases = {
        "with_mmr": test,
        "without_mmr": test.assign(mmr=np.nan),
        "without_condition": test.assign(condition=np.nan),
        "without_mmr_and_condition": test.assign(mmr=np.nan, condition=np.nan),
    }
    out: dict[str, Any] = {name: metrics(y, predict(frame)) for name, frame in cases.items()}
    out["without_mmr_mape_to_with_mmr"] = out["without_mmr"]["mape"] / out["with_mmr"]["mape"]
    return out


def coverage(model: MarketModel, test: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {"level": model.intervals.level, "quantiles": model.intervals.to_json()}
    cases = {
        "with_mmr": test,
        "without_mmr": test.assign(mmr=np.nan),
        "without_condition": test.assign(condition=np.nan),
    }
    for name, frame in cases.items():
        priced = price_with_interval(model.fitted.pipeline, listings(frame))
        y = frame[TARGET]
        inside = (y >= priced["low"]) & (y <= priced["high"])
        out[name] = {
            "coverage": float(inside.mean()),
            "median_width_ratio": float((priced["high"] / priced["low"]).median()),
            "groups": sorted(set(interval_groups(frame).tolist())),
        }
    return out


def shock_case(rows: int, market_moves: bool) -> dict[str, Any]:
    """The demo's shock: today's recipe and the market recipe, both frozen."""
    from producers.sources.scenarios import parse_scenario
    from producers.sources.synthetic import generate_auctions

    scenarios = [DRIFT, SHOCK] if market_moves else [SHOCK]
    auctions = generate_auctions(
        rows, start="2015-01-01", end="2015-07-01", seed=17,
        scenarios=[parse_scenario(text) for text in scenarios],
    )  # fmt: skip
    began = time.perf_counter()
    auctions = with_market_features(auctions, sale_delay=pd.Timedelta(hours=2))
    join_s = time.perf_counter() - began
    split = time_split(auctions, "2015-03-01", test_days=30)
    stream_from, onset, stream_to = (pd.Timestamp(t, tz="UTC") for t in STREAM)
    times = auctions["listed_at"]
    stream = auctions[(times >= stream_from) & (times < stream_to)]
    before = (stream["listed_at"] < onset).to_numpy()
    y = stream[TARGET]
    out: dict[str, Any] = {
        "rows": rows,
        "scenarios": scenarios,
        "as_of_join_rows_per_s": len(auctions) / join_s,
        "stream_rows": {"before": int(before.sum()), "during": int((~before).sum())},
    }
    model, market_predict = market(split)
    for name, predict in (("today", today(split)), ("market", market_predict)):
        prices = predict(stream)
        mape_before = price_metrics(y[before], prices[before])["mape"]
        mape_during = price_metrics(y[~before], prices[~before])["mape"]
        out[name] = {
            "mape_before": mape_before,
            "mape_during": mape_during,
            "during_to_before": mape_during / mape_before,
            "test_month": degraded_metrics(split.test, predict),
        }
    out["market"]["best_iteration"] = model.fitted.params["best_iteration"]
    out["market"]["coverage"] = coverage(model, split.test)
    out["test_month_mmr"] = metrics(split.test[TARGET], split.test["mmr"])
    return out


def real_case(path: Path) -> dict[str, Any]:
    """The shared sample, test period from 2015-01-01 (30 days)."""
    from producers.sources.kaggle import load_kaggle_csv

    frame = with_market_features(load_kaggle_csv(path).frame)
    split = time_split(frame, "2015-01-01", test_days=30)
    test = split.test
    y = test[TARGET]
    bare = time_split(
        frame.drop(columns=[c for c in frame.columns if c.startswith("mkt_")]),
        "2015-01-01",
        test_days=30,
    )
    model, market_predict = market(split)
    no_market, no_market_predict = market(bare)
    mmr = metrics(y, test["mmr"])
    out: dict[str, Any] = {
        "split": split.describe(),
        "mmr": mmr,
        "today": degraded_metrics(test, today(split)),
        "recipe_without_market_features": degraded_metrics(bare.test, no_market_predict),
        "market": degraded_metrics(test, market_predict),
    }
    out["market"]["best_iteration"] = model.fitted.params["best_iteration"]
    out["market"]["coverage"] = coverage(model, test)
    out["recipe_without_market_features"]["coverage"] = coverage(no_market, bare.test)
    for name in ("today", "recipe_without_market_features", "market"):
        with_mmr = out[name]["with_mmr"]
        with_mmr["mape_to_mmr"] = with_mmr["mape"] / mmr["mape"]
        with_mmr["median_ape_to_mmr"] = with_mmr["median_ape"] / mmr["median_ape"]
    return out


def hot_path(batch: int = 500, repeat: int = 20) -> dict[str, float]:
    """Per-listing cost of the market features at read time, for a batch: segment keys,
    the distinct (segment, day) pairs, the as-of vectors put in place and the features
    computed (:func:`gavel.market.read_market_features`), with a fetch that costs nothing:
    the Redis round trip is not included."""
    from producers.sources.synthetic import generate_auctions

    frame = listings(generate_auctions(batch, seed=3))
    vector = np.arange(len(WINDOW_FIELDS), dtype=np.int64)
    pairs: list[int] = []

    def fetch(wanted: Sequence[tuple[str, int]]) -> list[np.ndarray]:
        pairs.append(len(wanted))
        return [vector] * len(wanted)

    windows = {kind: np.tile(vector, (batch, 1)) for kind in SEGMENT_KINDS}
    day = np.full(batch, 16_500)
    timings: dict[str, float] = {"keys": np.inf, "features": np.inf, "read": np.inf}
    for _ in range(repeat):
        for name, step in (
            ("keys", lambda: segment_key_columns(frame)),
            ("features", lambda: features_from_windows(windows, day)),
            ("read", lambda: read_market_features(frame, fetch)),
        ):
            began = time.perf_counter()
            step()
            timings[name] = min(timings[name], time.perf_counter() - began)
    return {
        "batch": batch,
        "distinct_segment_days_per_batch": pairs[0],
        "segment_keys_us_per_listing": timings["keys"] / batch * 1e6,
        "features_us_per_listing": timings["features"] / batch * 1e6,
        "whole_read_us_per_listing": timings["read"] / batch * 1e6,
    }


def _target(value: float, bound: Any, met: bool) -> dict[str, Any]:
    return {"value": value, "bound": bound, "met": bool(met)}


def targets(synthetic: dict[str, Any], real: dict[str, Any] | None) -> dict[str, Any]:
    """Each target: its value, its bound, whether it is met. The missing-mmr and real-data
    targets are the real sample's when it is present (the issue's), the synthetic test
    month's otherwise; the synthetic shock and coverage always count."""
    ratio_bound = BOUNDS["shock_during_to_before"]
    shock = synthetic["market"]["during_to_before"]
    out = {"shock_during_to_before": _target(shock, ratio_bound, shock <= ratio_bound)}
    low, high = BOUNDS["coverage"]
    synthetic_coverage = synthetic["market"]["coverage"]
    for case in ("with_mmr", "without_mmr"):
        value = synthetic_coverage[case]["coverage"]
        out[f"synthetic_coverage_{case}"] = _target(value, [low, high], low <= value <= high)
    if real is None:
        source, result = "synthetic", synthetic["market"]["test_month"]
        mmr_share = synthetic["test_month_mmr"]["off_by_2x"]
    else:
        source, result, mmr_share = "real", real["market"], real["mmr"]["off_by_2x"]
        for case in ("with_mmr", "without_mmr"):
            value = real["market"]["coverage"][case]["coverage"]
            out[f"real_coverage_{case}"] = _target(value, [low, high], low <= value <= high)
    ratio = result["without_mmr_mape_to_with_mmr"]
    bound = BOUNDS["no_mmr_mape_to_with_mmr"]
    out[f"{source}_no_mmr_mape_to_with_mmr"] = _target(ratio, bound, ratio <= bound)
    share = result["without_mmr"]["off_by_2x"]
    out[f"{source}_no_mmr_off_by_2x"] = _target(share, mmr_share, share <= mmr_share)
    if real is not None:
        with_mmr = real["market"]["with_mmr"]
        bound = BOUNDS["real_mape_to_mmr"]
        out["real_mape_to_mmr"] = _target(
            with_mmr["mape_to_mmr"], bound, with_mmr["mape_to_mmr"] <= bound
        )
        mmr_median = real["mmr"]["median_ape"]
        out["real_median_ape_below_mmr"] = _target(
            with_mmr["median_ape"], mmr_median, with_mmr["median_ape"] < mmr_median
        )
    return out


def git_commit() -> str:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True
    )
    return result.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="the Kaggle sample CSV")
    parser.add_argument("--rows", type=int, default=200_000, help="synthetic auctions")
    args = parser.parse_args()
    began = time.perf_counter()
    moving = shock_case(args.rows, market_moves=True)
    stationary = shock_case(args.rows, market_moves=False)
    real = real_case(args.sample) if args.sample.exists() else None
    result = {
        "at": datetime.now(UTC).isoformat(),
        "commit": git_commit(),
        "machine": {"cpus": 2, "python": platform.python_version()},
        "xgb_params": PARAMS,
        "synthetic_moving_market": moving,
        "synthetic_stationary_market": stationary,
        "real_sample": real if real is not None else "absent",
        "hot_path": hot_path(),
        "targets": targets(moving, real),
        "seconds": time.perf_counter() - began,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"market-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    missed = [name for name, target in result["targets"].items() if not target["met"]]
    for name, target in result["targets"].items():
        verdict = "ok  " if target["met"] else "MISS"
        print(f"{verdict} {name}: {target['value']:.4f} (bound {target['bound']})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
