"""Tumbling windows by count and, optionally, by event-time period.

A window closes when it holds ``max_events`` rows, or when a row from a later
event-time period arrives (that row opens the next window). A late row, from a
period already closed, joins the open window.

>>> from datetime import datetime, timedelta, UTC
>>> windows = TumblingWindows(max_events=2)
>>> t = datetime(2015, 1, 5, tzinfo=UTC)
>>> windows.add(t, "a") is None
True
>>> windows.add(t, "b").rows
['a', 'b']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

Row = TypeVar("Row")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Window(Generic[Row]):
    rows: list[Row] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, event_time: datetime, row: Row) -> None:
        self.rows.append(row)
        if self.start is None or event_time < self.start:
            self.start = event_time
        if self.end is None or event_time > self.end:
            self.end = event_time


class TumblingWindows(Generic[Row]):
    def __init__(self, max_events: int, period: timedelta | None = None) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events
        self.period = period if period and period.total_seconds() > 0 else None
        self._open: Window[Row] = Window()
        self._period_index: int | None = None

    @property
    def open_size(self) -> int:
        """Rows in the open window."""
        return len(self._open)

    def _index(self, event_time: datetime) -> int:
        assert self.period is not None
        return int((event_time - _EPOCH) / self.period)

    def add(self, event_time: datetime, row: Row) -> Window[Row] | None:
        """Add a row; returns the window it closed, if any."""
        closed: Window[Row] | None = None
        if self.period is not None:
            index = self._index(event_time)
            if self._period_index is None:
                self._period_index = index
            elif index > self._period_index:
                closed = self.flush()
                self._period_index = index
        self._open.add(event_time, row)
        if closed is None and len(self._open) >= self.max_events:
            closed = self.flush()
        return closed

    def flush(self) -> Window[Row] | None:
        """Close the open window now (None if it is empty)."""
        if not self._open.rows:
            return None
        closed, self._open = self._open, Window()
        return closed
