"""The local stack's real redis-server."""

from __future__ import annotations

import uuid

import pytest
import redis

from gavel.settings import Settings

pytestmark = pytest.mark.integration


def test_set_and_get_a_key(stack: Settings) -> None:
    client = redis.Redis.from_url(stack.redis_url)
    key = f"gavel-test:{uuid.uuid4().hex}"
    client.set(key, "champion", ex=60)
    assert client.get(key) == b"champion"
    assert client.ttl(key) > 0
    client.delete(key)
