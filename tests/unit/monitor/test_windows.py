"""Tests for monitor.windows: tumbling windows by count and event-time period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.windows import TumblingWindows, Window

DAY0 = datetime(2015, 3, 2, tzinfo=UTC)  # midnight: a period boundary for whole-day periods


def at(hours: float) -> datetime:
    return DAY0 + timedelta(hours=hours)


def test_count_windows_close_at_max_events() -> None:
    windows: TumblingWindows[int] = TumblingWindows(max_events=3)
    closed = [windows.add(at(n), n) for n in range(7)]
    assert [w is not None for w in closed] == [False, False, True, False, False, True, False]
    first, second = closed[2], closed[5]
    assert first is not None and second is not None
    assert first.rows == [0, 1, 2]
    assert (first.start, first.end) == (at(0), at(2))
    assert second.rows == [3, 4, 5]
    assert (second.start, second.end) == (at(3), at(5))
    assert windows.open_size == 1


def test_count_windows_ignore_time_without_a_period() -> None:
    windows: TumblingWindows[str] = TumblingWindows(max_events=2)
    assert windows.add(at(500), "late-in-time") is None
    closed = windows.add(at(1), "early")
    assert closed is not None
    assert closed.rows == ["late-in-time", "early"]
    assert (closed.start, closed.end) == (at(1), at(500))


@pytest.mark.parametrize("max_events", [0, -1])
def test_max_events_must_be_positive(max_events: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TumblingWindows(max_events=max_events)


@pytest.mark.parametrize("period", [None, timedelta(0)])
def test_no_or_zero_period_means_count_only(period: timedelta | None) -> None:
    windows: TumblingWindows[int] = TumblingWindows(max_events=100, period=period)
    assert windows.period is None
    assert all(windows.add(at(24 * n), n) is None for n in range(10))
    assert windows.open_size == 10


def test_a_later_period_closes_the_window_and_opens_the_next() -> None:
    windows: TumblingWindows[str] = TumblingWindows(max_events=100, period=timedelta(days=1))
    assert windows.add(at(1), "a") is None
    assert windows.add(at(23.9), "b") is None
    closed = windows.add(at(24.1), "c")  # day 2
    assert closed is not None
    assert closed.rows == ["a", "b"]
    assert (closed.start, closed.end) == (at(1), at(23.9))
    assert windows.open_size == 1
    assert windows.add(at(30), "d") is None
    closed = windows.add(at(24 * 5), "e")  # skipping days closes once
    assert closed is not None
    assert closed.rows == ["c", "d"]
    assert (closed.start, closed.end) == (at(24.1), at(30))
    last = windows.flush()
    assert last is not None and last.rows == ["e"]


def test_count_closes_within_a_period() -> None:
    windows: TumblingWindows[int] = TumblingWindows(max_events=2, period=timedelta(days=1))
    assert windows.add(at(1), 1) is None
    closed = windows.add(at(2), 2)
    assert closed is not None and closed.rows == [1, 2]
    assert windows.add(at(3), 3) is None
    closed = windows.add(at(25), 4)  # next day: closes the one-row window
    assert closed is not None and closed.rows == [3]
    closed = windows.add(at(26), 5)
    assert closed is not None and closed.rows == [4, 5]
    assert windows.open_size == 0


def test_period_change_on_an_empty_window_closes_nothing() -> None:
    windows: TumblingWindows[int] = TumblingWindows(max_events=1, period=timedelta(days=1))
    first = windows.add(at(1), 1)
    assert first is not None and first.rows == [1]
    second = windows.add(at(25), 2)  # new day, but the open window was empty
    assert second is not None and second.rows == [2]


def test_late_rows_join_the_open_window() -> None:
    windows: TumblingWindows[str] = TumblingWindows(max_events=100, period=timedelta(days=1))
    windows.add(at(1), "a")
    windows.add(at(25), "b")  # day 2 opens
    assert windows.add(at(2), "late-1") is None  # day 1 was closed already
    assert windows.add(at(3), "late-2") is None
    assert windows.add(at(26), "c") is None
    closed = windows.add(at(49), "d")
    assert closed is not None
    assert closed.rows == ["b", "late-1", "late-2", "c"]
    assert (closed.start, closed.end) == (at(2), at(26))  # bounds cover the late rows


def test_flush_closes_the_open_window_once() -> None:
    windows: TumblingWindows[int] = TumblingWindows(max_events=10, period=timedelta(hours=6))
    assert windows.flush() is None
    windows.add(at(1), 1)
    windows.add(at(2), 2)
    closed = windows.flush()
    assert closed is not None and closed.rows == [1, 2]
    assert windows.flush() is None
    assert windows.open_size == 0


def test_window_bounds() -> None:
    window: Window[str] = Window()
    assert (len(window), window.start, window.end) == (0, None, None)
    window.add(at(5), "x")
    window.add(at(2), "y")
    window.add(at(9), "z")
    assert (len(window), window.start, window.end) == (3, at(2), at(9))
