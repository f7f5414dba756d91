"""Tests for the Kaggle auction CSV loader. All rows here are made up."""

from __future__ import annotations

import gzip
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from gavel.features import TARGET
from gavel.schemas import Listing
from producers.sources import kaggle
from producers.sources.frame import RECORD_COLUMNS, check_auction_frame
from producers.sources.kaggle import (
    KAGGLE_COLUMNS,
    REJECTION_REASONS,
    KaggleFormatError,
    KaggleLoad,
    clean_kaggle_frame,
    load_kaggle_csv,
    normalise_kaggle_frame,
    parse_saledate,
)

SAMPLE = (
    Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "car_auctions_sample.csv.gz"
)
PST = "Mon Mar 02 2015 10:00:00 GMT-0800 (PST)"


def row(**overrides: str) -> dict[str, str]:
    base = {
        "year": "2011",
        "make": "Testmake",
        "model": "Roadster",
        "trim": "LX",
        "body": "Sedan",
        "transmission": "automatic",
        "vin": "TESTVIN0000000001",
        "state": "oh",
        "condition": "3.0",
        "odometer": "52000",
        "color": "blue",
        "interior": "gray",
        "seller": "example motors",
        "mmr": "8000",
        "sellingprice": "8200",
        "saledate": PST,
    }
    unknown = set(overrides) - set(base)
    assert not unknown, unknown
    return {**base, **overrides}


def frame_of(*rows: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(KAGGLE_COLUMNS))


def numbered(n: int, **overrides: str) -> list[dict[str, str]]:
    """``n`` distinct rows (distinct VINs) with the same overrides."""
    return [row(**{"vin": f"TESTVIN{i:010d}", **overrides}) for i in range(n)]


def load(*rows: dict[str, str], **kwargs: Any) -> KaggleLoad:
    return normalise_kaggle_frame(frame_of(*rows), **kwargs)


def only(result: KaggleLoad) -> dict[str, Any]:
    assert len(result.frame) == 1, (result.rejected, result.frame)
    return result.frame.to_dict("records")[0]


def rejected_as(reason: str, **overrides: str) -> None:
    result = load(row(**overrides))
    assert result.frame.empty
    assert result.rejected == Counter({reason: 1})


def listing_dicts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = frame.drop(columns=[TARGET]).to_dict("records")
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
        for record in records
    ]


def assert_contract(result: KaggleLoad) -> None:
    frame = result.frame
    assert tuple(frame.columns) == RECORD_COLUMNS
    check_auction_frame(frame)
    assert str(frame["listed_at"].dt.tz) == "UTC"
    assert frame["year"].dtype == "int64"
    for column in ("condition", "odometer", "mmr", TARGET):
        assert frame[column].dtype == "float64"
    assert frame["auction_id"].is_unique
    for record in listing_dicts(frame):
        Listing.model_validate(record)
    assert len(frame) + sum(result.rejected.values()) == result.total_rows


# --- the happy path -------------------------------------------------------------------------


def test_clean_row_is_kept_with_contract_dtypes() -> None:
    result = load(row())
    assert_contract(result)
    out = only(result)
    assert out["listed_at"] == pd.Timestamp("2015-03-02 18:00:00", tz="UTC")
    assert out["year"] == 2011
    assert (out["make"], out["model"], out["trim"], out["body"]) == (
        "Testmake",
        "Roadster",
        "LX",
        "Sedan",
    )
    assert (out["condition"], out["odometer"], out["mmr"], out[TARGET]) == (
        3.0,
        52000.0,
        8000.0,
        8200.0,
    )
    assert out["vin"] == "testvin0000000001"
    assert out["auction_id"].startswith("kg-") and len(out["auction_id"]) == 19
    assert result.rejected == Counter()
    assert result.total_rows == 1


def test_output_is_sorted_by_listed_at() -> None:
    result = load(
        row(vin="TESTVIN0000000003", saledate="2015-05-03 00:00:00"),
        row(vin="TESTVIN0000000001", saledate="2015-05-01 00:00:00"),
        row(vin="TESTVIN0000000002", saledate="Sat May 02 2015 09:00:00 GMT-0700 (PDT)"),
    )
    assert_contract(result)
    assert result.frame["vin"].tolist() == [
        "testvin0000000001",
        "testvin0000000002",
        "testvin0000000003",
    ]


