"""Single-flight training: a Redis lock with an expiry, kept alive while work goes on.

If the trainer dies, the heartbeat stops and the lock expires after ``ttl_s``, so a
restarted (or another) trainer can take over. If the heartbeat cannot extend the lock,
for whatever reason (Redis down or restarted, the lock expired or taken), the lease is
lost: :meth:`Lease.check` raises :class:`LeaseLost` from then on, and the holder must
stop its work, because another trainer may already hold the lock. Built on redis-py's
``Lock``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.lock import Lock

log = logging.getLogger(__name__)


class LeaseUnavailable(RuntimeError):
    """Another trainer holds the lock."""


class LeaseLost(RuntimeError):
    """The lock could not be kept: the work done under it must be abandoned."""


class Lease:
    """A held lock and whether it is still ours, as far as the heartbeat knows."""

    def __init__(self, lock: Lock, name: str) -> None:
        self.lock = lock
        self.name = name
        self._lost: str | None = None

    def lose(self, why: str) -> None:
        self._lost = why

    @property
    def lost(self) -> str | None:
        """Why the lease was lost, or None while it holds."""
        return self._lost

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the heartbeat failed to extend the lock."""
        if self._lost is not None:
            raise LeaseLost(f"lost the training lock {self.name}: {self._lost}")

    def owned(self) -> bool:
        return self._lost is None and self.lock.owned()


@contextmanager
def lease(client: redis.Redis, name: str, ttl_s: float, wait_s: float = 0.0) -> Iterator[Lease]:
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
    held = Lease(lock, name)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                lock.reacquire()
            except Exception as exc:  # Redis down, lock expired or taken: all mean lost
                held.lose(f"{type(exc).__name__}: {exc}")
                log.error("lost the training lock %s (%s): aborting", name, held.lost)
                return

    beat = threading.Thread(target=heartbeat, name="lease-heartbeat", daemon=True)
    beat.start()
    try:
        yield held
    finally:
        stop.set()
        beat.join()
        if held.lost is None:
            try:
                lock.release()
            except Exception as exc:  # expired meanwhile, or Redis just went away
                log.warning("could not release the training lock %s: %s", name, exc)
