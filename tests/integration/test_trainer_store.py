"""The trainer's Redis side against the real redis-server: the lease and TrainerStore."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from gavel.schemas import DriftAlert, DriftKind, Severity
from gavel.settings import Settings
from trainer.alert_decision import PromotionRecord, TrainerState
from trainer.lease import LeaseUnavailable, lease
from trainer.service import DECISIONS_KEPT, TrainerStore

pytestmark = pytest.mark.integration

T0 = datetime(2015, 5, 1, tzinfo=UTC)


@pytest.fixture
def client(isolated: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(isolated.redis_url)
    yield client
    keys = list(client.scan_iter(match=f"gavel:{isolated.namespace}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def lock_name(isolated: Settings) -> str:
    return f"gavel:{isolated.namespace}lease-test"


def alert(alert_id: str = "a-1") -> DriftAlert:
    return DriftAlert(
        alert_id=alert_id,
        kind=DriftKind.PERFORMANCE,
        severity=Severity.CRITICAL,
        window_start=T0,
        window_end=T0,
        window_size=1000,
        model_name="m",
        model_version="3",
        mape=0.2,
    )


# --- trainer.lease ---------------------------------------------------------------------------


def test_a_held_lease_cannot_be_taken_twice(client: redis.Redis, lock_name: str) -> None:
    with lease(client, lock_name, ttl_s=10):
        with (
            pytest.raises(LeaseUnavailable, match="held by another trainer"),
            lease(client, lock_name, ttl_s=10),
        ):
            pytest.fail("a second holder entered the block")
        started = time.monotonic()
        with pytest.raises(LeaseUnavailable), lease(client, lock_name, ttl_s=10, wait_s=0.5):
            pytest.fail("a second holder entered the block")
        assert time.monotonic() - started >= 0.4  # it waited before giving up
        assert client.exists(lock_name) == 1
    with lease(client, lock_name, ttl_s=10):  # free again once released
        assert client.exists(lock_name) == 1


def test_a_second_trainer_waiting_gets_the_lease_when_the_first_releases(
    client: redis.Redis, lock_name: str
) -> None:
    released = threading.Event()

    def first() -> None:
        with lease(client, lock_name, ttl_s=10):
            holding.set()
            time.sleep(1.0)
        released.set()

    holding = threading.Event()
    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert holding.wait(5)
        with lease(client, lock_name, ttl_s=10, wait_s=5):
            assert released.is_set()
    finally:
        thread.join()


def test_the_heartbeat_keeps_a_short_lease_alive(client: redis.Redis, lock_name: str) -> None:
    with lease(client, lock_name, ttl_s=1.5) as lock:
        token = client.get(lock_name)
        deadline = time.monotonic() + 4.0  # more than two and a half TTLs
        while time.monotonic() < deadline:
            time.sleep(0.4)
            assert client.exists(lock_name) == 1
            assert 0 < client.pttl(lock_name) <= 1500
        assert client.get(lock_name) == token  # still ours, never re-taken
        assert lock.owned()
    assert client.exists(lock_name) == 0


def test_the_lease_is_released_when_the_block_raises(client: redis.Redis, lock_name: str) -> None:
    with pytest.raises(RuntimeError, match="boom"), lease(client, lock_name, ttl_s=10):
        raise RuntimeError("boom")
    assert client.exists(lock_name) == 0


def test_a_dead_holders_lease_expires_and_can_be_taken(client: redis.Redis, lock_name: str) -> None:
    # A trainer that took the lock and died: nobody renews it.
    dead = client.lock(lock_name, timeout=1, thread_local=False)
    assert dead.acquire(blocking=False)
    with pytest.raises(LeaseUnavailable), lease(client, lock_name, ttl_s=5):
        pass
    started = time.monotonic()
    with lease(client, lock_name, ttl_s=5, wait_s=3) as lock:
        assert 0.3 < time.monotonic() - started < 3  # it waited for the expiry
        assert lock.owned()
        assert client.get(lock_name) != dead.local.token
        assert not dead.owned()
    assert client.exists(lock_name) == 0


# --- TrainerStore ----------------------------------------------------------------------------


def test_a_new_store_has_the_empty_state(isolated: Settings, client: redis.Redis) -> None:
    store = TrainerStore(isolated, client)
    assert store.load() == TrainerState()
    assert store.decisions() == []


def test_state_round_trips_through_redis(isolated: Settings, client: redis.Redis) -> None:
    store = TrainerStore(isolated, client)
    state = TrainerState(
        last_trained_at=1_700_000_000.5,
        last_data_end=datetime(2015, 3, 1, 6, tzinfo=UTC),
        seen_alerts=["x", "y"],
        last_promotion=PromotionRecord(
            version="4", previous_version="3", previous_mape=0.11, at=1_700_000_001.0
        ),
    )
    store.save(state)
    assert store.load() == state
    # A fresh store (a restarted trainer) reads the same state.
    assert TrainerStore(isolated).load() == state
    state.remember("z")
    store.save(state)
    assert store.load().seen_alerts == ["x", "y", "z"]


def test_decisions_are_newest_first(isolated: Settings, client: redis.Redis) -> None:
    store = TrainerStore(isolated, client)
    store.record(alert("a-1"), "ignore", "cooldown: 600s left after the last training")
    store.record(None, "ignore", "unreadable alert: bad JSON")
    store.record(alert("a-3"), "promoted", "beats the champion", version="5", seconds=12.5)

    decisions = store.decisions()
    assert [d["decision"] for d in decisions] == ["promoted", "ignore", "ignore"]
    newest = decisions[0]
    assert newest["alert_id"] == "a-3" and newest["kind"] == "performance"
    assert newest["version"] == "5" and newest["seconds"] == 12.5
    assert newest["reason"] == "beats the champion"
    assert datetime.fromisoformat(newest["at"]).tzinfo is not None
    assert decisions[1]["alert_id"] is None and decisions[1]["kind"] is None
    assert decisions[2]["alert_id"] == "a-1"
    assert [d["alert_id"] for d in store.decisions(limit=2)] == ["a-3", None]


def test_the_decision_log_is_capped(isolated: Settings, client: redis.Redis) -> None:
    store = TrainerStore(isolated, client)
    for i in range(DECISIONS_KEPT + 15):
        store.record(alert(f"a-{i}"), "ignore", f"reason {i}")
    assert client.llen(store.prefix + "decisions") == DECISIONS_KEPT
    kept = store.decisions(limit=DECISIONS_KEPT + 100)
    assert len(kept) == DECISIONS_KEPT
    assert kept[0]["alert_id"] == f"a-{DECISIONS_KEPT + 14}"
    assert kept[-1]["alert_id"] == "a-15"  # the oldest 15 were dropped
    assert len(store.decisions()) == 20


def test_status_is_set_and_cleared(isolated: Settings, client: redis.Redis) -> None:
    store = TrainerStore(isolated, client)
    key = store.prefix + "status"
    store.status("waiting for labels: 10/5000")
    assert client.get(key) == b"waiting for labels: 10/5000"
    store.status("training for alert a-1")
    assert client.get(key) == b"training for alert a-1"
    store.status(None)
    assert client.exists(key) == 0
    store.status(None)  # clearing twice is harmless
    assert client.exists(key) == 0


def test_keys_are_namespaced(isolated: Settings, client: redis.Redis) -> None:
    other_settings = isolated.replace(namespace=f"{isolated.namespace}other.")
    store, other = TrainerStore(isolated, client), TrainerStore(other_settings, client)
    try:
        assert store.prefix == f"gavel:{isolated.namespace}{isolated.model_name}:trainer:"
        assert store.lock_name.startswith(store.prefix)
        assert store.lock_name != other.lock_name
        store.save(TrainerState(last_trained_at=1.0, seen_alerts=["mine"]))
        store.record(alert(), "ignore", "mine")
        store.status("busy")

        assert other.load() == TrainerState()
        assert other.decisions() == []
        assert client.exists(other.prefix + "status") == 0

        other.save(TrainerState(last_trained_at=2.0))
        assert store.load().seen_alerts == ["mine"]
        assert store.load().last_trained_at == 1.0
        keys = {key.decode() for key in client.scan_iter(match=f"gavel:{isolated.namespace}*")}
        assert {store.prefix + name for name in ("state", "decisions", "status")} <= keys
        assert all(key.startswith("gavel:" + isolated.namespace) for key in keys)
    finally:
        client.delete(*(other.prefix + name for name in ("state", "decisions", "status")))


def test_the_store_lock_name_works_as_a_lease(isolated: Settings, client: redis.Redis) -> None:
    store = TrainerStore(isolated, client)
    with lease(client, store.lock_name, ttl_s=5):
        assert client.exists(store.lock_name) == 1
        with (
            pytest.raises(LeaseUnavailable, match=store.lock_name),
            lease(TrainerStore(isolated).client, store.lock_name, ttl_s=5),
        ):
            pass
    assert client.exists(store.lock_name) == 0
