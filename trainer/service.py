"""`gavel trainer run`: retrain when drift alerts say so, gate, promote and announce.

Alerts are read from ``drift.alerts`` in one consumer group and their offsets are
committed only once decided, so an alert being handled when a trainer dies is handled
again after a restart. Decisions, state and the single-flight lock live in Redis.

An alert is decided only when its dependencies answer. While Redis, MLflow or Kafka is
down (see :mod:`trainer.dependencies`), or when the training lease is lost, the trainer
logs it, waits with exponential backoff and tries the same alert again; it never takes
"MLflow did not answer" for "there is no champion". Stopped (SIGTERM) before an alert is
decided, it leaves the alert uncommitted. Malformed records in the training window are
skipped and counted (:mod:`gavel.records`); the counts are logged, kept in Redis and
shown by ``gavel trainer status``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import redis
from confluent_kafka import Consumer, KafkaException, Message, Producer
from sklearn.pipeline import Pipeline
from tenacity import RetryCallState, Retrying, retry_if_exception

from gavel.schemas import DriftAlert, ModelAction, ModelUpdate, utc_now
from gavel.settings import Settings
from gavel.topics import DRIFT_ALERTS, MODELS_UPDATES
from shell import redis_client, registry
from shell.kafka import consumer_config, producer_config
from shell.shutdown import stop_on_signals
from trainer.alert_decision import Action, AlertDecision, PromotionRecord, TrainerState, assess
from trainer.dependencies import Waits, backoff, dependency_of, failed_dependency
from trainer.labelled import new_labels, retraining_split
from trainer.lease import Lease, LeaseUnavailable, lease
from trainer.split import SplitError, TimeSplit
from trainer.training import TrainingResult, train_and_register
from trainer.window import IncompleteRead, LabelledWindow

log = logging.getLogger(__name__)

DECISIONS_KEPT = 200
# Waiting for a dependency or for labels can take long: stay in the consumer group
# (librdkafka's maximum). A dead trainer still leaves within session.timeout.ms.
MAX_POLL_INTERVAL_MS = 86_400_000


class Undecided(RuntimeError):
    """The trainer is stopping before the alert was decided: it must stay uncommitted."""


class TrainerStore:
    """The trainer's Redis keys: state, decision log and lock, under the namespace."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.client = client or redis_client.connect(
            settings, timeout_s=settings.trainer.redis_timeout_s
        )
        self.prefix = f"gavel:{settings.namespace}{settings.model_name}:trainer:"

    @property
    def lock_name(self) -> str:
        return self.prefix + "lock"

    def load(self) -> TrainerState:
        raw = self.client.get(self.prefix + "state")
        return TrainerState.model_validate_json(raw) if raw else TrainerState()

    def save(self, state: TrainerState) -> None:
        self.client.set(self.prefix + "state", state.model_dump_json())

    def record(self, alert: DriftAlert | None, decision: str, reason: str, **extra: Any) -> None:
        entry = {
            "at": utc_now().isoformat(),
            "alert_id": alert.alert_id if alert else None,
            "kind": alert.kind.value if alert else None,
            "decision": decision,
            "reason": reason,
            **extra,
        }
        pipe = self.client.pipeline()
        pipe.lpush(self.prefix + "decisions", json.dumps(entry))
        pipe.ltrim(self.prefix + "decisions", 0, DECISIONS_KEPT - 1)
        pipe.execute()

    def decisions(self, limit: int = 20) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.client.lrange(self.prefix + "decisions", 0, limit - 1)]

    def status(self, text: str | None) -> None:
        if text is None:
            self.client.delete(self.prefix + "status")
        else:
            self.client.set(self.prefix + "status", text)

    def save_window(self, stats: dict[str, Any]) -> None:
        """The last window read: records read and skipped by reason, per topic."""
        entry = {"at": utc_now().isoformat(), "topics": stats}
        self.client.set(self.prefix + "window", json.dumps(entry))

    def window(self) -> dict[str, Any] | None:
        raw = self.client.get(self.prefix + "window")
        return json.loads(raw) if raw else None


