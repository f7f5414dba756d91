"""`gavel trainer run` and `gavel trainer status` on the real stack: a window with hostile
records is trained on once, its skip counts are kept, and the status command shows them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gavel.settings import Settings
from gavel.topics import AUCTIONS_SOLD, PRICES_SCORED
from shell import registry
from tests.integration.trainer_corpus import HOSTILE_SALES, HOSTILE_SCORED, expected_skips
from tests.integration.trainer_fixtures import (
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


def gavel(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env(), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "shell.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hostile_records_are_skipped_counted_and_shown_by_trainer_status(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = trainer_settings(isolated)
    champion = train_first_champion(settings)
    sales = feed_window(settings, hostile=True)
    store = TrainerStore(settings)

    with trainer_process(settings, tmp_path) as trainer:
        alert = send_alert(settings, champion.version)
        done = wait_trained(store, trainer, timeout_s=300)
        log = trainer.log_tail(400)
    print(log)

    assert len(done) == 1 and done[0]["alert_id"] == alert.alert_id  # trained once
    expected = {
        PRICES_SCORED: {"read": sales - len(HOSTILE_SALES) + len(HOSTILE_SCORED),
                        "skipped": expected_skips(HOSTILE_SCORED)},
        AUCTIONS_SOLD: {"read": sales, "skipped": expected_skips(HOSTILE_SALES)},
    }  # fmt: skip
    assert done[0]["skipped"] == expected
    window = store.window()
    assert window is not None and window["topics"] == expected
    assert "skipped malformed records" in log
    versions = registry.model_versions(registry.connect(settings), settings.model_name)
    assert [row["version"] for row in versions] == [done[0]["version"], champion.version]
    assert all(isinstance(row["test_mape"], float) for row in versions)

    status = gavel(settings, "trainer", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    print(status.stdout)
    out = status.stdout
    assert f"{champion.metrics['test_mape']:.2%}" in out  # the MAPE column renders
    assert done[0]["decision"] in out
    assert "value: 1" in out and "event_time: 3" in out
    assert f"{expected[AUCTIONS_SOLD]['read']}" in out


def test_an_alert_waited_on_at_sigterm_stays_uncommitted_and_is_trained_on_after_restart(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = trainer_settings(isolated)
    champion = train_first_champion(settings)
    feed_window(settings, hostile=False)
    store = TrainerStore(settings)
    starving = settings.replace(
        trainer={**settings.trainer.model_dump(), "min_new_labels": 1_000_000, "max_wait_s": 600}
    )

    with trainer_process(starving, tmp_path, name="trainer-1") as first:
        alert = send_alert(settings, champion.version)
        wait_logged(first, "waiting for labels", 120)
    # Leaving the block sent SIGTERM while the trainer waited for labels.
    log = first.log_file.read_text(errors="replace")
    assert "undecided" in log and "left uncommitted" in log, log[-3000:]
    assert store.decisions() == []

    with trainer_process(settings, tmp_path, name="trainer-2") as second:
        done = wait_trained(store, second, timeout_s=300)  # the same alert, delivered again
    assert [d["alert_id"] for d in store.decisions()] == [alert.alert_id]
    assert len(done) == 1
