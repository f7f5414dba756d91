"""producers.replay.replay against a fake producer: order, keys, corruption and accounting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pandas as pd
import pytest
from rich.progress import Progress

from gavel.settings import Settings
from gavel.topics import AUCTIONS_LISTED, AUCTIONS_SOLD
from producers.replay import ReplayOptions, ReplayStats, replay
from producers.sources.synthetic import generate_auctions

SETTINGS = Settings()
LISTED, SOLD = SETTINGS.topic(AUCTIONS_LISTED), SETTINGS.topic(AUCTIONS_SOLD)


class FakeError:
    def __init__(self, text: str) -> None:
        self.text = text

    def str(self) -> str:
        return self.text


class FakeProducer:
    """Delivers on poll and flush; can refuse the first produce calls and fail some keys."""

    def __init__(
        self, buffer_errors: int = 0, fail: set[bytes] | None = None, undelivered: int = 0
    ) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.pending: list[tuple[Callable[..., None], bytes]] = []
        self.buffer_errors = buffer_errors
        self.fail = fail or set()
        self.undelivered = undelivered
        self.polls: list[float] = []

    def produce(
        self, topic: str, value: bytes, key: bytes, on_delivery: Callable[..., None]
    ) -> None:
        if self.buffer_errors:
            self.buffer_errors -= 1
            raise BufferError("queue full")
        self.sent.append((topic, key, value))
        self.pending.append((on_delivery, key))

    def _deliver(self, keep: int = 0) -> None:
        while len(self.pending) > keep:
            callback, key = self.pending.pop(0)
            error = FakeError("broker says no") if key in self.fail else None
            callback(error, None)

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        self._deliver()
        return 0

    def flush(self, timeout: float) -> int:
        self._deliver(keep=self.undelivered)
        return len(self.pending)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_auctions(40, seed=2, start="2015-02-02", end="2015-02-04")


def run(frame: pd.DataFrame, producer: Any, **options: Any) -> ReplayStats:
    """Replay ``frame`` into ``producer`` (a FakeProducer, typed Any: it is no Producer)."""
    return replay(frame, SETTINGS, ReplayOptions(**options), producer=producer)


def test_listings_and_sales_go_out_in_event_time_order(frame: pd.DataFrame) -> None:
    producer = FakeProducer()
    stats = run(frame, producer, sale_delay=timedelta(hours=2))
    assert (stats.listings, stats.sales, stats.sent) == (40, 40, 80)
    assert (stats.acked, stats.failed, stats.errors) == (80, 0, {})
    times = []
    for topic, key, value in producer.sent:
        payload = orjson.loads(value)
        assert key.decode() == payload["auction_id"]
        times.append(pd.Timestamp(payload["listed_at" if topic == LISTED else "sold_at"]))
    assert times == sorted(times)
    assert [t for t, _, _ in producer.sent].count(SOLD) == 40
    assert stats.first_event == frame["listed_at"].iloc[0]
    assert stats.last_event == frame["listed_at"].iloc[-1] + timedelta(hours=2)
    assert stats.seconds > 0 and stats.rate > 0


def test_without_sales_only_listings_are_sent(frame: pd.DataFrame) -> None:
    producer = FakeProducer()
    stats = run(frame, producer, with_sales=False)
    assert {topic for topic, _, _ in producer.sent} == {LISTED}
    assert (stats.listings, stats.sales, stats.acked) == (40, 0, 40)


def test_corrupted_listings_are_counted_and_get_no_sale(frame: pd.DataFrame) -> None:
    producer = FakeProducer()
    stats = run(frame, producer, corrupt_share=0.3, seed=5)
    corrupted = sum(stats.corrupted.values())
    assert corrupted == len(stats.corrupted_keys) > 0
    assert (stats.listings, stats.sales) == (40, 40 - corrupted)
    sold = {key.decode() for topic, key, _ in producer.sent if topic == SOLD}
    assert not sold & set(stats.corrupted_keys)
    reasons = {"schema", "out_of_range", "not_json"}
    assert set(stats.corrupted_keys.values()) <= reasons


def test_a_full_queue_is_drained_and_the_send_retried(frame: pd.DataFrame) -> None:
    producer = FakeProducer(buffer_errors=3)
    stats = run(frame.head(2), producer)
    assert producer.polls[:3] == [0.05, 0.05, 0.05]
    assert len(producer.sent) == 4 and stats.acked == 4


def test_failed_and_undelivered_sends_are_counted(frame: pd.DataFrame) -> None:
    first_key = frame["auction_id"].iloc[0].encode()
    producer = FakeProducer(fail={first_key}, undelivered=3)
    stats = run(frame, producer)
    assert stats.failed == 2 + 3  # its listing and its sale, then three never delivered
    assert stats.errors == {"broker says no": 2, "not delivered within 120s": 3}
    assert stats.acked == 80 - 5


def test_an_empty_frame_sends_nothing(frame: pd.DataFrame) -> None:
    producer = FakeProducer()
    stats = run(frame.iloc[:0], producer)
    assert producer.sent == [] and producer.polls == []
    assert stats.sent == 0 and stats.first_event is None


def test_progress_ends_at_the_number_of_events(frame: pd.DataFrame) -> None:
    progress = Progress(disable=True)
    producer: Any = FakeProducer()
    replay(frame, SETTINGS, ReplayOptions(), progress=progress, producer=producer)
    (task,) = progress.tasks
    assert (task.total, task.completed) == (80, 80)
