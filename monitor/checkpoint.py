"""Checkpoints of the monitor: its state together with the offsets it covers, in Redis.

One checkpoint is one Redis value, written by one ``SET``: the pickled
:class:`~monitor.core.MonitorState` and, for every partition read, the offset of the
next record to read. Both come from the same instant (between two records), so a
monitor restored from it and seeking to those offsets sees every later record exactly
once more. Kafka's committed offsets follow the checkpoint (for lag dashboards) but are
not what a restart reads.

The value is trusted like the rest of the namespace's Redis keys: pickle runs code on
load, so only the monitor may write it. A monitor writes it only while it holds the
namespace's lease (:func:`lease_key`): the write is fenced by the lease's token, in one
atomic script, so a monitor that lost its lease (paused, cut off) can never overwrite
the checkpoint of the one that took over.

>>> blob = encode(Checkpoint({("t", 0): 12}, state={"any": "picklable"}))
>>> decode(blob).positions
{('t', 0): 12}
>>> decode(b"garbage") is None
True
"""

from __future__ import annotations

import logging
import pickle
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from gavel.settings import Settings
from shell.lease import LeaseLost

log = logging.getLogger(__name__)

FORMAT = 2  # bump when MonitorState changes shape: older checkpoints are then ignored

Positions = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read


@dataclass(frozen=True)
class Checkpoint:
    positions: Positions
    state: Any  # a monitor.core.MonitorState
    saved_at: float = field(default_factory=time.time)

    @property
    def covered(self) -> int:
        """Records covered: the sum of the next offsets."""
        return sum(self.positions.values())


def encode(checkpoint: Checkpoint) -> bytes:
    payload = {
        "format": FORMAT,
        "positions": checkpoint.positions,
        "state": checkpoint.state,
        "saved_at": checkpoint.saved_at,
    }
    return zlib.compress(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL), 1)


def decode(blob: bytes) -> Checkpoint | None:
    """The checkpoint in ``blob``; None (logged) when unreadable or of another format."""
    try:
        payload = pickle.loads(zlib.decompress(blob))
    except Exception as exc:
        log.warning("ignoring an unreadable monitor checkpoint: %s", exc)
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        log.warning("ignoring a monitor checkpoint of another format")
        return None
    return Checkpoint(payload["positions"], payload["state"], payload["saved_at"])


def checkpoint_key(settings: Settings) -> str:
    return f"{settings.namespace}gavel:monitor:checkpoint"


def lease_key(settings: Settings) -> str:
    """The lease that one monitor of the namespace holds (:mod:`shell.lease`)."""
    return f"{settings.namespace}gavel:monitor:lease"


@dataclass(frozen=True)
class Fence:
    """A checkpoint write is allowed while the lease ``key`` holds ``token``."""

    key: str
    token: str


class Fenced(LeaseLost):
    """The lease is not (or no longer) held with the fence's token: nothing was written."""


# SET the checkpoint only if the lease still holds our token, atomically in Redis.
_FENCED_SET = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('set', KEYS[2], ARGV[2])
    return 1
end
return 0
"""


class CheckpointStore:
    """The namespace's monitor checkpoint in Redis (one key)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self._fenced_set = client.register_script(_FENCED_SET)

    def save(self, blob: bytes, fence: Fence | None = None) -> None:
        """Write ``blob``; with ``fence``, only while the fence's lease is held (else
        :class:`Fenced` is raised and nothing is written)."""
        if fence is None:
            self.client.set(self.key, blob)
        elif not self._fenced_set(keys=[fence.key, self.key], args=[fence.token, blob]):
            raise Fenced(f"the lease {fence.key} is no longer held by {fence.token}")

    def load(self) -> Checkpoint | None:
        blob = cast(bytes | None, self.client.get(self.key))  # a sync client: bytes or None
        return decode(blob) if blob else None
