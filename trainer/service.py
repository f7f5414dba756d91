"""`gavel trainer run`: retrain when drift alerts say so, gate, promote and announce.

Alerts are read from ``drift.alerts`` in one consumer group and their offsets are
committed only once handled, so an alert being handled when a trainer dies is handled
again after a restart. Decisions, state and the single-flight lock live in Redis.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from confluent_kafka import Consumer, Message, Producer
from sklearn.pipeline import Pipeline

from gavel import registry
from gavel.kafka import consumer_config, producer_config
from gavel.schemas import DriftAlert, ModelAction, ModelUpdate, utc_now
from gavel.settings import Settings
from gavel.shutdown import stop_on_signals
from gavel.topics import DRIFT_ALERTS, MODELS_UPDATES
from trainer.labelled import new_labels, read_labelled, retraining_split
from trainer.lease import LeaseUnavailable, lease
from trainer.retrain_policy import Action, AlertDecision, PromotionRecord, TrainerState, assess
from trainer.split import SplitError
from trainer.training import TrainingResult, train_and_register

log = logging.getLogger(__name__)

DECISIONS_KEPT = 200


class TrainerStore:
    """The trainer's Redis keys: state, decision log and lock, under the namespace."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.client = client or redis.Redis.from_url(settings.redis_url)
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
                # Handling one alert may wait for labels and then train: stay in the group
                # that long, but let a dead trainer's alert move on within seconds.
                **{
                    "max.poll.interval.ms": int((self.config.max_wait_s + 900) * 1000),
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
                self.handle(message)
                consumer.commit(message=message, asynchronous=False)
        finally:
            self.producer.flush(10)
            consumer.close()

    def handle(self, message: Message) -> None:
        try:
            alert = DriftAlert.model_validate_json(message.value())
        except ValueError as exc:
            log.warning("ignoring unreadable alert at offset %d: %s", message.offset(), exc)
            self.store.record(None, Action.IGNORE, f"unreadable alert: {exc}")
            return
        self.on_alert(alert)

    def on_alert(self, alert: DriftAlert) -> AlertDecision:
        state = self.store.load()
        champion = registry.champion(self.client, self.settings.model_name)
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
            self.store.record(alert, decision.action, decision.reason)
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
            ):
                return self._retrain_locked(alert)
        except LeaseUnavailable as exc:
            self.store.record(alert, Action.IGNORE, str(exc))
            return AlertDecision(Action.IGNORE, str(exc))

    def _retrain_locked(self, alert: DriftAlert) -> AlertDecision:
        state = self.store.load()
        since = max(filter(None, (state.last_data_end, alert.window_start)))
        deadline = self.clock() + self.config.max_wait_s
        while True:
            labelled = read_labelled(self.settings)
            count = new_labels(labelled, since)
            if count >= self.config.min_new_labels:
                break
            if self.clock() > deadline or self.stop.is_set():
                reason = (
                    f"only {count} labelled sales since {since:%Y-%m-%d %H:%M} "
                    f"(need {self.config.min_new_labels})"
                )
                self.store.record(alert, Action.IGNORE, reason)
                return AlertDecision(Action.IGNORE, reason)
            self.store.status(f"waiting for labels: {count}/{self.config.min_new_labels}")
            log.info("waiting for labels: %d of %d", count, self.config.min_new_labels)
            self.stop.wait(self.config.recheck_s)
        try:
            split = retraining_split(labelled, self.config)
        except SplitError as exc:
            self.store.record(alert, Action.IGNORE, str(exc))
            return AlertDecision(Action.IGNORE, str(exc))
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
        )
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
        action = "promoted" if result.promoted else "rejected"
        self.store.record(
            alert,
            action,
            result.decision.reason,
            version=result.version,
            seconds=round(self.clock() - started, 1),
        )
        return AlertDecision(
            Action.RETRAIN, f"v{result.version} {action}: {result.decision.reason}"
        )

    def _champion_pipeline(self) -> Pipeline | None:
        """The champion's pipeline, to continue its boosting; None if it cannot be had."""
        current = registry.champion(self.client, self.settings.model_name)
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
        self.store.record(alert, Action.ROLLBACK, reason, version=restored)
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
    yield_cpu(settings.trainer.nice)
    TrainerService(settings, stop_on_signals()).run()


def yield_cpu(nice: int) -> None:
    """Lower this process's CPU priority: on a machine shared with the scoring worker and
    the broker, a retraining that fits on every core should wait for them, not they for it."""
    current = os.nice(0)
    if nice > current:  # only ever lower the priority; raising it needs root
        os.nice(nice - current)
