"""`gavel monitor`: the Kafka side of the monitor.

It reads every partition of ``prices.scored`` and ``auctions.sold``, in batches,
follows ``models.updates`` (and polls the champion alias as a fallback), publishes
alerts to ``drift.alerts`` keyed by kind, and serves Prometheus metrics.

One monitor per namespace, enforced: windows are global (event time across all
partitions), so two monitors splitting the partitions would both compute wrong windows
and overwrite each other's checkpoint. A monitor reads only while it holds the
namespace's Redis lease (:mod:`shell.lease`, key :func:`monitor.checkpoint.lease_key`,
``GAVEL_MONITOR__LEASE_TTL_S``). A second monitor does not exit (under
``docker compose --scale monitor=2`` or a restart policy, exiting would be a crash
loop, and no replica would be left to take over): it waits as a standby, logs which
monitor holds the lease (role, host and pid), exports ``gavel_monitor_lease_held 0``,
tries again every fifth of the TTL, and takes over when the holder stops: at once after
a clean stop (which releases the lease after its last checkpoint), within the TTL after
a kill -9. It then starts from the last checkpoint, as any restart does. A monitor that
loses its lease (Redis unreachable past the TTL, a long pause) stops reading, drops its
state and waits as a standby again; its checkpoint writes are fenced by the lease
(:class:`monitor.checkpoint.Fence`), so it can never overwrite the new holder's. The
partitions are assigned, not subscribed: no consumer-group rebalance delays a takeover.

The two topics are read in step in event time: each has its own consumer, and every
batch comes from the topic that is behind (:func:`reading_order`: the one whose slowest
partition still reading is the earliest; end-of-partition events tell which partitions
have nothing left to read). One consumer for
both would serve a backlog at the broker's pace, which favours the topic of smaller
records, and the other topic's events would fill the join up to its bound and be
evicted: measured before this, on 1M events, 296,314 of 500,000 predictions were
evicted before their sale came. Choosing a consumer costs nothing (each keeps
prefetching), where pausing partitions would drop and refetch what they prefetched.

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
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from confluent_kafka import (
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import start_http_server
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_not_exception_type,
    stop_when_event_set,
    wait_exponential,
)

from gavel.schemas import DriftAlert
from gavel.settings import Settings
from gavel.topics import AUCTIONS_SOLD, DRIFT_ALERTS, PRICES_SCORED
from monitor.checkpoint import (
    Checkpoint,
    CheckpointStore,
    Fence,
    Positions,
    checkpoint_key,
    encode,
    lease_key,
)
from monitor.core import Monitor
from monitor.metrics import MonitorMetrics
from monitor.records import Skipped, SkipReason, parse_sale, parse_scored
from monitor.reference import Reference, ReferenceCache
from monitor.reports import ReportWriter
from shell import redis_client
from shell.kafka import admin_client, consumer_config, produce_waiting, producer_config
from shell.lease import Lease, LeaseLost, current_holder, holder_token
from shell.shutdown import stop_on_signals
from shell.updates import UpdateFollower

log = logging.getLogger(__name__)

POLL_ALIAS_S = 30.0
FLUSH_S = 10.0
#: Bytes per partition per fetch (librdkafka: 1 MiB): a fetch of one partition is what
#: can run ahead of the rest in one go; 1 MiB is ~10,000 sales, days of event time.
FETCH_BYTES = 256 * 1024
#: Prefetched per consumer (librdkafka: 64 MiB): 16 MiB is half a second of scores at
#: 30,000 events/s; alternating runs showed no difference in speed, 55 MB less RSS.
QUEUE_KBYTES = 16 * 1024
#: How long the topic behind may take to deliver before the other one is read.
BEHIND_WAIT_S = 0.05
#: Records per consume call: large batches keep the per-call overhead (the loop's
#: polls, the clock) off the per-record cost; at 30,000 records/s one takes ~0.1 s.
BATCH = 5000
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
        self.topics = {
            settings.topic(PRICES_SCORED): PRICES_SCORED,
            settings.topic(AUCTIONS_SOLD): AUCTIONS_SOLD,
        }
        self.partitions = {topic: partition_count(settings, topic) for topic in self.topics}
        self.producer = Producer(producer_config(settings))
        self.redis = redis_client.connect(settings, timeout_s=10)
        self.store = CheckpointStore(self.redis, checkpoint_key(settings))
        self.lease_name = lease_key(settings)
        self.held: Lease | None = None  # the lease, while this monitor holds it
        self._new_tenure()

    def _new_tenure(self) -> None:
        """A fresh monitor and bookkeeping: what each hold of the lease starts from
        (before the checkpoint is restored)."""
        previous = getattr(self, "monitor", None)
        s = self.settings
        self.monitor = Monitor(
            s,
            self._load_reference,
            self.metrics,
            ReportWriter(s.reports_dir),
            partitions=(
                self.partitions[s.topic(PRICES_SCORED)],
                self.partitions[s.topic(AUCTIONS_SOLD)],
            ),
        )
        if previous is not None:  # the process's counters go on (they are not state)
            self.monitor.processed = previous.processed
        self.positions: Positions = {}  # next offset to read, of every record processed
        self.checkpointed: Positions = {}
        self.last_checkpoint = time.monotonic()
        self.unconfirmed: dict[str, DriftAlert] = {}  # published, not acknowledged yet
        self.failed: list[str] = []  # alert ids whose delivery failed: to publish again
        # Reading in step: the latest event time read from each partition, and the
        # partitions at the end of their log.
        self.latest: dict[tuple[str, int], datetime] = {}
        self.at_end: set[tuple[str, int]] = set()

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        s = self.settings
        start_http_server(s.monitor_metrics_port, addr=s.bind_host, registry=self.metrics.registry)
        log.info("metrics at http://%s:%d/metrics", s.host, s.monitor_metrics_port)
        updates = UpdateFollower(s, "monitor")
        try:
            while not self.stop.is_set():
                self.held = self._await_lease()
                try:
                    self._serve(self.held, updates)
                except LeaseLost as exc:
                    log.error(
                        "%s: stopped reading; the state since the last checkpoint is dropped "
                        "and this monitor waits to hold the lease again",
                        exc,
                    )
                    self._new_tenure()
                finally:
                    self.held.release()
                    self.held = None
                    self.metrics.lease_held.set(0)
        except Stopping:
            log.info(
                "stopped while waiting for a dependency or the lease; the last checkpoint stands"
            )
        finally:
            updates.close()
            self.producer.flush(FLUSH_S)
            log.info(
                "monitor stopped; %s; join %s",
                dict(self.monitor.counts),
                self.monitor.join.counters,
            )

    def _serve(self, held: Lease, updates: UpdateFollower) -> None:
        """Read and monitor while ``held`` holds: until a stop (then checkpoint) or until
        the lease is lost (:class:`LeaseLost`, no checkpoint)."""
        s = self.settings
        consumers: dict[str, Consumer] = {}
        clean = False
        try:
            self._restore()
            self._follow_champion()
            # End-of-partition events tell which partitions have nothing left to read.
            config = consumer_config(
                s,
                s.group("monitor"),
                **{
                    "enable.partition.eof": True,
                    "max.partition.fetch.bytes": FETCH_BYTES,
                    "queued.max.messages.kbytes": QUEUE_KBYTES,
                },
            )
            for topic in self.topics:
                consumers[topic] = Consumer(config)
                consumers[topic].assign(self._assignment(topic))
            last_poll = time.monotonic()
            while not self.stop.is_set():
                held.check()
                self._handle_batch(self._next_batch(consumers, timeout_s=0.5))
                for version in updates.poll():
                    self._use(version, "models.updates")
                if time.monotonic() - last_poll > POLL_ALIAS_S:
                    self._follow_champion()
                    last_poll = time.monotonic()
                self.producer.poll(0)
                if time.monotonic() - self.last_checkpoint >= s.monitor.checkpoint_interval_s:
                    self._checkpoint(consumers)
            clean = True
        finally:
            if clean and consumers:
                try:  # one attempt: the stop event ends every wait
                    self._checkpoint(consumers)
                except Exception:
                    log.exception("no final checkpoint; the next start repeats from the last one")
            for consumer in consumers.values():
                consumer.close()

    def _assignment(self, topic: str) -> list[TopicPartition]:
        """Every partition of ``topic``, each at the position after the last record
        processed (the restored checkpoint's), else at the group's committed offset."""
        return [
            TopicPartition(topic, partition, self.positions.get((topic, partition), OFFSET_STORED))
            for partition in range(self.partitions[topic])
        ]

    def _next_batch(self, consumers: Mapping[str, Consumer], timeout_s: float) -> list[Message]:
        """The next records, from the topic behind in event time if it has any ready
        (within BEHIND_WAIT_S), else from the next one; waits up to ``timeout_s`` for
        the topic behind when none has any."""
        order = reading_order(self.latest, self.at_end, {t: self.partitions[t] for t in consumers})
        for rank, topic in enumerate(order):
            messages = consumers[topic].consume(BATCH, timeout=BEHIND_WAIT_S if rank == 0 else 0)
            if messages:
                return messages
        return consumers[order[0]].consume(BATCH, timeout=timeout_s)

    # -- the lease --------------------------------------------------------------------------

    def _await_lease(self) -> Lease:
        """Wait as a standby until this monitor holds the namespace's lease."""
        ttl = self.settings.monitor.lease_ttl_s
        held = Lease(
            self.redis, self.lease_name, ttl, holder_token("monitor"), what="monitor lease"
        )
        told: str | None = None
        while True:
            if self._patiently("redis", held.acquire):
                log.info("holding the monitor lease %s as %s", self.lease_name, held.token)
                self.metrics.lease_held.set(1)
                return held
            holder = self._patiently("redis", lambda: current_holder(self.redis, self.lease_name))
            if holder is not None and holder.token != told:
                expiry = f"{holder.expires_in_s:.1f}s" if holder.expires_in_s is not None else "?"
                log.warning(
                    "another monitor reads namespace %r: %s holds the lease %s (expires in %s "
                    "unless renewed); one monitor per namespace, so this one waits as a "
                    "standby and takes over when that one stops",
                    self.settings.namespace,
                    holder.token,
                    self.lease_name,
                    expiry,
                )
                told = holder.token
            if self.stop.wait(ttl / 5):  # a freed lease is taken within a fifth of the TTL
                raise Stopping("lease")

    # -- records --------------------------------------------------------------------------

    def _handle_batch(self, messages: list[Message]) -> None:
        now = datetime.now(UTC)  # what event times are checked against, once per batch
        for message in messages:
            self._handle(message, now)

    def _handle(self, message: Message, now: datetime | None = None) -> None:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self.at_end.add((message.topic() or "", message.partition() or 0))
            else:
                log.warning("consumer error: %s", error)
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        # A consumed record (not an error) always has all three.
        assert topic is not None and partition is not None and offset is not None
        source = self.topics[topic]
        key = (topic, partition)
        self.at_end.discard(key)
        try:
            event_time = self._process(source, message.value(), partition, now or datetime.now(UTC))
            if event_time is not None:
                latest = self.latest.get(key)
                if latest is None or event_time > latest:
                    self.latest[key] = event_time
        except (Stopping, LeaseLost):
            raise
        except Exception as exc:  # a bug on one record must stop neither monitoring nor commits
            log.exception("could not process the %s record at %d/%d", source, partition, offset)
            self._skip(source, Skipped(SkipReason.ERROR, repr(exc)), partition, offset)
        self.positions[key] = offset + 1

    def _process(
        self, source: str, value: bytes | None, partition: int, now: datetime
    ) -> datetime | None:
        """Parse and monitor one record; its event time, or None if it was skipped."""
        if source == PRICES_SCORED:
            scored = parse_scored(value, now)
            if isinstance(scored, Skipped):
                self._skip(source, scored, partition)
                return None
            alerts = self.monitor.on_scored(scored, partition)
            event_time = scored.listed_at
        else:
            sale = parse_sale(value, now)
            if isinstance(sale, Skipped):
                self._skip(source, sale, partition)
                return None
            alerts = self.monitor.on_sale(sale, partition)
            event_time = sale.sold_at
        for alert in alerts:
            self.unconfirmed[alert.alert_id] = alert
            self._produce(alert)
        return event_time

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

    def _checkpoint(self, consumers: Mapping[str, Consumer]) -> None:
        """Confirm the alerts, then write the state with its offsets, then commit them."""
        self.last_checkpoint = time.monotonic()
        if self.positions == self.checkpointed:
            return
        started = time.monotonic()
        self._confirm_alerts()
        checkpoint = Checkpoint(dict(self.positions), self.monitor.snapshot())
        blob = encode(checkpoint)
        fence = Fence(self.lease_name, self.held.token) if self.held is not None else None
        self._patiently("redis", lambda: self.store.save(blob, fence))
        self.checkpointed = checkpoint.positions
        self.metrics.checkpoints.inc()
        self.metrics.checkpoint_bytes.set(len(blob))
        self.metrics.checkpoint_seconds.set(time.monotonic() - started)
        self.metrics.checkpoint_position.set(checkpoint.covered)
        for topic, consumer in consumers.items():
            offsets = [
                TopicPartition(t, p, o) for (t, p), o in checkpoint.positions.items() if t == topic
            ]
            if offsets:
                with contextlib.suppress(KafkaException):  # informational: lag dashboards
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
        """``call()``, retried with exponential backoff until it succeeds or we stop;
        raises :class:`LeaseLost` at once (never retried) if the lease is lost meanwhile."""

        def attempt() -> T:
            if self.held is not None:
                self.held.check()
            return call()

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
            retry=retry_if_not_exception_type(LeaseLost),
            before_sleep=waiting,
            sleep=self._sleep,
        )
        try:
            return retrying(attempt)
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


