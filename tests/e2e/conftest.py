"""Fixtures for end-to-end tests: a trained champion and a running scoring worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gavel.settings import Settings
from producers.sources.synthetic import generate_auctions
from shell.stack.process import ManagedProcess
from tests.helpers import free_port, http_ok, service
from trainer.split import time_split
from trainer.training import TrainingResult, train_and_register

SMALL_XGB = {"n_estimators": 300, "learning_rate": 0.1, "early_stopping_rounds": 15}


@pytest.fixture
def services(isolated: Settings, tmp_path: Path) -> Settings:
    """Isolated settings with free ports for the services' HTTP endpoints."""
    return isolated.replace(
        worker_web_port=free_port(),
        monitor_metrics_port=free_port(),
        worker_poll_alias_s=30.0,
        worker_model_cache_dir=tmp_path / "model-cache",
    )


def train_champion(settings: Settings, seed: int = 11) -> TrainingResult:
    auctions = generate_auctions(10_000, start="2015-01-01", end="2015-03-01", seed=seed)
    split = time_split(auctions, "2015-02-01", test_days=28)
    return train_and_register(split, settings, source="e2e", xgb_params=SMALL_XGB)


@pytest.fixture
def champion(services: Settings) -> TrainingResult:
    return train_champion(services)


def worker_health_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.worker_web_port}/health"


@pytest.fixture
def worker(
    services: Settings, champion: TrainingResult, tmp_path: Path
) -> Iterator[ManagedProcess]:
    with service(
        "worker", ["worker"], services, tmp_path, ready=http_ok(worker_health_url(services))
    ) as process:
        yield process
