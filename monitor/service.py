"""`gavel monitor`: the Kafka side of the monitor.

It reads ``prices.scored`` and ``auctions.sold`` in one consumer group (run one monitor
per namespace: windows are global), follows ``models.updates`` (and polls the champion
alias as a fallback), publishes alerts to ``drift.alerts`` keyed by kind, and serves
Prometheus metrics. Offsets are committed after each processed batch (at-least-once):
after a crash the windows in progress are rebuilt from the uncommitted events.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter

import orjson
from confluent_kafka import Consumer, KafkaException, Message, Producer
from prometheus_client import start_http_server

from gavel.kafka import admin_client, consumer_config, producer_config
from gavel.schemas import DriftAlert
from gavel.settings import Settings
from gavel.shutdown import stop_on_signals
from gavel.topics import AUCTIONS_SOLD, DRIFT_ALERTS, PRICES_SCORED
from gavel.updates import new_champion, updates_consumer
from monitor.core import Monitor
from monitor.metrics import MonitorMetrics
from monitor.reference import ReferenceCache
from monitor.reports import ReportWriter

log = logging.getLogger(__name__)

POLL_ALIAS_S = 30.0


class MonitorService:
    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.metrics = MonitorMetrics()
        self.references = ReferenceCache(settings)
        self.monitor = Monitor(
            settings,
            self.references.get,
            self.metrics,
            ReportWriter(settings.reports_dir),
            partitions=(
                partition_count(settings, settings.topic(PRICES_SCORED)),
                partition_count(settings, settings.topic(AUCTIONS_SOLD)),
            ),
        )
        self.producer = Producer(producer_config(settings))
        self.skipped: Counter[str] = Counter()
        self.topics = {
            settings.topic(PRICES_SCORED): PRICES_SCORED,
            settings.topic(AUCTIONS_SOLD): AUCTIONS_SOLD,
        }

    def run(self) -> None:
        s = self.settings
        start_http_server(s.monitor_metrics_port, addr=s.bind_host, registry=self.metrics.registry)
        log.info("metrics at http://%s:%d/metrics", s.host, s.monitor_metrics_port)
        self._follow_champion()
        consumer = Consumer(consumer_config(s, s.group("monitor")))
        consumer.subscribe(list(self.topics))
        updates = updates_consumer(s, "monitor")
        last_poll = time.monotonic()
        try:
            while not self.stop.is_set():
                messages = consumer.consume(1000, timeout=0.5)
                for message in messages:
                    self._handle(message)
                if messages:
                    consumer.commit(asynchronous=True)
                for message in updates.consume(10, timeout=0):
                    self._handle_update(message)
                if time.monotonic() - last_poll > POLL_ALIAS_S:
                    self._follow_champion()
                    last_poll = time.monotonic()
                self.producer.poll(0)
        finally:
            self.producer.flush(30)
            with contextlib.suppress(KafkaException):  # nothing consumed: nothing to commit
                consumer.commit(asynchronous=False)
            consumer.close()
            updates.close()
            log.info(
                "monitor stopped; %s; join %s",
                dict(self.monitor.counts),
                self.monitor.join.counters,
            )

    def _handle(self, message: Message) -> None:
        if message.error():
            log.warning("consumer error: %s", message.error())
            return
        source = self.topics.get(message.topic())
        try:
            payload = orjson.loads(message.value())
            if source == PRICES_SCORED:
                alerts = self.monitor.on_scored(payload, message.partition())
            else:
                alerts = self.monitor.on_sale(payload, message.partition())
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self.skipped[type(exc).__name__] += 1
            log.warning(
                "skipping unreadable %s event at %d/%d: %s",
                source,
                message.partition(),
                message.offset(),
                exc,
            )
            return
        for alert in alerts:
            self.publish(alert)

    def publish(self, alert: DriftAlert) -> None:
        self.producer.produce(
            self.settings.topic(DRIFT_ALERTS),
            key=alert.kind.value.encode(),
            value=alert.to_json_bytes(),
        )
        self.producer.poll(0)

    def _handle_update(self, message: Message) -> None:
        if message.error():
            return
        version = new_champion(message.value(), self.settings.model_name)
        if version is not None:
            self._use(version, "models.updates")

    def _follow_champion(self) -> None:
        try:
            version = self.references.champion_version()
        except Exception as exc:
            log.warning("could not read the champion alias: %s", exc)
            return
        if version is not None:
            self._use(version, "alias")

    def _use(self, version: str, why: str) -> None:
        current = self.monitor.reference.version if self.monitor.reference else None
        if version == current:
            return
        try:
            self.monitor.use_version(version)
            log.info("reference switched to v%s (was v%s; %s)", version, current, why)
        except Exception:
            log.exception("could not load the reference of v%s; keeping v%s", version, current)


def partition_count(settings: Settings, topic: str) -> int:
    metadata = admin_client(settings).list_topics(topic, timeout=30)
    partitions = metadata.topics[topic].partitions
    if not partitions:
        raise RuntimeError(f"topic {topic} does not exist; run `gavel stack up` first")
    return len(partitions)


def run_monitor(settings: Settings) -> None:
    """Run in the foreground until SIGINT/SIGTERM."""
    MonitorService(settings, stop_on_signals()).run()
