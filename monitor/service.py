"""`gavel monitor`: the Kafka side of the monitor.

It reads ``prices.scored`` and ``auctions.sold`` in one consumer group (run one monitor
per namespace: windows are global), follows ``models.updates`` (and polls the champion
alias as a fallback), publishes alerts to ``drift.alerts`` keyed by kind, and serves
Prometheus metrics.

Recovery: every ``checkpoint_interval_s`` the monitor first waits until the broker has
acknowledged every alert published so far, then writes its whole state together with
the offsets it covers to Redis in one ``SET`` (:mod:`monitor.checkpoint`), and only then
commits those offsets to Kafka. On start it restores the checkpoint and seeks to its
offsets, so the records read after the checkpoint are read again and rebuild the same
windows: a crash repeats work (and alerts, under the same deterministic ids, which the
trainer ignores) but loses none.

Every record is parsed with its contract schema (:mod:`monitor.records`); one that does
not parse is skipped and counted by reason. While MLflow (a reference), Redis (the
checkpoint) or Kafka (alert delivery) fails, the monitor waits with exponential backoff,
saying so in its logs and metrics, instead of skipping what it cannot process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import start_http_server
from tenacity import RetryCallState, RetryError, Retrying, stop_when_event_set, wait_exponential

from gavel.schemas import DriftAlert
from gavel.settings import Settings
from gavel.topics import AUCTIONS_SOLD, DRIFT_ALERTS, PRICES_SCORED
from monitor.checkpoint import Checkpoint, CheckpointStore, Positions, checkpoint_key, encode
from monitor.core import Monitor
from monitor.metrics import MonitorMetrics
from monitor.records import Skipped, SkipReason, parse_sale, parse_scored
from monitor.reference import Reference, ReferenceCache
from monitor.reports import ReportWriter
from shell import redis_client
from shell.kafka import admin_client, consumer_config, produce_waiting, producer_config
from shell.shutdown import stop_on_signals
from shell.updates import UpdateFollower

log = logging.getLogger(__name__)

POLL_ALIAS_S = 30.0
FLUSH_S = 10.0
T = TypeVar("T")


class Stopping(Exception):
    """Raised out of a dependency wait when the service is asked to stop."""


class AlertsUnconfirmed(Exception):
    """Some published alerts are not acknowledged by the broker yet."""


class MonitorService:
    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.metrics = MonitorMetrics()
        self.references = ReferenceCache(settings)
        self.monitor = Monitor(
            settings,
            self._load_reference,
            self.metrics,
            ReportWriter(settings.reports_dir),
            partitions=(
                partition_count(settings, settings.topic(PRICES_SCORED)),
                partition_count(settings, settings.topic(AUCTIONS_SOLD)),
            ),
        )
        self.producer = Producer(producer_config(settings))
        self.store = CheckpointStore(
            redis_client.connect(settings, timeout_s=10), checkpoint_key(settings)
        )
        self.topics = {
            settings.topic(PRICES_SCORED): PRICES_SCORED,
            settings.topic(AUCTIONS_SOLD): AUCTIONS_SOLD,
        }
        self.positions: Positions = {}  # next offset to read, of every record processed
        self.checkpointed: Positions = {}
        self.last_checkpoint = time.monotonic()
        self.unconfirmed: dict[str, DriftAlert] = {}  # published, not acknowledged yet
        self.failed: list[str] = []  # alert ids whose delivery failed: to publish again

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        s = self.settings
        start_http_server(s.monitor_metrics_port, addr=s.bind_host, registry=self.metrics.registry)
        log.info("metrics at http://%s:%d/metrics", s.host, s.monitor_metrics_port)
        consumer: Consumer | None = None
        updates = UpdateFollower(s, "monitor")
        clean = False
        try:
            self._restore()
            self._follow_champion()
            # A monitor killed and restarted gets its partitions back after the session
            # timeout: 10 s rather than librdkafka's 45 s.
            consumer = Consumer(
                consumer_config(s, s.group("monitor"), **{"session.timeout.ms": 10_000})
            )
            consumer.subscribe(list(self.topics), on_assign=self._on_assign)
            last_poll = time.monotonic()
            while not self.stop.is_set():
                for message in consumer.consume(1000, timeout=0.5):
                    self._handle(message)
                for version in updates.poll():
                    self._use(version, "models.updates")
                if time.monotonic() - last_poll > POLL_ALIAS_S:
                    self._follow_champion()
                    last_poll = time.monotonic()
                self.producer.poll(0)
                if time.monotonic() - self.last_checkpoint >= s.monitor.checkpoint_interval_s:
                    self._checkpoint(consumer)
            clean = True
        except Stopping:
            log.info("stopped while waiting for a dependency; the last checkpoint stands")
        finally:
            if clean and consumer is not None:
                try:  # one attempt: the stop event ends every wait
                    self._checkpoint(consumer)
                except Exception:
                    log.exception("no final checkpoint; the next start repeats from the last one")
            if consumer is not None:
                consumer.close()
            updates.close()
            self.producer.flush(FLUSH_S)
            log.info(
                "monitor stopped; %s; join %s",
                dict(self.monitor.counts),
                self.monitor.join.counters,
            )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Resume each partition after the last record processed (restored or in memory)."""
        for tp in partitions:
            offset = self.positions.get((tp.topic, tp.partition))
            if offset is not None:
                tp.offset = offset
        consumer.assign(partitions)

    # -- records --------------------------------------------------------------------------

    def _handle(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        # A consumed record (not an error) always has all three.
        assert topic is not None and partition is not None and offset is not None
        source = self.topics[topic]
        try:
            self._process(source, message.value(), partition)
        except Stopping:
            raise
        except Exception as exc:  # a bug on one record must stop neither monitoring nor commits
            log.exception("could not process the %s record at %d/%d", source, partition, offset)
            self._skip(source, Skipped(SkipReason.ERROR, repr(exc)), partition, offset)
        self.positions[(topic, partition)] = offset + 1

    def _process(self, source: str, value: bytes | None, partition: int) -> None:
        now = datetime.now(UTC)
        if source == PRICES_SCORED:
            scored = parse_scored(value, now)
            if isinstance(scored, Skipped):
                return self._skip(source, scored, partition)
            alerts = self.monitor.on_scored(scored, partition)
        else:
            sale = parse_sale(value, now)
            if isinstance(sale, Skipped):
                return self._skip(source, sale, partition)
            alerts = self.monitor.on_sale(sale, partition)
        for alert in alerts:
            self.unconfirmed[alert.alert_id] = alert
            self._produce(alert)

    def _skip(self, source: str, skipped: Skipped, partition: int, offset: int = -1) -> None:
        self.metrics.skipped.labels(source=source, reason=skipped.reason.value).inc()
        log.warning(
            "skipped a record of %s (partition %d, offset %d): %s: %s",
            source,
            partition,
            offset,
            skipped.reason.value,
            skipped.detail[:200],
        )

    # -- alerts ---------------------------------------------------------------------------

    def _produce(self, alert: DriftAlert) -> None:
        produce_waiting(
            self.producer,
            self.settings.topic(DRIFT_ALERTS),
            alert.to_json_bytes(),
            alert.kind.value.encode(),
            on_delivery=functools.partial(self._delivered, alert.alert_id),
        )
        self.producer.poll(0)

    def _delivered(self, alert_id: str, error: KafkaError | None, _: Message) -> None:
        if error is None:
            self.unconfirmed.pop(alert_id, None)
        else:
            log.warning("alert %s not delivered: %s; will publish it again", alert_id, error)
            self.failed.append(alert_id)

    def _confirm_alerts(self) -> None:
        """Return once the broker has acknowledged every alert published so far."""

        def attempt() -> None:
            self.producer.flush(FLUSH_S)
            failed, self.failed = self.failed, []
            for alert_id in failed:
                if alert_id in self.unconfirmed:
                    self._produce(self.unconfirmed[alert_id])
            if self.unconfirmed:
                raise AlertsUnconfirmed(f"{len(self.unconfirmed)} alerts not acknowledged")

        if self.unconfirmed or self.failed:
            self._patiently("kafka", attempt)

    # -- checkpoints ----------------------------------------------------------------------

    def _checkpoint(self, consumer: Consumer) -> None:
        """Confirm the alerts, then write the state with its offsets, then commit them."""
        self.last_checkpoint = time.monotonic()
        if self.positions == self.checkpointed:
            return
        started = time.monotonic()
        self._confirm_alerts()
        checkpoint = Checkpoint(dict(self.positions), self.monitor.snapshot())
        blob = encode(checkpoint)
        self._patiently("redis", lambda: self.store.save(blob))
        self.checkpointed = checkpoint.positions
        self.metrics.checkpoints.inc()
        self.metrics.checkpoint_bytes.set(len(blob))
        self.metrics.checkpoint_seconds.set(time.monotonic() - started)
        self.metrics.checkpoint_position.set(checkpoint.covered)
        offsets = [TopicPartition(t, p, o) for (t, p), o in checkpoint.positions.items()]
        with contextlib.suppress(KafkaException):  # informational: lag dashboards read it
            consumer.commit(offsets=offsets, asynchronous=True)

    def _restore(self) -> None:
        checkpoint = self._patiently("redis", self.store.load)
        if checkpoint is None:
            log.info("no checkpoint: starting from the committed offsets with an empty state")
            return
        self.monitor.restore(checkpoint.state)
        self.positions = dict(checkpoint.positions)
        self.checkpointed = dict(checkpoint.positions)
        self.metrics.checkpoint_position.set(checkpoint.covered)
        self.metrics.restored_position.set(checkpoint.covered)
        log.info(
            "restored the checkpoint of %s: %d records covered, reference v%s",
            datetime.fromtimestamp(checkpoint.saved_at, UTC).isoformat(timespec="seconds"),
            checkpoint.covered,
            checkpoint.state.version,
        )

    # -- dependencies ---------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        """A backoff sleep that a stop cuts short."""
        self.stop.wait(seconds)

    def _patiently(self, dependency: str, call: Callable[[], T]) -> T:
        """``call()``, retried with exponential backoff until it succeeds or we stop."""

        def waiting(state: RetryCallState) -> None:
            self.metrics.dependency_waits.labels(dependency=dependency).inc()
            self.metrics.waiting_for.labels(dependency=dependency).set(1)
            assert state.outcome is not None and state.next_action is not None
            log.warning(
                "waiting for %s (attempt %d, next in %.1fs): %s",
                dependency,
                state.attempt_number,
                state.next_action.sleep,
                state.outcome.exception(),
            )

        retrying = Retrying(
            wait=wait_exponential(multiplier=0.5, max=30),
            stop=stop_when_event_set(self.stop),
            before_sleep=waiting,
            sleep=self._sleep,
        )
        try:
            return retrying(call)
        except RetryError as exc:
            raise Stopping(dependency) from exc
        finally:
            self.metrics.waiting_for.labels(dependency=dependency).set(0)

    def _load_reference(self, version: str) -> Reference:
        return self._patiently("mlflow", lambda: self.references.get(version))

    # -- champion changes -----------------------------------------------------------------

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
        try:  # one attempt: the alias poll tries again later, and old windows go on meanwhile
            self.references.get(version)
        except Exception:
            log.exception("could not load the reference of v%s; keeping v%s", version, current)
            return
        self.monitor.use_version(version)  # now from the cache
        log.info("reference switched to v%s (was v%s; %s)", version, current, why)


def partition_count(settings: Settings, topic: str) -> int:
    metadata = admin_client(settings).list_topics(topic, timeout=30)
    partitions = metadata.topics[topic].partitions
    if not partitions:
        raise RuntimeError(f"topic {topic} does not exist; run `gavel stack up` first")
    return len(partitions)


def run_monitor(settings: Settings) -> None:
    """Run in the foreground until SIGINT/SIGTERM."""
    MonitorService(settings, stop_on_signals()).run()
