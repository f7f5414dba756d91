"""The monitor's lease and fenced checkpoint against the real redis-server: who holds the
lease is visible, and only the holder can write the checkpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from gavel.settings import Settings
from monitor.checkpoint import CheckpointStore, Fence, Fenced, checkpoint_key, lease_key
from shell import redis_client
from shell.lease import Lease, current_holder, holder_token
from tests.conftest import fresh_namespace

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(stack: Settings) -> Settings:
    return stack.replace(namespace=fresh_namespace())


@pytest.fixture
def client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis_client.connect(settings, timeout_s=5)
    yield client
    client.delete(lease_key(settings), checkpoint_key(settings))
    client.close()


def test_the_holder_is_named_and_its_expiry_known(settings: Settings, client: redis.Redis) -> None:
    name = lease_key(settings)
    assert current_holder(client, name) is None
    token = holder_token("monitor")
    held = Lease(client, name, ttl_s=5, token=token, what="monitor lease")
    assert held.acquire()
    try:
        holder = current_holder(client, name)
        assert holder is not None and holder.token == token
        assert f":{os.getpid()}/" in holder.token  # host and pid: who to look for
        assert holder.expires_in_s is not None and 0 < holder.expires_in_s <= 5
        other = Lease(client, name, ttl_s=5, token=holder_token("monitor"))
        assert not other.acquire()
    finally:
        held.release()
    assert current_holder(client, name) is None


def test_only_the_lease_holder_writes_the_checkpoint(
    settings: Settings, client: redis.Redis
) -> None:
    store = CheckpointStore(client, checkpoint_key(settings))
    name = lease_key(settings)
    first = Lease(client, name, ttl_s=5, token=holder_token("monitor"))
    assert first.acquire()
    store.save(b"first", Fence(name, first.token))
    assert client.get(store.key) == b"first"
    # The first monitor is cut off; its lease goes and a second monitor takes it.
    first.release()
    second = Lease(client, name, ttl_s=5, token=holder_token("monitor"))
    assert second.acquire()
    try:
        store.save(b"second", Fence(name, second.token))
        with pytest.raises(Fenced, match=first.token):
            store.save(b"stale", Fence(name, first.token))
        assert client.get(store.key) == b"second"
    finally:
        second.release()
    with pytest.raises(Fenced):  # nobody holds it: nobody writes
        store.save(b"nobody", Fence(name, second.token))
    assert client.get(store.key) == b"second"
