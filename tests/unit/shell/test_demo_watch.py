"""The demo's output statistics: latency percentiles with the warm-up left out."""

from __future__ import annotations

import pytest

from shell.demo.watch import OutputStats


def test_latency_percentiles_leave_the_warm_up_out() -> None:
    stats = OutputStats()
    stats.latencies_s = [(100.0 + i * 0.1, 2.0) for i in range(50)]  # first 5 s: slow
    stats.latencies_s += [(105.0 + i * 0.01, 0.05) for i in range(1000)]
    assert stats.latency_percentiles(warmup_s=5.0)["p99"] == pytest.approx(0.05)
    assert stats.warmup_max_s(5.0) == pytest.approx(2.0)
    assert stats.latency_percentiles()["p99"] == pytest.approx(2.0)  # all of it
    assert stats.warmup_max_s(0.0) is None


def test_no_latencies_no_percentiles() -> None:
    assert OutputStats().latency_percentiles(10.0) == {}
    assert OutputStats().warmup_max_s(10.0) is None


def scored(version: str, auction_id: str = "a1") -> bytes:
    from datetime import UTC, datetime, timedelta

    from gavel.schemas import Listing, ScoredPrice

    listed = datetime(2015, 5, 1, 10, tzinfo=UTC)
    listing = Listing(auction_id=auction_id, listed_at=listed, year=2012, make="Ford", model="F")
    return ScoredPrice(
        auction_id=auction_id,
        predicted_price=9000.0,
        model_name="m",
        model_version=version,
        listed_at=listed,
        scored_at=listed + timedelta(seconds=1),
        ingested_at=listed,
        features=listing,
    ).to_json_bytes()


def test_the_watcher_parses_every_record_with_its_contract_and_counts_the_rest() -> None:
    from gavel.schemas import DriftAlert, ModelAction, ModelUpdate, ScoredPrice
    from gavel.settings import Settings
    from gavel.topics import AUCTIONS_DEADLETTER, MODELS_UPDATES, PRICES_SCORED
    from shell.demo.watch import OutputWatcher

    seen: list[tuple[str, object]] = []
    watcher = OutputWatcher(Settings(), on_event=lambda topic, event: seen.append((topic, event)))
    update = ModelUpdate(action=ModelAction.PROMOTED, model_name="m", version="2")
    for topic, key, value in [
        (PRICES_SCORED, b"a1", scored("1")),
        (PRICES_SCORED, b"a2", scored("2", "a2")),  # a new version: a swap
        (PRICES_SCORED, b"x", b'{"auction_id": "x"}'),  # not the contract
        (PRICES_SCORED, b"y", b"[1]"),
        (AUCTIONS_DEADLETTER, b"z", None),
        (MODELS_UPDATES, b"m", update.to_json_bytes()),
    ]:
        watcher._record(topic, key, value)

    assert watcher.stats.scored_keys == {"a1", "a2"}
    assert all(isinstance(event, ScoredPrice) for event in watcher.scored)
    assert watcher.stats.skipped == {
        "prices.scored: schema": 1,
        "prices.scored: not_object": 1,
        "auctions.deadletter: empty": 1,
    }
    assert [topic for topic, _ in seen] == ["swap", MODELS_UPDATES]
    assert isinstance(seen[1][1], ModelUpdate) and not isinstance(seen[1][1], DriftAlert)
    assert watcher.stats.latency_percentiles()["p50"] == pytest.approx(1.0)
