"""Running the trainer for real: a champion, a labelled window, an alert, and throwaway
Redis and MLflow servers that a test may kill without touching the shared stack."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from gavel.schemas import DriftAlert, DriftKind, Severity
from gavel.settings import Settings
from gavel.topics import AUCTIONS_SOLD, DRIFT_ALERTS, PRICES_SCORED
from producers.sources.synthetic import generate_auctions
from shell.stack.components import find_redis_server
from shell.stack.process import ManagedProcess, wait_until
from tests.helpers import free_port, service
from tests.integration.trainer_corpus import HOSTILE_SALES, HOSTILE_SCORED, labelled_events, produce
from trainer.service import TrainerStore
from trainer.split import time_split
from trainer.training import TrainingResult, train_and_register

SMALL_XGB = {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 15}
WINDOW_START = datetime(2015, 2, 1, tzinfo=UTC)
# Short client timeouts for the trainer process: a dead server must be noticed in seconds.
FAST_FAILING_MLFLOW = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def trainer_settings(settings: Settings, **trainer: object) -> Settings:
    return settings.replace(
        trainer={
            "train_days": 18,
            "eval_days": 6,
            "min_new_labels": 300,
            "max_wait_s": 120,
            "recheck_s": 1,
            "cooldown_s": 0,
            "lock_ttl_s": 6,
            "retry_initial_s": 0.5,
            "retry_max_s": 2,
            "redis_timeout_s": 2,
            "continue_champion": False,
            **trainer,
        }
    )


def train_first_champion(settings: Settings) -> TrainingResult:
    auctions = generate_auctions(5000, start="2015-01-01", end="2015-02-01", seed=21)
    split = time_split(auctions, "2015-01-22", test_days=9)
    return train_and_register(split, settings, source="test", xgb_params=SMALL_XGB)


def feed_window(settings: Settings, hostile: bool = True) -> int:
    """A month of labelled auctions after the champion's data (plus the hostile corpus)."""
    auctions = generate_auctions(3000, start="2015-02-01", end="2015-03-01", seed=22)
    scored, sales = labelled_events(auctions, version="1")
    if hostile:
        scored += [value for value, _ in HOSTILE_SCORED]
        sales += [value for value, _ in HOSTILE_SALES]
    produce(settings, PRICES_SCORED, scored)
    produce(settings, AUCTIONS_SOLD, sales)
    return len(sales)


def send_alert(settings: Settings, version: str) -> DriftAlert:
    alert = DriftAlert(
        alert_id=f"test-{uuid.uuid4().hex[:8]}",
        kind=DriftKind.PERFORMANCE,
        severity=Severity.CRITICAL,
        window_start=WINDOW_START,
        window_end=WINDOW_START,
        window_size=1000,
        model_name=settings.model_name,
        model_version=version,
        mape=0.4,
        reference_mape=0.1,
    )
    produce(settings, DRIFT_ALERTS, [alert.to_json_bytes()])
    return alert


def trained(store: TrainerStore) -> list[dict[str, Any]]:
    return [d for d in store.decisions(200) if d["decision"] in {"promoted", "rejected"}]


def wait_logged(process: ManagedProcess, text: str, timeout_s: float) -> None:
    """Wait until the service's log contains ``text``; fail with the log tail."""
    deadline = time.monotonic() + timeout_s
    while text not in process.log_file.read_text(errors="replace"):
        if process.pid() is None:
            raise AssertionError(f"{process.name} exited:\n{process.log_tail(60)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in {timeout_s}s:\n{process.log_tail(60)}")
        time.sleep(0.3)


def wait_trained(
    store: TrainerStore, process: ManagedProcess, timeout_s: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            done = trained(store)
        except redis.RedisError:
            done = []
        if done:
            return done
        if process.pid() is None:
            raise AssertionError(f"{process.name} exited:\n{process.log_tail(60)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no training in {timeout_s}s:\n{process.log_tail(80)}")
        time.sleep(0.5)


@contextmanager
def trainer_process(
    settings: Settings, workdir: Path, name: str = "trainer", **env: str
) -> Iterator[ManagedProcess]:
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # service() passes os.environ on
    try:
        with service(name, ["trainer", "run", "--verbose"], settings, workdir) as process:
            wait_logged(process, "trainer waiting for alerts", 60)
            yield process
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class ThrowawayRedis:
    """A redis-server of our own on a free port, without persistence: a restart empties it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True)
        self.process = ManagedProcess(f"redis-{self.port}", self.dir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = find_redis_server()
        assert server, "redis-server is not installed"
        argv = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        self.process.start([*argv, "--save", "", "--appendonly", "no", "--daemonize", "no"])
        assert wait_until(self.healthy, 15), self.process.log_tail()

    def healthy(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        pid = self.process.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        assert wait_until(lambda: self.process.pid() is None, 10)

    def stop(self) -> None:
        self.process.stop(timeout_s=5)
