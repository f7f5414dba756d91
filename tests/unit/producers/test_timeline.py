"""Tests for producers.timeline: durations, selection, event-time order and payloads."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import orjson
import pandas as pd
import pytest

from gavel.features import TARGET
from gavel.schemas import Listing, Sale
from producers.sources.frame import RECORD_COLUMNS
from producers.timeline import (
    LISTING,
    SALE,
    build_timeline,
    listing_payloads,
    parse_duration,
    sale_payloads,
    select,
)

HOUR_NS = 3_600_000_000_000


def auctions(times: list[str]) -> pd.DataFrame:
    n = len(times)
    frame = pd.DataFrame(
        {
            "auction_id": [f"a{i}" for i in range(n)],
            "listed_at": pd.to_datetime(times, utc=True, format="ISO8601"),
            "year": [2012] * n,
            "make": ["Ford"] * n,
            "model": ["Fusion"] * n,
            "trim": ["SE", None, np.nan, "—"][:n] + ["LX"] * max(n - 4, 0),
            "body": ["Sedan"] * n,
            "transmission": ["automatic", None][:n] + ["manual"] * max(n - 2, 0),
            "state": ["ca"] * n,
            "condition": [3.5, np.nan][:n] + [2.0] * max(n - 2, 0),
            "odometer": [41000.0, np.nan][:n] + [12.5] * max(n - 2, 0),
            "color": ["black"] * n,
            "interior": [None] * n,
            "seller": ["acme / sons"] * n,
            "mmr": [9100.0, np.nan][:n] + [8000.0] * max(n - 2, 0),
            "vin": ["1fahp3f2xcl100001"] * n,
            TARGET: [9200.0 + 100 * i for i in range(n)],
        }
    )
    return frame.loc[:, list(RECORD_COLUMNS)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1.5d", timedelta(hours=36)),
        ("0s", timedelta(0)),
        (" 2 h ", timedelta(hours=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "h", "-1h", "2w", "1h30m", "2H", "1,5d", ".5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read duration"):
        parse_duration(text)


def week() -> pd.DataFrame:
    return auctions([f"2015-01-0{day} 10:00" for day in range(1, 8)])


def test_select_range_is_half_open() -> None:
    chosen = select(week(), start="2015-01-03", end="2015-01-05 10:00")
    assert chosen["auction_id"].tolist() == ["a2", "a3"]


def test_select_open_ends_and_limit() -> None:
    frame = week()
    assert len(select(frame)) == 7
    assert select(frame, start="2015-01-06")["auction_id"].tolist() == ["a5", "a6"]
    assert select(frame, end="2015-01-02")["auction_id"].tolist() == ["a0"]
    assert select(frame, start="2015-01-02", limit=3)["auction_id"].tolist() == ["a1", "a2", "a3"]
    assert select(frame, limit=0).empty


def test_select_reads_offsets_in_strings() -> None:
    chosen = select(week(), start="2015-01-03T12:00:00+02:00")  # 10:00 UTC
    assert chosen["auction_id"].iloc[0] == "a2"


def test_select_accepts_aware_timestamps() -> None:
    start = pd.Timestamp("2015-01-03 10:00", tz="UTC")
    end = pd.Timestamp("2015-01-05 10:00", tz="Europe/Berlin")
    assert select(week(), start=start, end=end)["auction_id"].tolist() == ["a2", "a3"]


def test_docstring_timeline() -> None:
    frame = auctions(["2015-01-01 10:00", "2015-01-01 11:00"])
    timeline = build_timeline(frame, sale_delay=pd.Timedelta(hours=2))
    assert list(zip(timeline.kinds.tolist(), timeline.rows.tolist(), strict=True)) == [
        ("listing", 0),
        ("listing", 1),
        ("sale", 0),
        ("sale", 1),
    ]
    assert len(timeline) == 4


def test_sales_come_at_listed_at_plus_delay() -> None:
    frame = auctions(["2015-01-01 10:00", "2015-01-01 10:30", "2015-01-02 09:00"])
    timeline = build_timeline(frame, sale_delay=timedelta(hours=1))
    listed = frame["listed_at"].astype("int64").to_numpy()
    for time_ns, kind, row in zip(
        timeline.times_ns, timeline.kind_codes, timeline.rows, strict=True
    ):
        expected = listed[row] + (HOUR_NS if kind == SALE else 0)
        assert time_ns == expected
    assert timeline.kinds.tolist() == ["listing", "listing", "sale", "sale", "listing", "sale"]
    assert timeline.rows.tolist() == [0, 1, 0, 1, 2, 2]


@pytest.mark.parametrize("delay", [timedelta(0), timedelta(minutes=7), timedelta(days=3)])
def test_event_time_order_and_listing_before_its_sale(delay: timedelta) -> None:
    rng = np.random.default_rng(4)
    minutes = np.sort(rng.integers(0, 3 * 24 * 60, 300))
    times = (pd.Timestamp("2015-01-01", tz="UTC") + pd.to_timedelta(minutes, unit="min")).astype(
        str
    )
    frame = auctions(list(times))
    timeline = build_timeline(frame, sale_delay=delay)
    assert len(timeline) == 600
    assert (np.diff(timeline.times_ns) >= 0).all()
    events = list(enumerate(zip(timeline.kind_codes, timeline.rows, strict=True)))
    listing_at = {int(row): i for i, (kind, row) in events if kind == LISTING}
    sale_at = {int(row): i for i, (kind, row) in events if kind == SALE}
    assert set(listing_at) == set(sale_at) == set(range(300))
    assert all(listing_at[row] < sale_at[row] for row in range(300))


def test_at_equal_times_listings_go_first() -> None:
    # a0's sale (10:00 + 1h) and a1's listing (11:00) happen at the same moment.
    frame = auctions(["2015-01-01 10:00", "2015-01-01 11:00"])
    timeline = build_timeline(frame, sale_delay=timedelta(hours=1))
    assert list(zip(timeline.kinds.tolist(), timeline.rows.tolist(), strict=True)) == [
        ("listing", 0),
        ("listing", 1),
        ("sale", 0),
        ("sale", 1),
    ]


def test_without_sales() -> None:
    frame = week()
    timeline = build_timeline(frame, sale_delay=timedelta(hours=1), with_sales=False)
    assert len(timeline) == 7
    assert set(timeline.kinds.tolist()) == {"listing"}
    assert timeline.rows.tolist() == list(range(7))
    assert (timeline.times_ns == frame["listed_at"].astype("int64").to_numpy()).all()


def test_positions_not_labels() -> None:
    frame = select(week(), start="2015-01-04")
    assert frame.index[0] == 3
    timeline = build_timeline(frame, sale_delay=timedelta(hours=1), with_sales=False)
    assert timeline.rows.tolist() == [0, 1, 2, 3]


def test_listing_payloads_validate_and_nan_becomes_null() -> None:
    frame = auctions(["2015-01-01 10:00:00.250", "2015-01-01 11:00", "2015-01-02", "2015-01-03"])
    payloads = listing_payloads(frame)
    assert len(payloads) == 4
    listings = [Listing.model_validate_json(payload) for payload in payloads]
    assert [listing.auction_id for listing in listings] == ["a0", "a1", "a2", "a3"]
    assert listings[0].listed_at == frame["listed_at"].iloc[0].to_pydatetime()
    assert listings[0].odometer == 41000.0
    assert listings[0].seller == "acme / sons"
    second = orjson.loads(payloads[1])
    for field in ("trim", "transmission", "condition", "odometer", "mmr", "interior"):
        assert second[field] is None, field
    assert TARGET not in second  # the price is not known at listing time
    assert listings[1].odometer is None
    assert listings[2].trim is None


def test_sale_payloads_validate() -> None:
    frame = auctions(["2015-01-01 10:00", "2015-01-01 11:00"])
    sales = [Sale.model_validate_json(p) for p in sale_payloads(frame, timedelta(minutes=90))]
    assert [(s.auction_id, s.sellingprice) for s in sales] == [("a0", 9200.0), ("a1", 9300.0)]
    assert sales[0].sold_at == pd.Timestamp("2015-01-01 11:30", tz="UTC").to_pydatetime()
    assert sales[1].sold_at == pd.Timestamp("2015-01-01 12:30", tz="UTC").to_pydatetime()
    assert set(orjson.loads(sale_payloads(frame, timedelta(0))[0])) == {
        "auction_id",
        "sold_at",
        "sellingprice",
    }


def test_payloads_of_an_empty_frame() -> None:
    empty = auctions([]).iloc[0:0]
    assert listing_payloads(empty) == []
    assert sale_payloads(empty, timedelta(hours=1)) == []


def test_payloads_of_synthetic_auctions_validate() -> None:
    synthetic = pytest.importorskip("producers.sources.synthetic")
    frame = synthetic.generate_auctions(300, seed=11)
    listings = [Listing.model_validate_json(p) for p in listing_payloads(frame)]
    assert [listing.auction_id for listing in listings] == frame["auction_id"].tolist()
    sales = [Sale.model_validate_json(p) for p in sale_payloads(frame, timedelta(hours=2))]
    assert [sale.sellingprice for sale in sales] == frame[TARGET].tolist()
    assert all(not math.isnan(listing.year) for listing in listings)
