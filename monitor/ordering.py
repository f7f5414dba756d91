"""Event-time order across partitions: watermarks and a reorder buffer.

Each partition of a topic is in event-time order, but partitions progress at their own
pace, so a consumer sees their events interleaved out of order. A stream's watermark is
the slowest partition's latest event time: nothing older can still arrive. Windows are
fed from a buffer that releases events in time order up to the watermark.

>>> from datetime import datetime, UTC
>>> marks = PartitionWatermark(partitions=2)
>>> marks.update(0, datetime(2015, 1, 2, tzinfo=UTC)) is None  # partition 1 not seen yet
True
>>> marks.update(1, datetime(2015, 1, 1, tzinfo=UTC)).day
1
"""

from __future__ import annotations

import heapq
import itertools
from datetime import datetime
from typing import Generic, TypeVar

Item = TypeVar("Item")


class PartitionWatermark:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.latest: dict[int, datetime] = {}
        self.value: datetime | None = None

    def update(self, partition: int, event_time: datetime) -> datetime | None:
        """Record an event; returns the new watermark when it moved."""
        latest = self.latest
        current = latest.get(partition)
        if current is not None and event_time <= current:
            return None
        latest[partition] = event_time
        if len(latest) < self.partitions:
            return None
        if current is not None and self.value is not None and current > self.value:
            return None  # this partition was not the slowest: the minimum cannot move
        watermark = min(latest.values())
        if self.value is not None and watermark <= self.value:
            return None
        self.value = watermark
        return watermark


class EventTimeBuffer(Generic[Item]):
    """Holds events until the watermark passes them, then releases them in time order.

    At most ``capacity`` events are held; beyond that the oldest are released early
    (a stalled partition must not hold the monitor hostage).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._heap: list[tuple[datetime, int, Item]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, event_time: datetime, item: Item) -> list[tuple[datetime, Item]]:
        """Hold ``item``; returns the oldest events forced out by the capacity."""
        heap = self._heap
        heapq.heappush(heap, (event_time, next(self._sequence), item))
        if len(heap) <= self.capacity:
            return []
        released = []
        while len(heap) > self.capacity:
            time, _, oldest = heapq.heappop(heap)
            released.append((time, oldest))
        return released

    def release(self, watermark: datetime | None) -> list[tuple[datetime, Item]]:
        """Events at or before ``watermark``, oldest first."""
        heap = self._heap
        if watermark is None or not heap or heap[0][0] > watermark:
            return []  # the common case, once per record
        released = []
        while heap and heap[0][0] <= watermark:
            time, _, item = heapq.heappop(heap)
            released.append((time, item))
        return released
