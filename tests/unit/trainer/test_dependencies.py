"""The policy under dependency failures: what is retried, and that an alert is decided only
once its dependencies answer (trainer.dependencies and TrainerService.handle, with fakes)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import requests
from confluent_kafka import KafkaError, KafkaException
from hypothesis import given
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException

from gavel.schemas import DriftAlert, DriftKind, Severity
from gavel.settings import Settings
from shell import registry
from shell.registry import RegistryUnavailable
from trainer.alert_decision import Action, AlertDecision, TrainerState
from trainer.dependencies import (
    KAFKA,
    LEASE,
    MLFLOW,
    REDIS,
    Waits,
    backoff,
    dependency_of,
)
from trainer.lease import LeaseLost
from trainer.service import TrainerService, Undecided
from trainer.window import IncompleteRead

T0 = datetime(2015, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("exc", "dependency"),
    [
        (redis.ConnectionError("Error 111 connecting to 127.0.0.1:6390"), REDIS),
        (redis.TimeoutError("Timeout reading from socket"), REDIS),
        (redis.BusyLoadingError("loading"), REDIS),
        (RegistryUnavailable("MLflow registry: down"), MLFLOW),
        (requests.ConnectionError("refused"), MLFLOW),
        (requests.Timeout("slow"), MLFLOW),
        (
            MlflowException(
                "API request to http://127.0.0.1:5999/api/2.0/mlflow/runs/create failed with "
                "exception HTTPConnectionPool(host='127.0.0.1', port=5999): Max retries exceeded"
            ),
            MLFLOW,
        ),
        (IncompleteRead("short of the watermarks"), KAFKA),
        (KafkaException(KafkaError(KafkaError._TRANSPORT)), KAFKA),
        (LeaseLost("lost"), LEASE),
    ],
)
def test_dependency_failures_are_named(exc: BaseException, dependency: str) -> None:
    assert dependency_of(exc) == dependency


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad input"),
        KeyError("x"),
        MlflowException("RESOURCE_DOES_NOT_EXIST: Registered Model not found"),
        redis.ResponseError("WRONGTYPE"),
        RuntimeError("a bug"),
    ],
)
def test_other_failures_are_not_retried(exc: BaseException) -> None:
    assert dependency_of(exc) is None


@given(st.integers(1, 40))
def test_backoff_grows_and_is_capped(attempt: int) -> None:
    wait = backoff(initial_s=1.0, max_s=30.0)

    class State:  # the part of tenacity's RetryCallState the wait reads
        attempt_number = attempt

    seconds = wait(State())  # type: ignore[arg-type]  # a duck-typed retry state
    assert 0 <= seconds <= 30.0
    if attempt == 1:
        assert 1.0 <= seconds <= 2.0  # initial plus at most its jitter


def test_waits_add_up_by_dependency() -> None:
    waits = Waits()
    assert not waits
    waits.add(REDIS, 1.04)
    waits.add(REDIS, 2.0)
    waits.add(MLFLOW, 4.0)
    assert waits and waits.retries == 3
    assert waits.seconds == {REDIS: 3.0, MLFLOW: 4.0}


# --- TrainerService.handle with fakes ------------------------------------------------------


class FakeStore:
    """The TrainerStore interface in memory; ``down`` makes calls fail like a dead Redis."""

    def __init__(self) -> None:
        self.decisions: list[dict[str, Any]] = []
        self.state = TrainerState()
        self.statuses: list[str | None] = []
        self.down = 0  # the next `down` calls fail

    def _call(self) -> None:
        if self.down:
            self.down -= 1
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Refused.")

    def load(self) -> TrainerState:
        self._call()
        return self.state.model_copy(deep=True)

    def save(self, state: TrainerState) -> None:
        self._call()
        self.state = state

    def record(self, alert: DriftAlert | None, decision: str, reason: str, **extra: Any) -> None:
        self._call()
        entry = {"alert_id": alert.alert_id if alert else None, "decision": decision}
        self.decisions.append({**entry, "reason": reason, **extra})

    def status(self, text: str | None) -> None:
        self._call()
        self.statuses.append(text)


class FakeMessage:
    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value

    def offset(self) -> int:
        return 7

    def partition(self) -> int:
        return 0

    def topic(self) -> str:
        return "drift.alerts"


def alert(version: str = "1") -> DriftAlert:
    return DriftAlert(
        alert_id="alert-1",
        kind=DriftKind.PERFORMANCE,
        severity=Severity.CRITICAL,
        window_start=T0,
        window_end=T0,
        window_size=1000,
        model_name="m",
        model_version=version,
        mape=0.3,
    )


def service(**trainer: object) -> tuple[TrainerService, FakeStore]:
    """A TrainerService without I/O: a fake store and no Kafka or MLflow clients."""
    settings = Settings(trainer={"retry_initial_s": 0.01, "retry_max_s": 0.05, **trainer})
    trainer_service = TrainerService.__new__(TrainerService)
    trainer_service.settings = settings
    trainer_service.config = settings.trainer
    trainer_service.stop = threading.Event()
    store = FakeStore()
    trainer_service.store = store  # type: ignore[assignment]  # the fake has its interface
    trainer_service.client = None  # type: ignore[assignment]  # champion() is patched
    trainer_service.clock = lambda: 1_000_000.0
    return trainer_service, store


def message(value: DriftAlert | bytes) -> FakeMessage:
    return FakeMessage(value if isinstance(value, bytes) else value.to_json_bytes())


def test_mlflow_down_is_waited_out_not_taken_for_no_champion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trainer, store = service(kinds=["data"])  # performance alerts are then ignored: no I/O
    answers: list[object] = [RegistryUnavailable("MLflow registry: down")] * 3
    answers.append(registry.VersionInfo("m", "1", "run", 0.1))

    def champion(client: object, name: str, strict: bool = False) -> object:
        assert strict, "the trainer must tell 'down' from 'no champion'"
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(registry, "champion", champion)
    trainer.handle(message(alert()))
    assert answers == []  # asked until it answered
    assert [d["decision"] for d in store.decisions] == [Action.IGNORE]
    assert "there is no champion" not in store.decisions[0]["reason"]
    assert "performance alerts do not retrain" in store.decisions[0]["reason"]
    assert set(store.decisions[0]["waited_s"]) == {MLFLOW}
    assert trainer.waits.retries == 3
    assert store.state.seen_alerts == ["alert-1"]


def test_a_registry_that_answers_no_champion_is_a_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer, store = service()
    monkeypatch.setattr(registry, "champion", lambda *a, **k: None)
    trainer.handle(message(alert()))
    assert [d["reason"] for d in store.decisions] == ["there is no champion to improve on"]
    assert "waited_s" not in store.decisions[0]


def test_redis_down_is_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer, store = service(kinds=["data"])
    monkeypatch.setattr(
        registry, "champion", lambda *a, **k: registry.VersionInfo("m", "1", "run", 0.1)
    )
    store.down = 4  # load, load, ... fail; then Redis is back
    trainer.handle(message(alert()))
    assert len(store.decisions) == 1
    assert set(store.decisions[0]["waited_s"]) == {REDIS}
    assert trainer.waits.retries == 4


def test_an_unreadable_alert_is_recorded_once_redis_answers() -> None:
    trainer, store = service()
    store.down = 2
    trainer.handle(message(b"{not an alert"))
    assert [d["decision"] for d in store.decisions] == [Action.IGNORE]
    assert store.decisions[0]["reason"].startswith("unreadable alert")


def test_stopping_while_a_dependency_is_down_leaves_the_alert_undecided(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trainer, store = service()
    calls = 0

    def champion(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            trainer.stop.set()  # SIGTERM while MLflow is down
        raise RegistryUnavailable("MLflow registry: down")

    monkeypatch.setattr(registry, "champion", champion)
    with pytest.raises(Undecided, match="mlflow still down"):
        trainer.handle(message(alert()))
    assert store.decisions == []  # nothing decided, nothing remembered
    assert store.state.seen_alerts == []


def test_stopping_before_an_alert_is_handled_decides_nothing() -> None:
    trainer, store = service()
    trainer.stop.set()
    with pytest.raises(Undecided):
        trainer.handle(message(alert()))
    assert store.decisions == []


def test_a_lost_lease_retries_the_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer, store = service()
    monkeypatch.setattr(
        registry, "champion", lambda *a, **k: registry.VersionInfo("m", "1", "run", 0.1)
    )
    attempts = []

    def retrain(alert: DriftAlert) -> AlertDecision:
        attempts.append(alert.alert_id)
        if len(attempts) < 3:
            raise LeaseLost("lost the training lock: ConnectionError")
        store.record(alert, "promoted", "better")
        return AlertDecision(Action.RETRAIN, "v2 promoted")

    monkeypatch.setattr(trainer, "retrain", retrain)
    trainer.handle(message(alert()))
    assert attempts == ["alert-1"] * 3
    assert [d["decision"] for d in store.decisions] == ["promoted"]
    assert set(trainer.waits.seconds) == {LEASE}


def test_a_failure_that_is_no_dependency_is_recorded_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trainer, store = service()
    monkeypatch.setattr(
        registry, "champion", lambda *a, **k: registry.VersionInfo("m", "1", "run", 0.1)
    )
    attempts = []

    def retrain(alert: DriftAlert) -> AlertDecision:
        attempts.append(1)
        raise ValueError("a bug")

    monkeypatch.setattr(trainer, "retrain", retrain)
    trainer.handle(message(alert()))  # no crash loop: recorded, then committed by run()
    assert attempts == [1]
    assert [(d["decision"], d["reason"]) for d in store.decisions] == [
        ("error", "ValueError: a bug")
    ]
