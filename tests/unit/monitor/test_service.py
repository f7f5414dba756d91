"""Tests for the record, alert and checkpoint handling of monitor.service, with fakes for
Kafka and Redis (the real ones are in tests/e2e/test_monitor.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaError

from gavel.schemas import DriftAlert, DriftKind, Listing, Sale, ScoredPrice, Severity
from gavel.settings import Settings
from gavel.topics import AUCTIONS_SOLD, DRIFT_ALERTS, PRICES_SCORED
from monitor import service as service_module
from monitor.checkpoint import Fence, decode
from monitor.metrics import MonitorMetrics
from monitor.service import MonitorService, Stopping
from shell.lease import LeaseLost

T0 = datetime(2015, 5, 1, tzinfo=UTC)


@dataclass
class FakeMessage:
    _topic: str
    _value: bytes | None
    _partition: int = 0
    _offset: int = 0

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


@dataclass
class FakeProducer:
    """Fails the first ``failures`` deliveries, then acknowledges."""

    failures: int = 0
    produced: list[bytes] = field(default_factory=list)
    _callbacks: list[Callable[[Any, Any], None]] = field(default_factory=list)

    def produce(
        self, topic: str, value: bytes, key: bytes | None = None, on_delivery: Any = None
    ) -> None:
        assert topic == DRIFT_ALERTS
        self.produced.append(value)
        self._callbacks.append(on_delivery)

    def poll(self, _: float = 0) -> int:
        return 0

    def flush(self, _: float = 0) -> int:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            if self.failures:
                self.failures -= 1
                callback("broker down", None)
            else:
                callback(None, None)
        return 0


@dataclass
class FakeStore:
    saved: list[bytes] = field(default_factory=list)
    fences: list[Fence | None] = field(default_factory=list)
    failures: int = 0

    def save(self, blob: bytes, fence: Fence | None = None) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("redis down")
        self.saved.append(blob)
        self.fences.append(fence)


@dataclass
class FakeMonitor:
    """Returns ``alerts`` for every record; raises ``error`` when set."""

    alerts: list[DriftAlert] = field(default_factory=list)
    error: BaseException | None = None
    seen: list[Any] = field(default_factory=list)

    def on_scored(self, row: Any, partition: int) -> list[DriftAlert]:
        return self._on(row)

    def on_sale(self, row: Any, partition: int) -> list[DriftAlert]:
        return self._on(row)

    processed: dict[str, int] = field(default_factory=dict)

    def _on(self, row: Any) -> list[DriftAlert]:
        if self.error is not None:
            raise self.error
        self.seen.append(row)
        return self.alerts

    def snapshot(self) -> dict[str, int]:
        return {"seen": len(self.seen)}


@dataclass
class FakeConsumer:
    """Commits, and hands out its records ``per_call`` at most at a time (the broker's
    pace for this topic)."""

    records: list[Any] = field(default_factory=list)
    per_call: int = 1000
    commits: list[Any] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.commits.append(offsets)

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.waits.append(timeout)
        batch = self.records[: min(num_messages, self.per_call)]
        del self.records[: len(batch)]
        return batch


@dataclass
class EndOfPartition:
    """The event confluent-kafka delivers when a partition has nothing more to read."""

    _topic: str
    _partition: int

    def error(self) -> KafkaError:
        return KafkaError(KafkaError._PARTITION_EOF)

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition


def alert() -> DriftAlert:
    return DriftAlert(
        kind=DriftKind.PERFORMANCE,
        severity=Severity.WARNING,
        window_start=T0,
        window_end=T0,
        window_size=1000,
        model_name="m",
        model_version="1",
    )


def service(monitor: FakeMonitor, producer: FakeProducer, store: FakeStore) -> MonitorService:
    """A MonitorService with fakes in place of Kafka, Redis and the monitor."""
    svc = object.__new__(MonitorService)
    svc.settings = Settings()
    svc.stop = threading.Event()
    svc.metrics = MonitorMetrics()
    svc.monitor = monitor  # type: ignore[assignment]  # a test fake in its place
    svc.producer = producer  # type: ignore[assignment]  # a test fake in its place
    svc.store = store  # type: ignore[assignment]  # a test fake in its place
    svc.topics = {PRICES_SCORED: PRICES_SCORED, AUCTIONS_SOLD: AUCTIONS_SOLD}
    svc.lease_name = "ns.gavel:monitor:lease"
    svc.held = None
    svc.partitions = {PRICES_SCORED: 2, AUCTIONS_SOLD: 2}
    svc.latest, svc.at_end = {}, set()
    svc.positions, svc.checkpointed = {}, {}
    svc.last_checkpoint = 0.0
    svc.unconfirmed, svc.failed = {}, []
    return svc


class FakeLease:
    """A held lease that the test can lose."""

    def __init__(self, token: str = "monitor@host:1/abc") -> None:
        self.token = token
        self.lost: str | None = None

    def check(self) -> None:
        if self.lost is not None:
            raise LeaseLost(f"lost the monitor lease: {self.lost}")


SALE = b'{"auction_id": "a", "sold_at": "2015-05-01T10:00:00Z", "sellingprice": 9000}'


def skipped(svc: MonitorService, source: str, reason: str) -> float | None:
    return svc.metrics.registry.get_sample_value(
        "gavel_monitor_skipped_total", {"source": source, "reason": reason}
    )


def test_a_bad_record_is_counted_and_its_offset_passed() -> None:
    svc = service(FakeMonitor(), FakeProducer(), FakeStore())
    svc._handle(FakeMessage(AUCTIONS_SOLD, b"{oops", 2, 41))  # type: ignore[arg-type]  # a test fake in its place
    assert skipped(svc, AUCTIONS_SOLD, "not_json") == 1
    assert svc.positions == {(AUCTIONS_SOLD, 2): 42}


def test_a_processing_error_is_counted_not_raised() -> None:
    svc = service(FakeMonitor(error=KeyError("bug")), FakeProducer(), FakeStore())
    svc._handle(FakeMessage(AUCTIONS_SOLD, SALE, 0, 7))  # type: ignore[arg-type]  # a test fake in its place
    assert skipped(svc, AUCTIONS_SOLD, "error") == 1
    assert svc.positions == {(AUCTIONS_SOLD, 0): 8}


def test_stopping_while_waiting_leaves_the_record_unread() -> None:
    svc = service(FakeMonitor(error=Stopping("mlflow")), FakeProducer(), FakeStore())
    with pytest.raises(Stopping):
        svc._handle(FakeMessage(AUCTIONS_SOLD, SALE, 0, 7))  # type: ignore[arg-type]  # a test fake in its place
    assert svc.positions == {}  # read again after the restart
    assert skipped(svc, AUCTIONS_SOLD, "error") == 0


def test_a_dependency_is_retried_with_backoff_until_it_answers() -> None:
    svc = service(FakeMonitor(), FakeProducer(), FakeStore())
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("mlflow down")
        return "reference"

    assert svc._patiently("mlflow", flaky) == "reference"
    waits = svc.metrics.registry.get_sample_value(
        "gavel_monitor_dependency_waits_total", {"dependency": "mlflow"}
    )
    assert waits == 2
    assert (
        svc.metrics.registry.get_sample_value("gavel_monitor_waiting_for", {"dependency": "mlflow"})
        == 0
    )


def test_a_stop_ends_a_dependency_wait() -> None:
    svc = service(FakeMonitor(), FakeProducer(), FakeStore())
    threading.Timer(0.2, svc.stop.set).start()

    def down() -> None:
        raise ConnectionError("mlflow down")

    with pytest.raises(Stopping):
        svc._patiently("mlflow", down)


def test_alerts_are_acknowledged_before_the_checkpoint_and_the_commit() -> None:
    producer, store = FakeProducer(failures=1), FakeStore(failures=1)
    svc = service(FakeMonitor(alerts=[alert()]), producer, store)
    consumer, other = FakeConsumer(), FakeConsumer()
    svc._handle(FakeMessage(AUCTIONS_SOLD, SALE, 1, 9))  # type: ignore[arg-type]  # a test fake in its place
    assert len(producer.produced) == 1 and svc.unconfirmed

    svc._checkpoint({AUCTIONS_SOLD: consumer, PRICES_SCORED: other})  # type: ignore[dict-item]  # test fakes in their place

    assert len(producer.produced) == 2  # the failed delivery was published again
    assert svc.unconfirmed == {} and svc.failed == []
    assert len(store.saved) == 1  # after one failed write
    checkpoint = decode(store.saved[0])
    assert checkpoint is not None
    assert checkpoint.positions == {(AUCTIONS_SOLD, 1): 10}
    assert checkpoint.state == {"seen": 1}
    (offsets,) = consumer.commits
    assert [(tp.topic, tp.partition, tp.offset) for tp in offsets] == [(AUCTIONS_SOLD, 1, 10)]
    assert other.commits == []  # each topic's consumer commits its own partitions
    assert svc.metrics.registry.get_sample_value("gavel_monitor_checkpoint_position") == 10


def test_nothing_new_writes_no_checkpoint() -> None:
    store = FakeStore()
    svc = service(FakeMonitor(), FakeProducer(), store)
    svc._checkpoint({AUCTIONS_SOLD: FakeConsumer()})  # type: ignore[dict-item]  # a test fake in its place
    assert store.saved == []


def test_a_checkpoint_is_fenced_by_the_held_lease() -> None:
    store = FakeStore()
    svc = service(FakeMonitor(), FakeProducer(), store)
    svc.held = FakeLease("monitor@host:7/xyz")  # type: ignore[assignment]  # a test fake in its place
    svc._handle(FakeMessage(AUCTIONS_SOLD, SALE, 0, 3))  # type: ignore[arg-type]  # a test fake in its place
    svc._checkpoint({AUCTIONS_SOLD: FakeConsumer()})  # type: ignore[dict-item]  # a test fake in its place
    assert store.fences == [Fence("ns.gavel:monitor:lease", "monitor@host:7/xyz")]


def test_a_lost_lease_stops_a_dependency_wait_at_once_and_writes_nothing() -> None:
    store = FakeStore(failures=100)  # Redis "down": a wait that would go on
    svc = service(FakeMonitor(), FakeProducer(), store)
    lease = FakeLease()
    svc.held = lease  # type: ignore[assignment]  # a test fake in its place
    svc._handle(FakeMessage(AUCTIONS_SOLD, SALE, 0, 3))  # type: ignore[arg-type]  # a test fake in its place
    threading.Timer(0.3, lambda: setattr(lease, "lost", "expired")).start()
    with pytest.raises(LeaseLost, match="expired"):
        svc._checkpoint({AUCTIONS_SOLD: FakeConsumer()})  # type: ignore[dict-item]  # a test fake in its place
    assert store.saved == []
    waits = svc.metrics.registry.get_sample_value(
        "gavel_monitor_dependency_waits_total", {"dependency": "redis"}
    )
    assert waits is not None and waits >= 1  # it was waiting when the lease went


def test_a_lost_lease_is_not_counted_as_a_bad_record() -> None:
    svc = service(FakeMonitor(error=LeaseLost("lost")), FakeProducer(), FakeStore())
    with pytest.raises(LeaseLost):
        svc._handle(FakeMessage(AUCTIONS_SOLD, SALE, 0, 7))  # type: ignore[arg-type]  # a test fake in its place
    assert svc.positions == {}
    assert skipped(svc, AUCTIONS_SOLD, "error") == 0


def test_a_batch_is_checked_against_one_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Clock:
            calls.append(1)
            return cls(2030, 1, 1, tzinfo=UTC)

    monkeypatch.setattr(service_module, "datetime", Clock)
    svc = service(FakeMonitor(), FakeProducer(), FakeStore())
    late = b'{"auction_id": "a", "sold_at": "2030-01-03T00:00:00Z", "sellingprice": 9000}'
    batch = [FakeMessage(AUCTIONS_SOLD, SALE, 0, n) for n in range(5)]
    svc._handle_batch([*batch, FakeMessage(AUCTIONS_SOLD, late, 0, 5)])  # type: ignore[list-item]  # test fakes in their place
    assert calls == [1]  # one clock reading for six records
    assert skipped(svc, AUCTIONS_SOLD, "event_time") == 1  # after that clock + 1 day
    assert svc.positions == {(AUCTIONS_SOLD, 0): 6}
    assert len(svc.monitor.seen) == 5  # type: ignore[attr-defined]  # the fake's records


# -- reading the two topics in step ----------------------------------------------------------

LISTINGS = 3000  # one a minute; each sells three hours later


def listing_stream() -> dict[str, list[FakeMessage]]:
    """Each topic's records in event-time order: a scored price a minute, and its sale."""
    records: dict[str, list[FakeMessage]] = {PRICES_SCORED: [], AUCTIONS_SOLD: []}
    for n in range(LISTINGS):
        listed = T0 + timedelta(minutes=n)
        listing = Listing(
            auction_id=f"a{n}", listed_at=listed, year=2012, make="Ford", model="Fusion"
        )
        scored = ScoredPrice(
            auction_id=listing.auction_id,
            predicted_price=9000.0,
            model_name="m",
            model_version="1",
            listed_at=listed,
            scored_at=listed,
            features=listing,
        ).to_json_bytes()
        sale = Sale(
            auction_id=listing.auction_id, sold_at=listed + timedelta(hours=3), sellingprice=9e3
        )
        for topic, value in ((PRICES_SCORED, scored), (AUCTIONS_SOLD, sale.to_json_bytes())):
            records[topic].append(FakeMessage(topic, value, n % 2, n // 2))
    return records


def read_all(
    monkeypatch: pytest.MonkeyPatch, order: Callable[[Any, Any, Any], list[str]] | None = None
) -> tuple[timedelta, int]:
    """Read both topics through the service, the sales served seven times faster; the
    largest event-time gap seen between the topics, and the records read."""
    svc = service(FakeMonitor(), FakeProducer(), FakeStore())
    stream = listing_stream()
    consumers = {
        PRICES_SCORED: FakeConsumer(stream[PRICES_SCORED], per_call=100),
        AUCTIONS_SOLD: FakeConsumer(stream[AUCTIONS_SOLD], per_call=700),
    }
    if order is not None:
        monkeypatch.setattr(service_module, "reading_order", order)
    gap, read = timedelta(0), 0
    while batch := svc._next_batch(consumers, timeout_s=0):  # type: ignore[arg-type]  # test fakes in their place
        svc._handle_batch(batch)
        read += len(batch)
        times = [
            min(svc.latest.get((topic, p), T0) for p in range(2)) for topic in consumers
        ]  # each topic's slowest partition
        gap = max(gap, max(times) - min(times))
    return gap, read


def test_the_topic_behind_in_event_time_is_read_first(monkeypatch: pytest.MonkeyPatch) -> None:
    gap, read = read_all(monkeypatch)
    assert read == 2 * LISTINGS  # every record, once
    # Within one batch of the faster topic (700 minutes), plus the three hours of delay.
    assert gap <= timedelta(minutes=700) + timedelta(hours=3), gap
    # The broker's pace alone (the sales' consumer first, whatever the time) would not be.
    unaligned, read = read_all(monkeypatch, lambda latest, at_end, topics: sorted(topics))
    assert read == 2 * LISTINGS
    assert unaligned > timedelta(hours=30), unaligned


def test_the_topic_behind_gets_a_short_wait_the_other_none() -> None:
    svc = service(FakeMonitor(), FakeProducer(), FakeStore())
    svc.latest = {(PRICES_SCORED, p): T0 for p in range(2)}
    svc.latest |= {(AUCTIONS_SOLD, p): T0 + timedelta(hours=1) for p in range(2)}
    behind, ahead = FakeConsumer([], per_call=10), FakeConsumer([FakeMessage(AUCTIONS_SOLD, SALE)])
    consumers = {AUCTIONS_SOLD: ahead, PRICES_SCORED: behind}
    assert len(svc._next_batch(consumers, timeout_s=0.5)) == 1  # type: ignore[arg-type]  # test fakes in their place
    assert behind.waits == [service_module.BEHIND_WAIT_S] and ahead.waits == [0]
    svc._next_batch(consumers, timeout_s=0.5)  # type: ignore[arg-type]  # test fakes in their place
    assert behind.waits[-1] == 0.5  # nothing anywhere: wait for the topic behind


def test_a_partition_at_its_end_stops_holding_its_topic_back() -> None:
    svc = service(FakeMonitor(), FakeProducer(), FakeStore())
    late = b'{"auction_id": "b", "sold_at": "2015-05-09T10:00:00Z", "sellingprice": 9000}'
    svc._handle_batch(
        [
            FakeMessage(AUCTIONS_SOLD, SALE, 0, 0),  # 2015-05-01
            FakeMessage(AUCTIONS_SOLD, late, 1, 0),
            FakeMessage(PRICES_SCORED, b"{}", 0, 0),  # skipped: no event time
        ]  # type: ignore[list-item]  # test fakes in their place
    )
    order = service_module.reading_order
    assert order(svc.latest, svc.at_end, svc.partitions) == [PRICES_SCORED, AUCTIONS_SOLD]
    svc._handle_batch(
        [EndOfPartition(PRICES_SCORED, p) for p in range(2)] + [EndOfPartition(AUCTIONS_SOLD, 0)]  # type: ignore[list-item]  # test fakes in their place
    )
    assert svc.at_end == {(PRICES_SCORED, 0), (PRICES_SCORED, 1), (AUCTIONS_SOLD, 0)}
    assert order(svc.latest, svc.at_end, svc.partitions) == [AUCTIONS_SOLD, PRICES_SCORED]
    svc._handle(FakeMessage(AUCTIONS_SOLD, SALE, 0, 1))  # type: ignore[arg-type]  # a test fake in its place
    assert (AUCTIONS_SOLD, 0) not in svc.at_end  # reading again