def test_whitespace_is_stripped_and_empty_text_is_none() -> None:
    out = only(
        load(row(make="  Testmake ", model=" Roadster", trim="", body=" ", seller="", vin=""))
    )
    assert (out["make"], out["model"]) == ("Testmake", "Roadster")
    assert out["trim"] is None and out["body"] is None and out["seller"] is None
    assert out["vin"] is None


def test_columns_may_be_in_any_order_with_extras_and_odd_header_case() -> None:
    raw = frame_of(row())[list(reversed(KAGGLE_COLUMNS))]
    raw = raw.rename(columns={"Make": "make"} | {"year": " Year "}).assign(extra="x")
    assert only(normalise_kaggle_frame(raw))["year"] == 2011


def test_missing_column_is_a_format_error() -> None:
    with pytest.raises(KaggleFormatError, match="mmr"):
        normalise_kaggle_frame(frame_of(row()).drop(columns=["mmr"]))


def test_unknown_condition_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="condition_scale"):
        normalise_kaggle_frame(frame_of(row()), condition_scale="10")  # type: ignore[arg-type]  # wrong on purpose


def test_empty_input_gives_an_empty_valid_frame() -> None:
    result = normalise_kaggle_frame(frame_of())
    assert_contract(result)
    assert result.frame.empty and result.total_rows == 0


def test_non_unique_input_index_is_fine() -> None:
    raw = pd.concat([frame_of(row(vin="TESTVIN0000000001")), frame_of(row(vin="", make=""))])
    result = normalise_kaggle_frame(raw)
    assert len(result.frame) == 1
    assert result.rejected == Counter({"missing_make_model": 1})


def test_nan_cells_from_a_default_read_are_treated_as_empty() -> None:
    raw = frame_of(row()).astype(object)
    raw.loc[0, ["trim", "condition"]] = float("nan")
    out = only(normalise_kaggle_frame(raw))
    assert out["trim"] is None and math.isnan(out["condition"])


# --- condition scales -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("4.5", 4.5),
        ("1.0", 1.0),
        ("2", 2.0),
        ("5", 5.0),
        ("5.0", 5.0),
        ("19", 1.9),
        ("19.0", 1.9),
        ("35", 3.5),
        ("44", 4.4),
        ("49", 4.9),
        ("6", 1.0),  # 0.6 on the 1-49 scale, clipped
    ],
)
def test_auto_condition_scale_decides_per_value(raw: str, expected: float) -> None:
    assert only(load(row(condition=raw)))["condition"] == pytest.approx(expected)


def test_auto_condition_scale_handles_a_mixed_file() -> None:
    values = ["4.5", "2", "5", "19", "35", "44"]
    result = load(*[row(vin=f"TESTVIN{i:010d}", condition=c) for i, c in enumerate(values)])
    assert_contract(result)
    by_vin = result.frame.set_index("vin")["condition"]
    assert [by_vin[f"testvin{i:010d}"] for i in range(len(values))] == pytest.approx(
        [4.5, 2.0, 5.0, 1.9, 3.5, 4.4]
    )
    assert result.repaired["condition_rescaled"] == 3


@pytest.mark.parametrize(
    ("scale", "raw", "expected"),
    [
        ("5", "3.5", 3.5),
        ("5", "1", 1.0),
        ("49", "35", 3.5),
        ("49", "2", 1.0),  # 0.2, clipped
        ("49", "49", 4.9),
        ("49", "4.5", 1.0),  # 0.45, clipped
    ],
)
def test_explicit_condition_scale(scale: kaggle.ConditionScale, raw: str, expected: float) -> None:
    out = only(load(row(condition=raw), condition_scale=scale))
    assert out["condition"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("scale", "raw"),
    [("5", "19"), ("5", "0.5"), ("auto", "0"), ("auto", "0.5"), ("auto", "60"), ("49", "-3")],
)
def test_condition_off_every_scale_is_rejected(scale: kaggle.ConditionScale, raw: str) -> None:
    result = load(row(condition=raw), condition_scale=scale)
    assert result.rejected == Counter({"bad_condition": 1})


