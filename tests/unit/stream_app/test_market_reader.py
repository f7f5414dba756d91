"""The worker's read of market features: one round trip, as of the materialised day, and
never a failure for a store that does not answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson
import pandas as pd
import pytest

from gavel.features import OPTIONAL_INPUTS
from gavel.market import MARKET_FEATURES, MarketMemory, market_features
from gavel.schemas import Listing, ScoredPrice
from producers.sources.synthetic import generate_auctions
from producers.timeline import listing_payloads
from stream_app.batch import IncomingEvent, score_batch
from stream_app.market_reader import MarketReader, listing_days
from stream_app.model import LoadedModel
from tests.unit.stream_app import pipelines


@dataclass(frozen=True)
class Read:
    vectors: list[np.ndarray | None]
    materialised_day: int | None


class Store:
    """A store over an in-memory market memory (the reference of the real one), with
    days materialised up to ``materialised``; it counts its round trips."""

    def __init__(self, memory: MarketMemory, materialised: int | None) -> None:
        self.memory, self.materialised, self.trips = memory, materialised, 0
        self.fail: Exception | None = None

    def read(self, pairs: Sequence[tuple[str, int]]) -> Read:
        self.trips += 1
        if self.fail is not None:
            raise self.fail
        assert self.materialised is not None
        # A day not materialised yet has no vectors, like a hash that does not exist.
        vectors = [
            self.memory.windows(key, day) if day <= self.materialised else None
            for key, day in pairs
        ]
        return Read([v if v is not None and v.any() else None for v in vectors], self.materialised)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return generate_auctions(4000, start="2015-03-01", end="2015-04-10", seed=5)


@pytest.fixture(scope="module")
def memory(history: pd.DataFrame) -> MarketMemory:
    memory = MarketMemory()
    for row in history.itertuples():
        memory.add_sale(
            row.auction_id, row.listed_at, row.sellingprice, row.mmr, row.make, row.model,
            row.year, row.body,
        )  # fmt: skip
    return memory


def listings_on(days: Sequence[str], seed: int = 3) -> list[Listing]:
    frames = [
        generate_auctions(40, start=d, end=pd.Timestamp(d) + pd.Timedelta(days=1), seed=seed)
        for d in days
    ]
    return [Listing.model_validate_json(p) for f in frames for p in listing_payloads(f)]


def offline(listings: Sequence[Listing], as_of: np.ndarray, history: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame([listing.model_dump() for listing in listings])
    frame["listed_at"] = pd.Timestamp("1970-01-01", tz="UTC") + pd.to_timedelta(as_of, unit="D")
    return market_features(frame, history.assign(sold_at=history["listed_at"]))


def test_features_are_those_of_the_offline_join_as_of_the_materialised_day(
    memory: MarketMemory, history: pd.DataFrame
) -> None:
    listings = listings_on(["2015-04-08", "2015-04-09"])
    materialised = int(listing_days(listings).min())  # the 9th is not materialised yet
    store = Store(memory, materialised)
    reader = MarketReader(store)
    read = reader.read(listings)
    assert read.source == "store" and store.trips == 2  # learnt the day, read again
    assert read.as_of is not None and read.stale_days is not None and read.columns
    assert set(read.as_of.tolist()) == {materialised}
    assert sorted(set(read.stale_days.tolist())) == [0, 1]
    expected = offline(listings, read.as_of, history)
    for name in MARKET_FEATURES:
        np.testing.assert_array_equal(read.columns[name], expected[name].to_numpy(), err_msg=name)
    reader.read(listings)
    assert store.trips == 3  # one round trip once the day is known


def test_a_store_that_fails_costs_the_features_only_and_is_skipped_a_while(
    memory: MarketMemory,
) -> None:
    now = [100.0]
    store = Store(memory, 16_530)
    store.fail = ConnectionError("redis is down")
    reader = MarketReader(store, retry_after_s=5.0, clock=lambda: now[0])
    listings = listings_on(["2015-04-08"])
    first = reader.read(listings)
    assert (
        first.source == "unavailable"
        and first.columns is None
        and "redis is down" in str(first.error)
    )
    assert reader.read(listings).source == "unavailable" and store.trips == 1  # skipped
    now[0] += 6.0
    store.fail = None
    assert reader.read(listings).source == "store" and store.trips >= 2


def test_before_anything_is_materialised_every_feature_is_missing(memory: MarketMemory) -> None:
    class Empty:
        def read(self, pairs: Sequence[tuple[str, int]]) -> Read:
            return Read([None] * len(pairs), None)

    read = MarketReader(Empty()).read(listings_on(["2015-04-08"]))
    assert read.source == "store" and read.columns is not None and read.as_of is not None
    assert all(np.isnan(values).all() for values in read.columns.values())
    assert (read.as_of == -1).all()


def test_a_batch_records_the_market_it_used_the_missing_inputs_and_the_interval(
    memory: MarketMemory, history: pd.DataFrame
) -> None:
    listings = listings_on(["2015-04-09"], seed=8)
    listings[0] = listings[0].model_copy(update={"mmr": None, "condition": None})
    day = int(listing_days(listings).min())
    model = LoadedModel("price", "5", pipelines.market(), 0.0)
    events = [
        IncomingEvent(
            x.auction_id.encode(), orjson.dumps(x.model_dump(mode="json")), "listed", 0, i
        )
        for i, x in enumerate(listings)
    ]
    result = score_batch(events, model, market=MarketReader(Store(memory, day)))
    assert len(result.scored) == len(listings)
    outputs = [ScoredPrice.model_validate_json(o.value) for o in result.scored]
    expected = offline(listings, np.full(len(listings), day), history)
    columns = {name: expected[name].to_numpy() for name in MARKET_FEATURES}
    prices = model.price(listings, columns)
    for index, out in enumerate(outputs):
        assert out.market is not None and out.market.source == "store"
        assert out.market.as_of == datetime.fromtimestamp(day * 86_400, UTC).date()
        assert out.market.stale_days == 0
        assert set(out.market.features) == set(model.market_inputs)
        for name, value in out.market.features.items():
            want = expected[name].iloc[index]
            assert (value is None and np.isnan(want)) or value == pytest.approx(want, rel=1e-12)
        assert out.predicted_price == round(float(prices.price[index]), 2)
        assert out.price_low is not None and out.price_high is not None
        assert out.price_low < out.predicted_price < out.price_high and out.interval_level == 0.8
    assert {"condition", "mmr"} <= set(outputs[0].missing_inputs)
    for listing, out in zip(listings, outputs, strict=True):
        assert out.missing_inputs == [f for f in OPTIONAL_INPUTS if getattr(listing, f) is None]


def test_without_a_store_a_market_model_prices_and_says_the_market_is_off() -> None:
    model = LoadedModel("price", "5", pipelines.market(), 0.0)
    listing = listings_on(["2015-04-09"])[0]
    event = IncomingEvent(b"k", orjson.dumps(listing.model_dump(mode="json")), "listed", 0, 0)
    out = ScoredPrice.model_validate_json(score_batch([event], model).scored[0].value)
    assert out.market is None and out.price_low is not None