_UNREAD = datetime.min.replace(tzinfo=UTC)
_DONE = datetime.max.replace(tzinfo=UTC)


def reading_order(
    latest: Mapping[tuple[str, int], datetime],
    at_end: Collection[tuple[str, int]],
    partitions: Mapping[str, int],
) -> list[str]:
    """The topics, the one behind in event time first.

    A topic's progress is the latest event time of its slowest partition still reading
    (not at the end of its log); a partition still reading that has delivered nothing
    yet is the slowest of all; a topic with nothing left to read comes last.

    >>> from datetime import datetime, UTC
    >>> t = {("scored", 0): datetime(2015, 5, 9, tzinfo=UTC),
    ...      ("sold", 0): datetime(2015, 5, 9, tzinfo=UTC),
    ...      ("sold", 1): datetime(2015, 5, 1, tzinfo=UTC)}
    >>> reading_order(t, set(), {"scored": 1, "sold": 2})
    ['sold', 'scored']
    >>> reading_order(t, {("sold", 1)}, {"scored": 1, "sold": 2})  # nothing more there
    ['scored', 'sold']
    >>> reading_order(t, set(), {"scored": 2, "sold": 2})  # scored 1 delivered nothing yet
    ['scored', 'sold']
    """

    def progress(topic: str) -> datetime:
        reading = [(topic, p) for p in range(partitions[topic]) if (topic, p) not in at_end]
        return min((latest.get(key, _UNREAD) for key in reading), default=_DONE)

    return sorted(partitions, key=progress)


def partition_count(settings: Settings, topic: str) -> int:
    metadata = admin_client(settings).list_topics(topic, timeout=30)
    partitions = metadata.topics[topic].partitions
    if not partitions:
        raise RuntimeError(f"topic {topic} does not exist; run `gavel stack up` first")
    return len(partitions)


def run_monitor(settings: Settings) -> None:
    """Run in the foreground until SIGINT/SIGTERM."""
    MonitorService(settings, stop_on_signals()).run()