def test_non_numeric_condition_is_rejected() -> None:
    rejected_as("bad_condition", condition="good")


def test_empty_condition_is_none_and_counted() -> None:
    result = load(row(condition=""))
    assert math.isnan(only(result)["condition"])
    assert result.repaired["missing_condition"] == 1
    assert_contract(result)


# --- sale dates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tue Dec 16 2014 12:30:00 GMT-0800 (PST)", "2014-12-16 20:30:00"),
        ("Wed Jun 03 2015 03:30:00 GMT-0700 (PDT)", "2015-06-03 10:30:00"),
        ("Thu Jan 08 2015 09:05:00 GMT-0800", "2015-01-08 17:05:00"),
        ("2015-04-30 04:00:00", "2015-04-30 04:00:00"),
        ("2015-04-30T04:00:00", "2015-04-30 04:00:00"),
        ("2015-04-30", "2015-04-30 00:00:00"),
        ("2015-04-30 04:00:00-05:00", "2015-04-30 09:00:00"),
        ("2015-04-30T04:00:00Z", "2015-04-30 04:00:00"),
    ],
)
def test_both_saledate_formats_become_utc(raw: str, expected: str) -> None:
    assert only(load(row(saledate=raw)))["listed_at"] == pd.Timestamp(expected, tz="UTC")


def test_mixed_saledate_formats_in_one_frame() -> None:
    dates = ["Tue Dec 16 2014 12:30:00 GMT-0800 (PST)", "2015-04-30 04:00:00"]
    result = load(*[row(vin=f"TESTVIN{i:010d}", saledate=d) for i, d in enumerate(dates)])
    assert_contract(result)
    assert len(result.frame) == 2


@pytest.mark.parametrize(
    "raw",
    ["", "yesterday", "Xyz Dec 45 2014 12:30:00 GMT-0800 (PST)", "2015-13-45 04:00:00", "2015/04"],
)
def test_unparseable_saledate_is_rejected(raw: str) -> None:
    rejected_as("bad_saledate", saledate=raw)


def test_parse_saledate_reads_both_published_formats() -> None:
    text = pd.Series(
        [" Thu Jan 15 2015 04:30:00 GMT-0800 (PST)", "2015-04-30 04:00:00", "", None, "2016"]
    )
    parsed = parse_saledate(text)
    assert str(parsed.dtype) == "datetime64[ns, UTC]"
    assert parsed[0] == pd.Timestamp("2015-01-15 12:30", tz="UTC")
    assert parsed[1] == pd.Timestamp("2015-04-30 04:00", tz="UTC")
    assert parsed[2:].isna().all()  # a bare year is no sale date


# --- every row, cleaned -------------------------------------------------------------------


def test_clean_kaggle_frame_checks_every_row_against_every_reason() -> None:
    rows = clean_kaggle_frame(
        frame_of(row(), row(make="", sellingprice="12"), row(transmission="Coupe", state="x"))
    )
    assert list(rows.failed) == [r for r in REJECTION_REASONS if r != "invalid_listing"]
    assert rows.failed["missing_make_model"].tolist() == [False, True, False]
    assert rows.failed["absurd_price"].tolist() == [False, True, False]  # not only the first
    assert rows.failed["shifted_columns"].tolist() == [False, False, True]
    assert rows.first_reasons().tolist() == [pd.NA, "missing_make_model", "shifted_columns"]
    assert rows.passing().tolist() == [True, False, False]
    assert rows.passing({"missing_make_model", "absurd_price"}).tolist() == [True, True, False]
    assert rows.values.loc[1, "make"] == "" and rows.values.loc[0, "state"] == "oh"
    assert set(rows.values.columns) == set(RECORD_COLUMNS) - {"auction_id"}


def test_clean_kaggle_frame_gives_the_values_the_load_keeps() -> None:
    raw = frame_of(*numbered(5, color="—", condition="35"), row(make=""))
    rows = clean_kaggle_frame(raw)
    frame = normalise_kaggle_frame(raw).frame
    kept = rows.values[rows.passing()]
    assert kept["condition"].tolist() == frame["condition"].tolist() == [3.5] * 5
    assert (kept["color"] == "").all() and frame["color"].isna().all()
    assert rows.repairs["unknown_color"].sum() == 5


