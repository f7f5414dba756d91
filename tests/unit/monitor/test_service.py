"""Tests for the record, alert and checkpoint handling of monitor.service, with fakes for
Kafka and Redis (the real ones are in tests/e2e/test_monitor.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from gavel.schemas import DriftAlert, DriftKind, Severity
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
    commits: list[Any] = field(default_factory=list)

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.commits.append(offsets)


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
    consumer = FakeConsumer()
    svc._handle(FakeMessage(AUCTIONS_SOLD, SALE, 1, 9))  # type: ignore[arg-type]  # a test fake in its place
    assert len(producer.produced) == 1 and svc.unconfirmed

    svc._checkpoint(consumer)  # type: ignore[arg-type]  # a test fake in its place

    assert len(producer.produced) == 2  # the failed delivery was published again
    assert svc.unconfirmed == {} and svc.failed == []
    assert len(store.saved) == 1  # after one failed write
    checkpoint = decode(store.saved[0])
    assert checkpoint is not None
    assert checkpoint.positions == {(AUCTIONS_SOLD, 1): 10}
    assert checkpoint.state == {"seen": 1}
    (offsets,) = consumer.commits
    assert [(tp.topic, tp.partition, tp.offset) for tp in offsets] == [(AUCTIONS_SOLD, 1, 10)]
    assert svc.metrics.registry.get_sample_value("gavel_monitor_checkpoint_position") == 10


def test_nothing_new_writes_no_checkpoint() -> None:
    store = FakeStore()
    svc = service(FakeMonitor(), FakeProducer(), store)
    svc._checkpoint(FakeConsumer())  # type: ignore[arg-type]  # a test fake in its place
    assert store.saved == []


def test_a_checkpoint_is_fenced_by_the_held_lease() -> None:
    store = FakeStore()
    svc = service(FakeMonitor(), FakeProducer(), store)
    svc.held = FakeLease("monitor@host:7/xyz")  # type: ignore[assignment]  # a test fake in its place
    svc._handle(FakeMessage(AUCTIONS_SOLD, SALE, 0, 3))  # type: ignore[arg-type]  # a test fake in its place
    svc._checkpoint(FakeConsumer())  # type: ignore[arg-type]  # a test fake in its place
    assert store.fences == [Fence("ns.gavel:monitor:lease", "monitor@host:7/xyz")]


def test_a_lost_lease_stops_a_dependency_wait_at_once_and_writes_nothing() -> None:
    store = FakeStore(failures=100)  # Redis "down": a wait that would go on
    svc = service(FakeMonitor(), FakeProducer(), store)
    lease = FakeLease()
    svc.held = lease  # type: ignore[assignment]  # a test fake in its place
    svc._handle(FakeMessage(AUCTIONS_SOLD, SALE, 0, 3))  # type: ignore[arg-type]  # a test fake in its place
    threading.Timer(0.3, lambda: setattr(lease, "lost", "expired")).start()
    with pytest.raises(LeaseLost, match="expired"):
        svc._checkpoint(FakeConsumer())  # type: ignore[arg-type]  # a test fake in its place
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
