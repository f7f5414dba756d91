"""Helpers for tests that run Gavel services as real processes against the real stack."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from confluent_kafka import Consumer, TopicPartition

from gavel.settings import Settings
from shell.kafka import consumer_config
from shell.stack.components import MLflow
from shell.stack.process import ManagedProcess, start_gavel, wait_until


@dataclass(frozen=True)
class Record:
    key: str | None
    value: bytes
    partition: int
    offset: int

    def json(self) -> dict:
        return orjson.loads(self.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def service(
    name: str,
    args: Sequence[str],
    settings: Settings,
    workdir: Path,
    ready: Callable[[], bool] | None = None,
    timeout_s: float = 90.0,
) -> Iterator[ManagedProcess]:
    """Run ``gavel <args>`` as a child process with ``settings``; stop it afterwards."""
    process = start_gavel(name, args, settings, workdir)
    try:
        if ready is not None:
            deadline = time.monotonic() + timeout_s
            while not ready():
                if process.pid() is None:
                    raise RuntimeError(f"{name} exited:\n{process.log_tail(40)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready in {timeout_s}s:\n{process.log_tail(40)}")
                time.sleep(0.5)
        yield process
    except BaseException:
        # The service's own account of what happened is what one needs to see first.
        print(f"\n--- {name} log, last 80 lines ---\n{process.log_tail(80)}")
        raise
    finally:
        process.stop()


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def consume(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[Record]], bool],
    timeout_s: float = 60.0,
) -> list[Record]:
    """Every record of ``topic`` from the beginning, until ``until(records)`` or the timeout."""
    consumer = Consumer(
        consumer_config(settings, f"{settings.group('test-reader')}-{uuid.uuid4().hex[:6]}")
    )
    consumer.subscribe([settings.topic(topic)])
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(records):
            for message in consumer.consume(1000, timeout=0.5):
                if message.error():
                    continue
                key = message.key().decode() if message.key() else None
                records.append(Record(key, message.value(), message.partition(), message.offset()))
    finally:
        consumer.close()
    return records


def end_offsets(settings: Settings, topic: str) -> int:
    """How many records ``topic`` holds (sum of high watermarks)."""
    consumer = Consumer(consumer_config(settings, settings.group("test-watermarks")))
    try:
        metadata = consumer.list_topics(settings.topic(topic), timeout=10)
        total = 0
        for partition in metadata.topics[settings.topic(topic)].partitions:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(settings.topic(topic), partition), timeout=10
            )
            total += high
        return total
    finally:
        consumer.close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus endpoint's samples, keyed by (name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def wait_for(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    progress: Callable[[], object] | None = None,
    ceiling_s: float | None = None,
) -> None:
    """Wait until ``check()``; fail after ``timeout_s`` without it.

    With ``progress``, the wait follows the services' own signals instead of the clock:
    each time ``progress()`` changes (offsets moving, a status changing) the timeout
    starts again, so a slow, loaded machine is not mistaken for a stuck service, up to
    ``ceiling_s`` (default five timeouts) in all.
    """
    started = time.monotonic()
    ceiling = started + (ceiling_s if ceiling_s is not None else 5 * timeout_s)
    deadline = started + timeout_s
    last = progress() if progress is not None else None
    while not check():
        now = time.monotonic()
        if progress is not None:
            current = progress()
            if current != last:
                last, deadline = current, now + timeout_s
        if now > min(deadline, ceiling):
            idle = "" if progress is None else f", last progress: {last!r}"
            raise TimeoutError(f"timed out after {now - started:.0f}s waiting for {what}{idle}")
        time.sleep(0.5)


class ThrowawayMlflow:
    """An MLflow server of our own on a free port (sqlite in a temporary directory), as
    the stack runs it; stopping and starting it again keeps its registry."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        settings = Settings(stack={"dir": workdir / f"mlflow-{self.port}"}, mlflow_port=self.port)
        self.server = MLflow(settings)
        self.server.prepare()
        self.process = self.server.process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180) -> None:
        self.server.start()
        assert wait_until(self.healthy, timeout_s, interval_s=0.5), self.process.log_tail(30)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.process.stop(timeout_s=20)
        assert wait_until(lambda: not self.healthy(), 10)
