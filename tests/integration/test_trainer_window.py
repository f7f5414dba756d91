"""trainer.window against the real broker: hostile records are counted, reads are
incremental, start by Kafka time, and never return part of the window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from gavel.settings import Settings
from gavel.topics import AUCTIONS_SOLD, PRICES_SCORED
from producers.sources.synthetic import generate_auctions
from tests.integration.trainer_corpus import (
    HOSTILE_SALES,
    HOSTILE_SCORED,
    expected_skips,
    labelled_events,
    produce,
)
from trainer.window import IncompleteRead, LabelledWindow, TopicReader

pytestmark = pytest.mark.integration


def auctions(n: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    return labelled_events(generate_auctions(n, start="2015-01-01", end="2015-02-01", seed=seed))


def test_hostile_records_are_skipped_and_counted_by_reason(isolated: Settings) -> None:
    scored, sales = auctions(600, seed=1)
    rng = random.Random(3)
    scored_mix = [*scored, *(value for value, _ in HOSTILE_SCORED)]
    sales_mix = [*sales, *(value for value, _ in HOSTILE_SALES)]
    rng.shuffle(scored_mix)
    rng.shuffle(sales_mix)
    produce(isolated, PRICES_SCORED, scored_mix)
    produce(isolated, AUCTIONS_SOLD, sales_mix)

    with LabelledWindow(isolated, since=None, timeout_s=60) as window:
        frame = window.refresh()
        stats = window.stats.as_dict()

    assert len(frame) == len(scored) == len(sales)
    assert frame["auction_id"].is_unique
    assert stats[PRICES_SCORED] == {
        "read": len(scored_mix),
        "skipped": expected_skips(HOSTILE_SCORED),
    }
    assert stats[AUCTIONS_SOLD] == {
        "read": len(sales_mix),
        "skipped": expected_skips(HOSTILE_SALES),
    }
    print("skip counts:", stats)


def test_refreshes_read_only_what_is_new(isolated: Settings) -> None:
    scored, sales = auctions(400, seed=2)
    half = len(scored) // 2
    produce(isolated, PRICES_SCORED, scored[:half])
    produce(isolated, AUCTIONS_SOLD, sales[:half])
    with LabelledWindow(isolated, since=None, timeout_s=60) as window:
        assert len(window.refresh()) == half
        assert window.stats.tallies[PRICES_SCORED].read == half
        assert len(window.refresh()) == half  # nothing new: nothing re-read
        assert window.stats.tallies[PRICES_SCORED].read == half
        assert window.stats.tallies[AUCTIONS_SOLD].read == half

        produce(isolated, PRICES_SCORED, scored[half:])
        produce(isolated, AUCTIONS_SOLD, sales[half:])
        assert len(window.refresh()) == len(scored)
        assert window.stats.tallies[PRICES_SCORED].read == len(scored)  # each read once
        assert window.stats.tallies[AUCTIONS_SOLD].read == len(sales)


def test_the_window_starts_at_a_kafka_time(isolated: Settings) -> None:
    now = datetime.now(UTC)
    old_scored, old_sales = auctions(200, seed=3)
    new_scored, new_sales = auctions(300, seed=4)
    new_scored = [v.replace(b'"auction_id":"', b'"auction_id":"new-') for v in new_scored]
    new_sales = [v.replace(b'"auction_id":"', b'"auction_id":"new-') for v in new_sales]
    produce(isolated, PRICES_SCORED, old_scored, timestamp=now - timedelta(days=40))
    produce(isolated, AUCTIONS_SOLD, old_sales, timestamp=now - timedelta(days=40))
    produce(isolated, PRICES_SCORED, new_scored, timestamp=now - timedelta(days=1))
    produce(isolated, AUCTIONS_SOLD, new_sales, timestamp=now - timedelta(days=1))

    with LabelledWindow(isolated, since=now - timedelta(days=30), timeout_s=60) as window:
        frame = window.refresh()
        assert window.stats.tallies[PRICES_SCORED].read == len(new_scored)
        assert window.stats.tallies[AUCTIONS_SOLD].read == len(new_sales)
    assert len(frame) == len(new_scored)
    assert frame["auction_id"].str.startswith("new-").all()

    with LabelledWindow(isolated, since=now + timedelta(days=1), timeout_s=60) as window:
        assert window.refresh().empty  # nothing that recent: start at the end
        produce(isolated, AUCTIONS_SOLD, new_sales[:5])
        window.refresh()
        assert window.stats.tallies[AUCTIONS_SOLD].read == 5  # later records still count

    with LabelledWindow(isolated, since=None, timeout_s=60) as window:
        assert len(window.refresh()) == len(old_scored) + len(new_scored)


def test_a_read_that_cannot_reach_the_watermarks_fails_and_resumes(isolated: Settings) -> None:
    _, sales = auctions(300, seed=5)
    produce(isolated, AUCTIONS_SOLD, sales)
    reader = TopicReader(isolated, AUCTIONS_SOLD, since=None, timeout_s=0.0)
    handled: list[bytes | None] = []
    try:
        with pytest.raises(IncompleteRead, match="short of the high watermarks"):
            reader.refresh(handled.append)
        assert len(handled) < len(sales)
        reader.timeout_s = 60.0
        reader.refresh(handled.append)
        assert len(handled) == len(sales)  # the rest, once: no record twice or missing
        assert len(set(handled)) == len(set(sales))
    finally:
        reader.close()