def test_clean_kaggle_frame_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="condition_scale"):
        clean_kaggle_frame(frame_of(row()), condition_scale="10")  # type: ignore[arg-type]  # wrong on purpose
    with pytest.raises(KaggleFormatError):
        clean_kaggle_frame(pd.DataFrame({"year": ["2012"]}))


# --- messy values ---------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "model"), [("", "Roadster"), ("Testmake", ""), ("", "")])
def test_missing_make_or_model_is_rejected(make: str, model: str) -> None:
    rejected_as("missing_make_model", make=make, model=model)


@pytest.mark.parametrize("mark", ["—", "\u2013", "-", " — ", "None", "null", "NaN"])
def test_dash_colour_and_interior_are_unknown(mark: str) -> None:
    result = load(row(color=mark, interior=mark))
    out = only(result)
    assert out["color"] is None and out["interior"] is None
    assert result.repaired["unknown_color"] == 1
    assert result.repaired["unknown_interior"] == 1


@pytest.mark.parametrize("column", ["trim", "body", "seller"])
@pytest.mark.parametrize("mark", ["—", "\u2013", "None", "NULL"])
def test_missing_text_in_other_columns_is_unknown(column: str, mark: str) -> None:
    result = load(row(**{column: mark}))
    assert only(result)[column] is None
    assert result.repaired == Counter({f"unknown_{column}": 1})


def test_colours_are_lower_case() -> None:
    out = only(load(row(color="Blue", interior="GRAY")))
    assert (out["color"], out["interior"]) == ("blue", "gray")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sedan", "Sedan"),
        ("Sedan", "Sedan"),
        ("SUV", "SUV"),
        ("suv", "SUV"),
        ("Suv", "SUV"),
        ("crew cab", "Crew Cab"),
        ("Crew  Cab", "Crew Cab"),
        ("supercrew", "SuperCrew"),
        ("e-series van", "E-Series Van"),
        ("cts-v coupe", "CTS-V Coupe"),
        ("g sedan", "G Sedan"),
        ("PANEL TRUCK", "Panel Truck"),  # unknown style: title case
        ("MegaLiner van", "MegaLiner Van"),  # unknown, deliberate mixed case kept
    ],
)
def test_body_names_are_canonical(raw: str, expected: str) -> None:
    assert only(load(row(body=raw)))["body"] == expected


def test_body_recasing_is_counted() -> None:
    result = load(*numbered(2, body="suv"), row(vin="TESTVIN9", body="SUV"))
    assert set(result.frame["body"]) == {"SUV"}
    assert result.repaired["body_recased"] == 2


@pytest.mark.parametrize(("raw", "expected"), [("Automatic", "automatic"), ("MANUAL", "manual")])
def test_transmission_is_lower_case(raw: str, expected: str) -> None:
    assert only(load(row(transmission=raw)))["transmission"] == expected


def test_empty_transmission_and_state_are_none() -> None:
    out = only(load(row(transmission="", state="")))
    assert out["transmission"] is None and out["state"] is None


def test_state_is_lower_case() -> None:
    assert only(load(row(state="TX")))["state"] == "tx"


@pytest.mark.parametrize("raw", ["", "1", "1.0", "0", "999999", "1500000"])
def test_odometer_placeholders_become_none(raw: str) -> None:
    result = load(row(odometer=raw))
    assert math.isnan(only(result)["odometer"])
    assert result.repaired["odometer_placeholder"] == 1


def test_real_odometer_values_are_kept() -> None:
    assert only(load(row(odometer="2.0")))["odometer"] == 2.0
    assert only(load(row(odometer="999998")))["odometer"] == 999_998.0


@pytest.mark.parametrize("raw", ["lots", "-5"])
def test_bad_odometer_is_rejected(raw: str) -> None:
    rejected_as("bad_odometer", odometer=raw)


