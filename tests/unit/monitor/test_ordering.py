"""Tests for monitor.ordering: partition watermarks and the event-time reorder buffer."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.ordering import EventTimeBuffer, PartitionWatermark

T0 = datetime(2015, 3, 2, 14, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# -- PartitionWatermark -------------------------------------------------------------------


def test_watermark_is_none_until_every_partition_was_seen() -> None:
    marks = PartitionWatermark(partitions=3)
    assert marks.update(0, at(10)) is None
    assert marks.update(1, at(20)) is None
    assert marks.update(0, at(30)) is None
    assert marks.value is None
    assert marks.update(2, at(5)) == at(5)  # the slowest partition sets it
    assert marks.value == at(5)


def test_watermark_is_the_slowest_partition_and_only_reports_moves() -> None:
    marks = PartitionWatermark(partitions=2)
    marks.update(0, at(10))
    assert marks.update(1, at(50)) == at(10)
    assert marks.update(1, at(60)) is None  # partition 0 still holds it back
    assert marks.value == at(10)
    assert marks.update(0, at(40)) == at(40)
    assert marks.update(0, at(70)) == at(60)
    assert marks.latest == {0: at(70), 1: at(60)}


def test_watermark_never_moves_back() -> None:
    marks = PartitionWatermark(partitions=2)
    marks.update(0, at(10))
    marks.update(1, at(20))
    assert marks.value == at(10)
    # A partition going back in time (a re-sent event) changes nothing.
    assert marks.update(0, at(5)) is None
    assert marks.update(1, at(1)) is None
    assert marks.latest == {0: at(10), 1: at(20)}
    assert marks.value == at(10)
    # Equal times are not a move either.
    assert marks.update(0, at(10)) is None
    assert marks.value == at(10)


def test_single_partition_watermark_follows_its_events() -> None:
    marks = PartitionWatermark(partitions=1)
    assert marks.update(0, at(1)) == at(1)
    assert marks.update(0, at(3)) == at(3)
    assert marks.update(0, at(2)) is None
    assert marks.value == at(3)


def test_watermark_is_monotone_over_a_random_interleaving() -> None:
    rng = random.Random(4)
    marks = PartitionWatermark(partitions=4)
    clocks = [0.0] * 4
    seen: list[datetime] = []
    for _ in range(2000):
        partition = rng.randrange(4)
        clocks[partition] += rng.random() * (5 if partition else 1)  # partition 0 is slow
        moved = marks.update(partition, at(clocks[partition]))
        if moved is not None:
            seen.append(moved)
            assert moved == at(min(clocks))
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    assert marks.value == at(min(clocks))


# -- EventTimeBuffer ----------------------------------------------------------------------


def test_buffer_releases_in_time_order_up_to_the_watermark() -> None:
    buffer: EventTimeBuffer[str] = EventTimeBuffer(capacity=100)
    for minute, item in [(5, "e"), (1, "a"), (3, "c"), (2, "b"), (4, "d")]:
        assert buffer.push(at(minute), item) == []
    assert buffer.release(None) == []
    assert len(buffer) == 5
    assert buffer.release(at(0)) == []
    assert buffer.release(at(3)) == [(at(1), "a"), (at(2), "b"), (at(3), "c")]  # inclusive
    assert len(buffer) == 2
    assert buffer.release(at(3)) == []
    assert buffer.release(at(10)) == [(at(4), "d"), (at(5), "e")]
    assert len(buffer) == 0


def test_buffer_ties_keep_arrival_order() -> None:
    buffer: EventTimeBuffer[str] = EventTimeBuffer(capacity=100)
    for item in ["first", "second", "third"]:
        buffer.push(at(7), item)
    buffer.push(at(6), "earlier")
    assert [item for _, item in buffer.release(at(7))] == ["earlier", "first", "second", "third"]


def test_buffer_ties_never_compare_items() -> None:
    """Items without an ordering (dicts) must not be compared on equal times."""
    buffer: EventTimeBuffer[dict[str, int]] = EventTimeBuffer(capacity=1)
    buffer.push(at(1), {"n": 1})
    forced = buffer.push(at(1), {"n": 2})
    assert forced == [(at(1), {"n": 1})]
    assert buffer.release(at(1)) == [(at(1), {"n": 2})]


def test_buffer_capacity_forces_the_oldest_out() -> None:
    buffer: EventTimeBuffer[str] = EventTimeBuffer(capacity=3)
    assert buffer.push(at(30), "c") == []
    assert buffer.push(at(10), "a") == []
    assert buffer.push(at(20), "b") == []
    assert buffer.push(at(40), "d") == [(at(10), "a")]
    assert buffer.push(at(5), "early") == [(at(5), "early")]  # older than all held
    assert len(buffer) == 3
    assert buffer.release(at(100)) == [(at(20), "b"), (at(30), "c"), (at(40), "d")]


@pytest.mark.parametrize("capacity", [1, 2, 7])
def test_buffer_never_holds_more_than_capacity(capacity: int) -> None:
    buffer: EventTimeBuffer[int] = EventTimeBuffer(capacity=capacity)
    out: list[int] = []
    for n in range(20):
        out += [item for _, item in buffer.push(at(20 - n), n)]  # newest first
        assert len(buffer) <= capacity
    assert len(out) == 20 - capacity


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), max_size=60))
def test_watermark_is_the_running_minimum_of_every_partitions_latest(
    updates: list[tuple[int, int]],
) -> None:
    marks = PartitionWatermark(partitions=4)
    latest: dict[int, datetime] = {}
    expected: datetime | None = None
    for partition, minute in updates:
        before = marks.value
        moved = marks.update(partition, at(minute))
        latest[partition] = max(latest.get(partition, at(minute)), at(minute))
        if len(latest) == 4:
            candidate = min(latest.values())
            expected = candidate if expected is None else max(expected, candidate)
        assert marks.value == expected
        assert moved == (expected if expected != before else None)
