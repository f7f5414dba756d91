"""Redis stopped, on a throwaway redis-server (never the shared one): the lease is lost
and its holder stops before anyone else can train, and the trainer service waits for
Redis, does not exit, and trains once after Redis returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gavel.settings import Settings
from shell import registry
from tests.integration.trainer_fixtures import (
    ThrowawayRedis,
    feed_window,
    send_alert,
    train_first_champion,
    trainer_process,
    trainer_settings,
    wait_logged,
    wait_trained,
)
from trainer.lease import LeaseLost, lease
from trainer.service import TrainerStore

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_a_lost_lease_stops_its_holder_before_another_trainer_can_take_it(
    own_redis: ThrowawayRedis,
) -> None:
    ttl = 1.5
    name = "gavel:test:lease"
    first_client = redis.Redis.from_url(own_redis.url, socket_timeout=1, socket_connect_timeout=1)
    second_client = redis.Redis.from_url(own_redis.url, socket_timeout=1, socket_connect_timeout=1)
    intervals: dict[str, list[float]] = {}
    holding = threading.Event()
    errors: list[BaseException] = []

    def first_trainer() -> None:
        try:
            with lease(first_client, name, ttl_s=ttl) as held:
                intervals["first"] = [time.monotonic()]
                holding.set()
                while True:  # "training": one checkpoint per boosting round
                    held.check()
                    time.sleep(0.05)
        except LeaseLost:
            intervals["first"].append(time.monotonic())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=first_trainer)
    thread.start()
    try:
        assert holding.wait(5)
        own_redis.kill()  # SIGKILL: the lock goes with it
        with pytest.raises(redis.ConnectionError), lease(second_client, name, ttl_s=ttl):
            pytest.fail("a lease was granted while Redis was down")
        thread.join(timeout=10)
        assert not thread.is_alive() and not errors, errors
        assert len(intervals["first"]) == 2, "the first trainer did not notice the lost lease"
        own_redis.start()  # empty: nothing remembers the first lock
        with lease(second_client, name, ttl_s=ttl, wait_s=5) as held:
            intervals["second"] = [time.monotonic()]
            held.check()
    finally:
        thread.join(timeout=10)
    first_start, first_end = intervals["first"]
    assert first_end - first_start < ttl * 2  # noticed within about a heartbeat
    assert first_end < intervals["second"][0]  # never two trainers at once
    print(f"lease lost after {first_end - first_start:.2f}s; the second took it after")


def test_the_trainer_waits_for_redis_and_trains_once_it_returns(
    isolated: Settings, own_redis: ThrowawayRedis, tmp_path: Path
) -> None:
    settings = trainer_settings(isolated.replace(redis_port=own_redis.port))
    assert settings.redis_url == own_redis.url
    champion = train_first_champion(settings)
    feed_window(settings, hostile=False)
    store = TrainerStore(settings)

    with trainer_process(settings, tmp_path) as trainer:
        own_redis.kill()
        down_at = time.monotonic()
        alert = send_alert(settings, champion.version)
        wait_logged(trainer, "redis unavailable", 60)
        wait_logged(trainer, "retry 3 in", 60)  # still waiting, with backoff
        assert trainer.pid() is not None, "the trainer exited while Redis was down"
        own_redis.start()
        back_at = time.monotonic()
        done = wait_trained(store, trainer, timeout_s=300)
        trained_at = time.monotonic()
        log = trainer.log_tail(300)
        assert trainer.pid() is not None
    print(log)

    assert len(done) == 1 and done[0]["alert_id"] == alert.alert_id
    assert "redis" in done[0]["waited_s"]
    versions = registry.model_versions(registry.connect(settings), settings.model_name)
    assert len(versions) == 2  # the champion and exactly one retrained version
    print(
        f"Redis down {back_at - down_at:.1f}s; trained {trained_at - back_at:.1f}s after it "
        f"returned; waits recorded: {done[0]['waited_s']}"
    )


def test_redis_lost_mid_training_aborts_it_and_the_alert_is_trained_on_once_redis_returns(
    isolated: Settings, own_redis: ThrowawayRedis, tmp_path: Path
) -> None:
    settings = trainer_settings(isolated.replace(redis_port=own_redis.port), lock_ttl_s=2)
    champion = train_first_champion(settings)
    feed_window(settings, hostile=False)
    store = TrainerStore(settings)
    status = store.prefix + "status"

    with trainer_process(settings, tmp_path) as trainer:
        alert = send_alert(settings, champion.version)
        deadline = time.monotonic() + 120
        while not (store.client.get(status) or b"").startswith(b"training"):
            assert time.monotonic() < deadline, trainer.log_tail(60)
            time.sleep(0.05)
        own_redis.kill()  # mid-training: the lease cannot be extended any more
        wait_logged(trainer, "lost the training lock", 30)
        # The training was abandoned, and the alert left undecided. Whether the lost lease
        # or the next Redis call surfaces first is a race: either names the dependency.
        wait_logged(trainer, "undecided", 30)  # (rich wraps long log lines)
        versions = registry.model_versions(registry.connect(settings), settings.model_name)
        # Nothing was promoted. A fit that ended just before the kill may have registered
        # its version already; it is then marked abandoned, never served.
        assert [row["version"] for row in versions if "champion" in row["aliases"]] == ["1"]
        aborted = [row for row in versions if row["version"] != champion.version]
        assert all("abandoned" in row.get("rejection_reason", "") for row in aborted), aborted
        own_redis.start()
        done = wait_trained(store, trainer, timeout_s=300)
        log = trainer.log_tail(300)
    print(log)

    assert len(done) == 1 and done[0]["alert_id"] == alert.alert_id
    versions = registry.model_versions(registry.connect(settings), settings.model_name)
    assert len(versions) == 2 + len(aborted)  # the retry registered one more
