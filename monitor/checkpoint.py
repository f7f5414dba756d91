"""Checkpoints of the monitor: its state together with the offsets it covers, in Redis.

One checkpoint is one Redis value, written by one ``SET``: the pickled
:class:`~monitor.core.MonitorState` and, for every partition read, the offset of the
next record to read. Both come from the same instant (between two records), so a
monitor restored from it and seeking to those offsets sees every later record exactly
once more. Kafka's committed offsets follow the checkpoint (for lag dashboards) but are
not what a restart reads.

The value is trusted like the rest of the namespace's Redis keys: pickle runs code on
load, so only the monitor may write it.

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


class CheckpointStore:
    """The namespace's monitor checkpoint in Redis (one key)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key

    def save(self, blob: bytes) -> None:
        self.client.set(self.key, blob)

    def load(self) -> Checkpoint | None:
        blob = cast(bytes | None, self.client.get(self.key))  # a sync client: bytes or None
        return decode(blob) if blob else None
