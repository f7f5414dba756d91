"""Calibration: aggregates only, reproducible from the CSV, and usable by the generator."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from producers.sources.calibrate import (
    DEFAULT_PATH,
    MIN_COUNT,
    build_calibration,
    clean_auctions,
    dumps_calibration,
    main,
)
from producers.sources.frame import check_auction_frame
from producers.sources.synthetic import Calibration, generate_auctions

REAL_CSV = Path(__file__).resolve().parents[4] / "shared" / "data" / "car_auctions_sample.csv.gz"
HEADER = [
    *("year", "make", "model", "trim", "body", "transmission", "vin", "state", "condition"),
    *("odometer", "color", "interior", "seller", "mmr", "sellingprice", "saledate"),
]
# Made-up cars: (make spellings, model, trims, body, log-price level).
CARS = [
    (["Ford", "ford"], "Focus", ["SE", "S"], "Sedan", 9.9),
    (["Ford"], "Escape", ["XLT", "Limited"], "SUV", 10.2),
    (["Toyota"], "Camry", ["LE", "XLE"], "sedan", 10.1),
    (["Volkswagen", "vw"], "Jetta", ["S", "SE"], "Sedan", 9.8),
]
TRUE_AGE, TRUE_LOG_ODO, TRUE_CONDITION = -0.09, -0.1, 0.2


def _tiny_rows(n: int = 900) -> Iterator[list[str]]:
    rng = np.random.default_rng(42)
    for i in range(n):
        makes, model, trims, body, level = CARS[i % len(CARS)]
        j = i // len(CARS)  # varies within each car
        age = int(rng.integers(0, 7))
        odometer = float(np.exp(9.5 + 0.35 * age + rng.normal(0, 0.3)))
        condition = float(np.clip(4.5 - 0.25 * age + rng.normal(0, 0.4), 1, 5))
        log_price = (
            level
            + TRUE_AGE * age
            + TRUE_LOG_ODO * np.log1p(odometer)
            + TRUE_CONDITION * condition
            + rng.normal(0, 0.1)
        )
        mmr = np.exp(log_price + rng.normal(0, 0.08))
        sold = "Tue Dec 16 2014 12:30:00 GMT-0800 (PST)" if j % 2 else "2015-01-15 10:00:00"
        year = (2014 if j % 2 else 2015) - age
        yield [
            str(year),
            makes[j % len(makes)],
            model,
            trims[j % 2],
            body,
            "manual" if i % 10 == 0 else "automatic",
            f"fakevin{i:010d}",
            ["ca", "fl", "tx"][i % 3],
            # Half the conditions on the 1-49 scale, as in the real file.
            str(round(condition * 10)) if j % 2 else f"{condition:.1f}",
            str(round(odometer)),
            ["black", "white", "—"][i % 3],
            ["gray", "black"][i % 2],
            ["bank a", "rental b"][i % 2],
            str(round(mmr / 25) * 25),
            str(round(np.exp(log_price) / 100) * 100),
            sold,
        ]
    # Messy rows the cleaning must drop or repair.
    yield ["2012", "Ford", "Focus", "SE", "Sedan", "Sedan", "x", "ca", "3", "1", *[""] * 6]
    yield ["2012", "Ford", "Focus", "SE", "Sedan", "automatic", "x", "California", "3.0", "9000"]
    yield [
        *["2012", "Ford", "Focus", "SE", "Sedan", "automatic", "x", "ca", "30", "9000"],
        *["red", "gray", "bank a", "9000", "300", "Tue Dec 16 2014 12:30:00 GMT-0800 (PST)"],
    ]


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("calibration") / "tiny.csv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for row in _tiny_rows():
            writer.writerow(row + [""] * (len(HEADER) - len(row)))
    return path


@pytest.fixture(scope="module")
def tiny(tiny_csv: Path) -> dict[str, Any]:
    return build_calibration(tiny_csv)


def _category_counts(calibration: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """Every stored category count, labelled by where it is."""
    for table in ("transmission", "state", "color", "interior", "seller", "weekday"):
        for key, count in calibration[table].items():
            yield f"{table}.{key}", count
    for make, entry in calibration["makes"].items():
        yield make, entry["n"]
        for model, figures in entry["models"].items():
            yield f"{make}.{model}", figures["n"]
            for body, count in figures["bodies"].items():
                yield f"{make}.{model}.body.{body}", count
            for trim, (count, _) in figures["trims"].items():
                yield f"{make}.{model}.trim.{trim}", count


def test_clean_auctions_repairs_and_drops() -> None:
    raw = pd.DataFrame([row + [""] * (16 - len(row)) for row in _tiny_rows(6)], columns=HEADER)
    clean = clean_auctions(raw.astype(str))
    assert len(clean) == 6  # shifted columns, a state name and a $300 sale are gone
    assert clean["condition"].between(1, 5).all()
    assert set(clean["make"]) == {"Ford", "Toyota", "Volkswagen"}
    assert clean["color"].isna().sum() == 2  # "—" means unknown
    placeholders = raw.iloc[:6].assign(odometer=["1", "1.0", "", "999999", "5000", "12"])
    assert clean_auctions(placeholders)["odometer"].isna().tolist() == [True] * 4 + [False] * 2


def test_clean_auctions_keeps_rows_the_loader_rejects_only_for_what_it_tolerates() -> None:
    raw = pd.DataFrame(list(_tiny_rows(4))[:4], columns=HEADER)
    messy = raw.assign(
        make=["", "Ford", "Ford", "Ford"],  # the loader: missing_make_model
        condition=["3.5", "abc", "3.5", "3.5"],  # bad_condition
        state=["ca", "ca", "", "ca"],  # the loader keeps it; the calibration does not
        year=["2012", "2012", "2012", "2030"],  # bad_year, for both
    )
    clean = clean_auctions(messy)
    assert len(clean) == 2
    assert clean["make"].isna().tolist() == [True, False]
    assert clean["condition"].isna().tolist() == [False, True]


def test_clean_auctions_has_no_price_ceiling() -> None:
    raw = pd.DataFrame(list(_tiny_rows(1))[:1], columns=HEADER)
    assert clean_auctions(raw.assign(sellingprice="900000"))["sellingprice"].tolist() == [900000]


def test_build_calibration_on_a_tiny_csv(tiny: dict[str, Any]) -> None:
    summary = tiny["summary"]
    assert summary["rows_read"] == 903
    assert summary["rows_clean"] == 900
    assert set(tiny["makes"]) == {"Ford", "Toyota", "Volkswagen"}
    assert set(tiny["makes"]["Ford"]["models"]) == {"Focus", "Escape"}
    # Body spellings merge across models: "sedan" is shown as the commoner "Sedan".
    assert tiny["makes"]["Toyota"]["models"]["Camry"]["bodies"] == {"Sedan": 225}
    assert tiny["makes"]["Volkswagen"]["n"] == 225
    price = tiny["price"]
    assert price["age"] + 2 * price["age2"] * 3 == pytest.approx(TRUE_AGE, abs=0.03)
    assert price["log_odometer"] == pytest.approx(TRUE_LOG_ODO, abs=0.05)
    assert price["condition"] == pytest.approx(TRUE_CONDITION, abs=0.05)
    assert price["fit"]["r2_log"] > 0.8
    assert tiny["condition"]["age"] < 0
    assert list(tiny["odometer"]["by_age"]) == [str(age) for age in range(7)]
    assert all(count >= MIN_COUNT for _, count in _category_counts(tiny))
    assert len(tiny["quantile_probs"]) == len(price["u_quantiles"])
    # Two months of sales: one month-to-month change per segment, all aggregates.
    market = tiny["market"]
    assert market["monthly_changes_seen"]["all"] == 1
    assert set(market["daily_sd"]) == {"all", "body", "make"}
    assert all(sd >= 0 for sd in market["daily_sd"].values())


def test_a_make_without_a_fittable_row_is_left_out(tmp_path: Path) -> None:
    # Kia Rio is seen often enough to be kept, but no row of it has an mmr to fit on.
    path = tmp_path / "unfittable.csv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for row in _tiny_rows():
            writer.writerow(row + [""] * (len(HEADER) - len(row)))
        for i in range(12):
            car = ["2012", "Kia", "Rio", "LX", "Sedan", "automatic", f"kiavin{i:010d}", "ca"]
            sale = ["3.0", "60000", "red", "gray", "bank a", "", "5000", "2015-01-15 10:00:00"]
            writer.writerow(car + sale)
    calibration = build_calibration(path)
    assert set(calibration["makes"]) == {"Ford", "Toyota", "Volkswagen"}


def test_the_generator_runs_on_a_built_calibration(tiny: dict[str, Any]) -> None:
    calibration = Calibration.from_dict(json.loads(dumps_calibration(tiny)))
    frame = generate_auctions(2_000, seed=1, calibration=calibration)
    check_auction_frame(frame)
    assert set(frame["make"]) == {"Ford", "Toyota", "Volkswagen"}
    assert frame["condition"].between(1, 5).all()


def test_cli_writes_the_calibration(tiny_csv: Path, tmp_path: Path, tiny: dict[str, Any]) -> None:
    out = tmp_path / "calibration.json"
    main([str(tiny_csv), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(dumps_calibration(tiny))


def test_committed_calibration_is_small_and_aggregate() -> None:
    text = DEFAULT_PATH.read_text(encoding="utf-8")
    assert len(text.encode()) < 60 * 1024
    calibration = json.loads(text)
    rare = [(name, count) for name, count in _category_counts(calibration) if count < MIN_COUNT]
    assert rare == []
    assert dumps_calibration(calibration) == text, "regenerate it with calibrate.py"
    assert "vin" not in calibration and "fakevin" not in text
    Calibration.from_dict(calibration)


@pytest.mark.shared_data
@pytest.mark.skipif(not REAL_CSV.exists(), reason=f"{REAL_CSV} is absent")
def test_calibration_of_the_real_sample() -> None:
    built = build_calibration(REAL_CSV)
    summary = built["summary"]
    assert summary["rows_clean"] > 24_000
    assert summary["rows_price_fit"] > 15_000
    assert 0.8 < summary["price_r2_log"] < 0.97
    assert 0.2 < summary["price_resid_sd_log"] < 0.45
    assert 0.1 < summary["mmr_mape"] < 0.35
    price = built["price"]
    assert price["age"] < 0 and price["log_odometer"] < 0 and price["condition"] > 0
    assert 0 < price["mmr_beta"] < 1.2
    assert built["condition"]["age"] < 0 and built["condition"]["log_odometer"] < 0
    assert {"Ford", "Chevrolet", "Toyota", "BMW"} <= set(built["makes"])
    # The committed file is this build (coefficients up to BLAS noise).
    committed = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    assert built["summary"] == committed["summary"]
    assert {m: e["n"] for m, e in built["makes"].items()} == {
        m: e["n"] for m, e in committed["makes"].items()
    }
    for key in ("age", "age2", "log_odometer", "condition", "mmr_beta"):
        assert built["price"][key] == pytest.approx(committed["price"][key], abs=1e-4)
    assert built["market"] == committed["market"]
    # Segment ratios to mmr move by a few percent a month, and the MMR lags the market.
    market = built["market"]
    assert 1e-4 < market["monthly_change_var"]["all"] < 1e-2
    assert market["monthly_changes_seen"]["body"] >= 20
    assert 0.9 <= market["follow_per_day"] < 1.0
