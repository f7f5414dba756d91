"""Single-flight training: a Redis lock with an expiry, kept alive while work goes on.

If the trainer dies, the heartbeat stops and the lock expires after ``ttl_s``, so a
restarted (or another) trainer can take over. If the heartbeat cannot extend the lock,
for whatever reason (Redis down or restarted, the lock expired or taken), the lease is
lost: :meth:`Lease.check` raises :class:`LeaseLost` from then on, and the holder must
stop its work, because another trainer may already hold the lock. The mechanism is
:mod:`shell.lease` (shared with the monitor); this module names it for the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from shell.lease import Lease, LeaseLost, LeaseUnavailable
from shell.lease import lease as _lease

__all__ = ["Lease", "LeaseLost", "LeaseUnavailable", "lease"]


@contextmanager
def lease(client: redis.Redis, name: str, ttl_s: float, wait_s: float = 0.0) -> Iterator[Lease]:
    """Hold ``name`` for the duration of the block, renewing it every ``ttl_s / 3``."""
    with _lease(client, name, ttl_s, wait_s, what="training lock", holder="trainer") as held:
        yield held
