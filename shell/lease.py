"""Leases in Redis: one holder at a time, kept alive by a heartbeat, free again soon
after a holder dies. The trainer's single-flight training and the monitor's one
instance per namespace both hold one.

A lease is a Redis key written with ``SET NX PX`` (redis-py's ``Lock``) whose value is
the holder's token. A heartbeat thread extends it every ``ttl_s / 3``. If the heartbeat
cannot extend it, for whatever reason (Redis down or restarted, the key expired or
taken), the lease is lost: :meth:`Lease.check` raises :class:`LeaseLost` from then on,
and the holder must stop the work the lease protects, because another holder may
already have it. A holder killed with -9 stops renewing, so its lease expires ``ttl_s``
later and a candidate takes it.

The token says who holds the lease (:func:`holder_token`: role, host, process id and a
random part), so that a candidate can tell who it waits for (:func:`current_holder`),
and a holder can make a write conditional on still holding it (the token is the fence).

>>> holder_token("monitor").startswith("monitor@")
True
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from redis.lock import Lock

log = logging.getLogger(__name__)


class LeaseUnavailable(RuntimeError):
    """Another holder has the lease."""


class LeaseLost(RuntimeError):
    """The lease could not be kept: the work done under it must be abandoned."""


def holder_token(role: str) -> str:
    """A unique token that names its holder: ``role@host:pid/random``."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}/{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, and for how long at most without renewing it."""

    token: str
    expires_in_s: float | None  # None: the key has no expiry


def current_holder(client: redis.Redis, name: str) -> Holder | None:
    """The holder of ``name`` now, or None when it is free."""
    pipe = client.pipeline(transaction=True)
    pipe.get(name)
    pipe.pttl(name)
    token, pttl = pipe.execute()
    if token is None:
        return None
    text = token.decode(errors="replace") if isinstance(token, bytes) else str(token)
    return Holder(text, pttl / 1000 if pttl is not None and pttl >= 0 else None)


class Lease:
    """One candidate's lease on ``name``: acquire it, keep it alive, know when it is lost.

    ``what`` names the lease in messages ("training lock", "monitor lease").
    """

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        ttl_s: float,
        token: str | None = None,
        what: str = "lease",
    ) -> None:
        self.name = name
        self.ttl_s = ttl_s
        self.what = what
        self.token = token or uuid.uuid4().hex
        # thread_local=False: the heartbeat thread renews the token the caller acquired.
        self.lock: Lock = client.lock(name, timeout=ttl_s, thread_local=False)
        self._lost: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self, wait_s: float = 0.0) -> bool:
        """Take the lease (waiting up to ``wait_s``) and start the heartbeat; False when
        another holder has it. Raises ``redis.RedisError`` when Redis cannot answer."""
        taken = self.lock.acquire(
            blocking=wait_s > 0, blocking_timeout=wait_s or None, token=self.token
        )
        if taken:
            self._beat = threading.Thread(
                target=self._heartbeat, name=f"lease-{self.what}", daemon=True
            )
            self._beat.start()
        return bool(taken)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.lock.reacquire()
            except Exception as exc:  # Redis down, lock expired or taken: all mean lost
                self.lose(f"{type(exc).__name__}: {exc}")
                log.error("lost the %s %s (%s): aborting", self.what, self.name, self._lost)
                return

    def lose(self, why: str) -> None:
        self._lost = why

    @property
    def lost(self) -> str | None:
        """Why the lease was lost, or None while it holds."""
        return self._lost

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the heartbeat failed to extend the lease."""
        if self._lost is not None:
            raise LeaseLost(f"lost the {self.what} {self.name}: {self._lost}")

    def owned(self) -> bool:
        return self._lost is None and self.lock.owned()

    def release(self) -> None:
        """Stop the heartbeat and free the lease (unless it was lost: then it is not ours)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
            if self._lost is None:
                try:
                    self.lock.release()
                except Exception as exc:  # expired meanwhile, or Redis just went away
                    log.warning("could not release the %s %s: %s", self.what, self.name, exc)


@contextmanager
def lease(
    client: redis.Redis,
    name: str,
    ttl_s: float,
    wait_s: float = 0.0,
    *,
    what: str = "lease",
    holder: str = "holder",
    token: str | None = None,
) -> Iterator[Lease]:
    """Hold ``name`` for the duration of the block, renewing it every ``ttl_s / 3``.

    Raises :class:`LeaseUnavailable` ("held by another ``holder``") when it is taken.
    """
    held = Lease(client, name, ttl_s, token, what)
    if not held.acquire(wait_s):
        raise LeaseUnavailable(f"{name} is held by another {holder}")
    try:
        yield held
    finally:
        held.release()
