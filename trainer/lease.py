"""Single-flight training: a Redis lock with an expiry, kept alive while work goes on.

If the trainer dies, the heartbeat stops and the lock expires after ``ttl_s``, so a
restarted (or another) trainer can take over. Built on redis-py's ``Lock``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)


class LeaseUnavailable(RuntimeError):
    """Another trainer holds the lock."""


@contextmanager
def lease(
    client: redis.Redis, name: str, ttl_s: float, wait_s: float = 0.0
) -> Iterator[redis.lock.Lock]:
    """Hold ``name`` for the duration of the block, renewing it every ``ttl_s / 3``."""
    # thread_local=False: the heartbeat thread renews the token the caller acquired.
    lock = client.lock(
        name,
        timeout=ttl_s,
        blocking=wait_s > 0,
        blocking_timeout=wait_s or None,
        thread_local=False,
    )
    if not lock.acquire():
        raise LeaseUnavailable(f"{name} is held by another trainer")
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                lock.reacquire()
            except LockError:
                log.error("lost the training lock %s", name)
                return

    beat = threading.Thread(target=heartbeat, name="lease-heartbeat", daemon=True)
    beat.start()
    try:
        yield lock
    finally:
        stop.set()
        beat.join()
        try:
            lock.release()
        except LockError:
            log.warning("training lock %s had already expired", name)