class TrainerService:
    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.config = settings.trainer
        self.stop = stop or threading.Event()
        self.store = TrainerStore(settings)
        self.client = registry.connect(settings)
        self.producer = Producer(producer_config(settings))
        self.clock: Callable[[], float] = time.time

    def run(self) -> None:
        consumer = Consumer(
            consumer_config(
                self.settings,
                self.settings.group("trainer"),
                **{
                    "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
                    "session.timeout.ms": 10_000,
                    "heartbeat.interval.ms": 2_000,
                },
            )
        )
        consumer.subscribe([self.settings.topic(DRIFT_ALERTS)])
        log.info("trainer waiting for alerts on %s", self.settings.topic(DRIFT_ALERTS))
        try:
            while not self.stop.is_set():
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                try:
                    self.handle(message)
                except Undecided as exc:
                    log.warning(
                        "stopping with the alert at %s[%d]@%d undecided (%s): left "
                        "uncommitted, it is handled again on restart",
                        message.topic(),
                        message.partition(),
                        message.offset(),
                        exc,
                    )
                    break
                self._commit(consumer, message)
        finally:
            self.producer.flush(10)
            consumer.close()

    @staticmethod
    def _commit(consumer: Consumer, message: Message) -> None:
        try:
            consumer.commit(message=message, asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance took the partition meanwhile
            log.warning("could not commit alert offset %d: %s", message.offset(), exc)

    def handle(self, message: Message) -> None:
        """Decide on one alert, retrying while a dependency is down; raises
        :class:`Undecided` if the trainer stops first."""
        self.waits = Waits()
        try:
            self._retrying()(self._decide, message)
        except Exception as exc:
            if dependency_of(exc) is not None:
                raise Undecided(f"{dependency_of(exc)} still down: {exc}") from exc
            raise

    def _retrying(self) -> Retrying:
        """Retry while a dependency is down, with backoff, until it answers or we stop."""
        return Retrying(
            retry=retry_if_exception(lambda exc: dependency_of(exc) is not None),
            wait=backoff(self.config.retry_initial_s, self.config.retry_max_s),
            stop=lambda _: self.stop.is_set(),
            sleep=self._sleep,
            before_sleep=self._on_dependency_down,
            reraise=True,
        )

    def _sleep(self, seconds: float) -> None:
        """A backoff sleep that a stop cuts short."""
        self.stop.wait(seconds)

    def _on_dependency_down(self, state: RetryCallState) -> None:
        dependency = failed_dependency(state)
        seconds = state.next_action.sleep if state.next_action else 0.0
        self.waits.add(dependency, seconds)
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s unavailable (%s): alert undecided, retry %d in %.1fs (waited %s so far)",
            dependency,
            _one_line(exc),
            state.attempt_number,
            seconds,
            self.waits.seconds,
        )
        if dependency != "redis":
            with contextlib.suppress(redis.RedisError):
                self.store.status(f"waiting for {dependency} ({_one_line(exc)})")

    def _decide(self, message: Message) -> None:
        if self.stop.is_set():
            raise Undecided("stopping")
        value = message.value()
        try:
            if value is None:
                raise ValueError("the record has no value")
            alert = DriftAlert.model_validate_json(value)
        except ValueError as exc:
            log.warning("ignoring unreadable alert at offset %d: %s", message.offset(), exc)
            self._record(None, Action.IGNORE, f"unreadable alert: {exc}")
            return
        try:
            self.on_alert(alert)
        except Exception as exc:
            if dependency_of(exc) is not None or isinstance(exc, Undecided):
                raise
            # A bug or an input nothing can fix: retrying would crash-loop, so record it.
            log.exception("alert %s failed", alert.alert_id)
            self._record(alert, "error", f"{type(exc).__name__}: {exc}")

    def _record(self, alert: DriftAlert | None, decision: str, reason: str, **extra: Any) -> None:
        waits = getattr(self, "waits", None)
        if waits:
            extra["waited_s"] = waits.seconds
        self.store.record(alert, decision, reason, **extra)

    def on_alert(self, alert: DriftAlert) -> AlertDecision:
        state = self.store.load()
        champion = registry.champion(self.client, self.settings.model_name, strict=True)
        decision = assess(
            alert, champion.version if champion else None, state, self.config, self.clock()
        )
        log.info(
            "alert %s (%s): %s — %s",
            alert.alert_id[:8],
            alert.kind.value,
            decision.action,
            decision.reason,
        )
        if decision.action is Action.ROLLBACK:
            self.rollback(decision.reason, alert)
        elif decision.action is Action.RETRAIN:
            decision = self.retrain(alert)
        else:
            self._record(alert, decision.action, decision.reason)
        state = self.store.load()
        state.remember(alert.alert_id)
        self.store.save(state)
        return decision

    def retrain(self, alert: DriftAlert) -> AlertDecision:
        try:
            with lease(
                self.store.client,
                self.store.lock_name,
                self.config.lock_ttl_s,
                wait_s=self.config.lock_ttl_s * 1.5,
            ) as held:
                return self._retrain_locked(alert, held)
        except LeaseUnavailable as exc:
            self._record(alert, Action.IGNORE, str(exc))
            return AlertDecision(Action.IGNORE, str(exc))

    def _read_from(self) -> datetime:
        """The Kafka time from which the training window is read."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        return now - timedelta(days=self.config.read_back_days)

    def _checkpoint(self, held: Lease) -> Callable[[], None]:
        """What training calls between steps: stop if the lease is lost or on SIGTERM."""

        def check() -> None:
            held.check()
            if self.stop.is_set():
                raise Undecided("stopping mid-training")

        return check

    def _retrain_locked(self, alert: DriftAlert, held: Lease) -> AlertDecision:
        checkpoint = self._checkpoint(held)
        with LabelledWindow(self.settings, self._read_from(), self.config.read_timeout_s) as window:
            labelled = self._wait_for_labels(alert, window, checkpoint)
            self.store.save_window(window.stats.as_dict())
            skipped = window.stats.as_dict()
        if labelled is None:
            return AlertDecision(Action.IGNORE, "not enough labels")
        try:
            split = retraining_split(labelled, self.config)
        except SplitError as exc:
            self._record(alert, Action.IGNORE, str(exc), skipped=skipped)
            return AlertDecision(Action.IGNORE, str(exc))
        checkpoint()
        self.store.status(f"training for alert {alert.alert_id}")
        started = self.clock()
        base = self._champion_pipeline() if self.config.continue_champion else None
        result = train_and_register(
            split,
            self.settings,
            source="kafka",
            margin=self.config.margin,
            run_tags={
                "trigger_alert": alert.alert_id,
                "alert_kind": alert.kind.value,
                "alert_severity": alert.severity.value,
                "labelled_rows": str(len(labelled)),
            },
            alert_id=alert.alert_id,
            base=base,
            checkpoint=checkpoint,
        )
        # Registered (and maybe promoted): from here on only the bookkeeping is retried,
        # never the alert, which would then look late and go unannounced.
        self._retrying()(self._settle, alert, result, split, started, skipped)
        action = "promoted" if result.promoted else "rejected"
        return AlertDecision(
            Action.RETRAIN, f"v{result.version} {action}: {result.decision.reason}"
        )

    def _settle(
        self,
        alert: DriftAlert,
        result: TrainingResult,
        split: TimeSplit,
        started: float,
        skipped: dict[str, Any],
    ) -> None:
        """After a training: state, announcement and decision log (safe to repeat)."""
        self.store.status(None)
        state = self.store.load()
        state.last_trained_at = self.clock()
        state.last_data_end = split.test_until.to_pydatetime()
        if result.promoted:
            state.last_promotion = PromotionRecord(
                version=result.version,
                previous_version=alert.model_version,
                previous_mape=result.metrics.get("champion_test_mape"),
                at=self.clock(),
            )
        state.remember(alert.alert_id)
        self.store.save(state)
        self.announce(result, alert)
        self._record(
            alert,
            "promoted" if result.promoted else "rejected",
            result.decision.reason,
            version=result.version,
            seconds=round(self.clock() - started, 1),
            skipped=skipped,
        )

    def _wait_for_labels(
        self, alert: DriftAlert, window: LabelledWindow, checkpoint: Callable[[], None]
    ) -> pd.DataFrame | None:
        """The labelled window once it holds ``min_new_labels`` new sales; None (and the
        alert recorded as ignored) if they do not come within ``max_wait_s``.

        Each check reads only what arrived since the last. A read that cannot reach the
        high watermarks is retried here, loudly, and never counted as complete.
        """
        state = self.store.load()
        since = max(filter(None, (state.last_data_end, alert.window_start)))
        deadline = self.clock() + self.config.max_wait_s
        while True:
            checkpoint()
            try:
                labelled = window.refresh()
            except IncompleteRead as exc:
                if self.clock() > deadline:
                    raise  # undecided: retried with backoff, never trained on part of it
                log.warning("window read incomplete, reading on: %s", exc)
                self.store.status(f"window read incomplete: {exc}")
                self.stop.wait(self.config.recheck_s)
                continue
            count = new_labels(labelled, since)
            if count >= self.config.min_new_labels:
                return labelled
            if self.clock() > deadline:
                reason = (
                    f"only {count} labelled sales since {since:%Y-%m-%d %H:%M} "
                    f"(need {self.config.min_new_labels})"
                )
                self._record(alert, Action.IGNORE, reason, skipped=window.stats.as_dict())
                return None
            self.store.status(f"waiting for labels: {count}/{self.config.min_new_labels}")
            log.info("waiting for labels: %d of %d", count, self.config.min_new_labels)
            self.stop.wait(self.config.recheck_s)

    def _champion_pipeline(self) -> Pipeline | None:
        """The champion's pipeline, to continue its boosting; None if it cannot be had."""
        current = registry.champion(self.client, self.settings.model_name, strict=True)
        if current is None:
            return None
        try:
            return registry.load_pipeline(current.uri)
        except Exception as exc:  # training from scratch still works without it
            log.warning(
                "champion v%s did not load (%s); training from scratch", current.version, exc
            )
            return None

    def announce(self, result: TrainingResult, alert: DriftAlert | None) -> None:
        update = ModelUpdate(
            action=ModelAction.PROMOTED if result.promoted else ModelAction.REJECTED,
            model_name=result.model_name,
            version=result.version,
            champion_version=result.champion_version,
            previous_version=alert.model_version if alert else None,
            reason=result.decision.reason,
            metrics={k: v for k, v in result.metrics.items() if "mape" in k or "bias" in k},
            alert_id=alert.alert_id if alert else None,
        )
        publish_update(self.producer, self.settings, update)

    def rollback(self, reason: str, alert: DriftAlert | None = None) -> ModelUpdate:
        restored, demoted = registry.rollback(self.client, self.settings.model_name, reason)
        update = ModelUpdate(
            action=ModelAction.ROLLED_BACK,
            model_name=self.settings.model_name,
            version=restored,
            champion_version=restored,
            previous_version=demoted,
            reason=reason,
            alert_id=alert.alert_id if alert else None,
        )
        publish_update(self.producer, self.settings, update)
        self._record(alert, Action.ROLLBACK, reason, version=restored)
        state = self.store.load()
        state.last_promotion = None
        self.store.save(state)
        return update


def publish_update(producer: Producer, settings: Settings, update: ModelUpdate) -> None:
    producer.produce(
        settings.topic(MODELS_UPDATES), key=update.model_name.encode(), value=update.to_json_bytes()
    )
    producer.flush(10)
    log.info(
        "announced %s v%s on %s",
        update.action.value,
        update.version,
        settings.topic(MODELS_UPDATES),
    )


def run_trainer(settings: Settings) -> None:
    # The trainer retries MLflow itself, with backoff and a log line per try: keep each
    # client call short instead of MLflow's own minutes of silent retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    yield_cpu(settings.trainer.nice)
    TrainerService(settings, stop_on_signals()).run()


def _one_line(exc: BaseException | None) -> str:
    text = f"{type(exc).__name__}: {exc}" if exc else "unknown"
    return text.splitlines()[0][:200] if text else text


def yield_cpu(nice: int) -> None:
    """Lower this process's CPU priority: on a machine shared with the scoring worker and
    the broker, a retraining that fits on every core should wait for them, not they for it."""
    current = os.nice(0)
    if nice > current:  # only ever lower the priority; raising it needs root
        os.nice(nice - current)