@pytest.mark.parametrize(
    "shifted",
    [
        # Everything after trim moved one column to the right.
        {
            "body": "Navigation",
            "transmission": "Sedan",
            "vin": "automatic",
            "state": "testvin0000000001",
            "condition": "oh",
            "odometer": "3.0",
            "color": "52000",
            "interior": "blue",
            "seller": "gray",
            "mmr": "example motors",
            "sellingprice": "8000",
            "saledate": "8200",
        },
        {"transmission": "Sedan"},
        {"state": "testvin0000000001"},
        {"state": "ohio"},
        {"saledate": "8200"},
        {"saledate": "8200.0"},
    ],
)
def test_shifted_columns_are_rejected(shifted: dict[str, str]) -> None:
    rejected_as("shifted_columns", **shifted)


@pytest.mark.parametrize("price", ["", "n/a", "abc"])
def test_missing_price_is_rejected(price: str) -> None:
    rejected_as("missing_price", sellingprice=price)


@pytest.mark.parametrize("price", ["1", "350", "499.99", "0", "-100", "250001", "1e9"])
def test_absurd_price_is_rejected(price: str) -> None:
    rejected_as("absurd_price", sellingprice=price)


def test_price_bounds_are_parameters() -> None:
    assert only(load(row(sellingprice="350"), min_price=100))[TARGET] == 350.0
    assert load(row(sellingprice="8200"), max_price=5000).rejected == Counter(absurd_price=1)
    assert only(load(row(sellingprice="500")))[TARGET] == 500.0
    assert only(load(row(sellingprice="250000")))[TARGET] == 250_000.0


@pytest.mark.parametrize(
    ("raw", "reason"), [("", "missing_mmr"), ("0", "bad_mmr"), ("-5", "bad_mmr"), ("?", "bad_mmr")]
)
def test_bad_mmr_becomes_none(raw: str, reason: str) -> None:
    result = load(row(mmr=raw))
    assert math.isnan(only(result)["mmr"])
    assert result.repaired == Counter({reason: 1})


@pytest.mark.parametrize("year", ["", "abc", "1949", "2011.5", "2017"])
def test_bad_year_is_rejected(year: str) -> None:
    rejected_as("bad_year", year=year)  # The sale is in 2015: 2016 is the latest model year.


def test_next_model_year_is_accepted() -> None:
    assert only(load(row(year="2016")))["year"] == 2016
    assert only(load(row(year="1950")))["year"] == 1950


def test_overlong_text_is_rejected() -> None:
    rejected_as("text_too_long", make="M" * 61)
    rejected_as("text_too_long", seller="s" * 201)


def test_overlong_vin_is_dropped_not_the_row() -> None:
    result = load(row(vin="X" * 33))
    assert only(result)["vin"] is None
    assert result.repaired["bad_vin"] == 1


def test_all_empty_row_is_rejected() -> None:
    rejected_as("empty_row", **dict.fromkeys(KAGGLE_COLUMNS, ""))


def test_listing_safety_net_catches_what_vectorised_checks_miss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(kaggle._TEXT_LIMITS, "make", 1000)
    result = load(row(make="M" * 61), row(vin="TESTVIN0000000002"))
    assert result.rejected == Counter({"invalid_listing": 1})
    assert result.frame["vin"].tolist() == ["testvin0000000002"]


# --- counting -------------------------------------------------------------------------------


def test_counts_per_reason_and_repair() -> None:
    rows = [
        *numbered(5),
        *numbered(3, make=""),
        *numbered(2, sellingprice="120"),
        *numbered(1, transmission="Coupe"),
        *numbered(2, saledate="someday"),
        *numbered(4, color="—"),
        *numbered(3, odometer="1"),
        *numbered(2, condition=""),
    ]
    # One reason per row: the shifted row also has a bad price but counts as shifted.
    rows.append(row(vin="TESTVIN", transmission="Coupe", sellingprice="12"))
    result = load(*rows)
    assert_contract(result)
    assert result.total_rows == 23
    assert len(result.frame) == 14
    assert result.rejected == Counter(
        {"missing_make_model": 3, "absurd_price": 2, "shifted_columns": 2, "bad_saledate": 2}
    )
    assert result.repaired == Counter(
        {"unknown_color": 4, "odometer_placeholder": 3, "missing_condition": 2}
    )
    assert set(result.rejected) <= set(REJECTION_REASONS)


