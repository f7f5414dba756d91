"""MLflow stopped, on a throwaway MLflow server (never the shared one): the decision path
tells "MLflow down" from "no champion", and an alert raised while MLflow is down is
trained on once it is back, not dropped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gavel.settings import Settings
from shell import registry
from shell.registry import RegistryUnavailable
from tests.helpers import ThrowawayMlflow
from tests.integration.trainer_fixtures import (
    FAST_FAILING_MLFLOW,
    feed_window,
    send_alert,
    train_first_champion,
    trainer_process,
    trainer_settings,
    wait_logged,
    wait_trained,
)
from trainer.service import TrainerStore

pytestmark = pytest.mark.integration


@pytest.fixture
def own_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThrowawayMlflow]:
    for key, value in FAST_FAILING_MLFLOW.items():
        monkeypatch.setenv(key, value)
    server = ThrowawayMlflow(tmp_path)
    server.start()
    yield server
    server.process.stop(timeout_s=20)


def test_mlflow_down_is_not_no_champion_and_the_alert_is_trained_on_when_it_returns(
    isolated: Settings, own_mlflow: ThrowawayMlflow, tmp_path: Path
) -> None:
    settings = trainer_settings(isolated.replace(mlflow_port=own_mlflow.port))
    assert settings.mlflow_tracking_uri == own_mlflow.url
    client = registry.connect(settings)
    assert registry.champion(client, settings.model_name, strict=True) is None  # answered
    champion = train_first_champion(settings)
    feed_window(settings, hostile=False)
    store = TrainerStore(settings)

    with trainer_process(settings, tmp_path, **FAST_FAILING_MLFLOW) as trainer:
        own_mlflow.stop()
        down_at = time.monotonic()
        # The decision path against the stopped server: an error, never "no champion".
        with pytest.raises(RegistryUnavailable):
            registry.champion(client, settings.model_name, strict=True)
        alert = send_alert(settings, champion.version)
        wait_logged(trainer, "mlflow unavailable", 90)
        wait_logged(trainer, "retry 3 in", 90)
        assert store.decisions() == []  # nothing decided, in particular not "no champion"
        own_mlflow.start()
        back_at = time.monotonic()
        done = wait_trained(store, trainer, timeout_s=300)
        trained_at = time.monotonic()
        log = trainer.log_tail(300)
        assert trainer.pid() is not None
    print(log)

    assert [d["alert_id"] for d in store.decisions()] == [alert.alert_id]  # one decision
    assert len(done) == 1 and "mlflow" in done[0]["waited_s"]
    versions = registry.model_versions(registry.connect(settings), settings.model_name)
    assert len(versions) == 2  # the champion and exactly one retrained version
    print(
        f"MLflow down {back_at - down_at:.1f}s; trained {trained_at - back_at:.1f}s after it "
        f"returned; waits recorded: {done[0]['waited_s']}"
    )