def test_repairs_are_counted_on_kept_rows_only() -> None:
    result = load(row(color="—", sellingprice="1"), row(vin="TESTVIN2", color="—"))
    assert result.repaired == Counter({"unknown_color": 1})


# --- auction ids ----------------------------------------------------------------------------


def test_ids_are_stable_across_loads() -> None:
    rows = [row(vin=f"TESTVIN{i:010d}", saledate=f"2015-04-{i + 1:02d} 10:00:00") for i in range(9)]
    first = load(*rows).frame["auction_id"].tolist()
    second = load(*rows).frame["auction_id"].tolist()
    assert first == second
    assert len(set(first)) == 9


def test_duplicate_vin_and_date_get_distinct_ids() -> None:
    result = load(row(), row(), row(saledate="2015-04-01 10:00:00"))
    assert_contract(result)
    assert result.frame["auction_id"].nunique() == 3


def test_ids_do_not_depend_on_which_rows_are_rejected() -> None:
    rows = [row(sellingprice="300"), row(), row(vin="")]
    strict = load(*rows).frame.set_index("sellingprice")["auction_id"]
    lenient = load(*rows, min_price=100).frame.set_index("sellingprice")["auction_id"]
    assert strict[8200.0].tolist() == lenient[8200.0].tolist()


def test_rows_without_vin_get_ids_from_other_columns() -> None:
    result = load(row(vin=""), row(vin="", model="Coupe"), row(vin="", model="Coupe"))
    assert_contract(result)
    assert result.frame["auction_id"].nunique() == 3
    assert result.frame["vin"].isna().all()


# --- reading files --------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    text = frame_of(*rows).to_csv(index=False)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["auctions.csv", "auctions.csv.gz", "auctions-gzipped.csv"])
def test_load_kaggle_csv_reads_plain_and_gzip(tmp_path: Path, name: str) -> None:
    rows = [row(), row(vin="TESTVIN2", trim="", color="—", condition="")]
    path = write_csv(tmp_path / name, rows)
    if name == "auctions-gzipped.csv":
        path.write_bytes(gzip.compress(path.read_bytes()))
    result = load_kaggle_csv(path)
    assert_contract(result)
    expected = load(*rows)
    pd.testing.assert_frame_equal(result.frame, expected.frame)
    assert result.repaired == expected.repaired


def test_load_kaggle_csv_keeps_na_like_text(tmp_path: Path) -> None:
    # "NA" is a real trim name; pandas' default NA guessing would lose it.
    path = write_csv(tmp_path / "auctions.csv", [row(trim="NA")])
    assert only(load_kaggle_csv(path))["trim"] == "NA"


def test_load_kaggle_csv_with_progress(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "auctions.csv", [row()])
    assert len(load_kaggle_csv(path, progress=True).frame) == 1


def test_one_info_line_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="producers.sources.kaggle"):
        load(row(), row(vin="TESTVIN2", make=""))
    lines = [r for r in caplog.records if r.name == "producers.sources.kaggle"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert "kept 1 of 2" in lines[0].getMessage()
    assert "missing_make_model=1" in lines[0].getMessage()


def test_loading_is_vectorised() -> None:
    rows = numbered(20_000, condition="35", color="—")
    raw = frame_of(*rows)
    start = time.perf_counter()
    result = normalise_kaggle_frame(raw)
    assert time.perf_counter() - start < 10  # ~0.4 s in practice; a per-row loop takes far more
    assert len(result.frame) == 20_000


# --- the real sample ------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_sample_loads() -> None:
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} is absent")
    result = load_kaggle_csv(SAMPLE)
    assert_contract(result)
    frame = result.frame
    assert len(frame) > 0.9 * result.total_rows
    assert result.rejected["shifted_columns"] >= 1
    assert result.rejected["absurd_price"] >= 1
    assert frame["condition"].dropna().between(1.0, 5.0).all()
    assert frame[TARGET].between(500, 250_000).all()
    assert frame["transmission"].dropna().isin(["automatic", "manual"]).all()
    assert frame["state"].dropna().str.fullmatch(r"[a-z]{2}").all()
    assert not frame["color"].isin(["—", "-"]).any()
    assert frame["body"].dropna().str[0].str.isupper().all()
