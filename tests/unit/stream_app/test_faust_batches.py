"""Micro-batches off a channel queue: order, bounds, the wait, and one registration."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.faust_batches import batches, channel_queue


async def take_all(items: list[int], max_: int) -> list[list[int]]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    got: list[list[int]] = []
    source = batches(queue, max_, within=0.001)
    while sum(map(len, got)) < len(items):
        got.append(await anext(source))
    return got


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(), min_size=1, max_size=300), st.integers(1, 64))
def test_batches_keep_order_and_never_exceed_the_bound(items: list[int], max_: int) -> None:
    got = asyncio.run(take_all(items, max_))
    assert [item for batch in got for item in batch] == items
    assert all(1 <= len(batch) <= max_ for batch in got)
    assert all(len(batch) == max_ for batch in got[:-1])  # a full queue gives full batches


def test_a_batch_waits_within_for_late_events_then_goes() -> None:
    async def scenario() -> tuple[list[int], float]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        queue.put_nowait(1)
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, queue.put_nowait, 2)  # arrives within the wait
        started = time.monotonic()
        batch = await anext(batches(queue, max_=10, within=0.1))
        return batch, time.monotonic() - started

    batch, waited = asyncio.run(scenario())
    assert batch == [1, 2]
    assert 0.09 <= waited < 1.0  # held for `within`, as the queue stayed short of 10


class Channel:
    """A Faust channel's shape: iterating it registers a clone, which has the queue."""

    registrations = 0

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def __aiter__(self) -> Channel:
        Channel.registrations += 1
        return self

    async def __anext__(self) -> Any:
        return await self.queue.get()


class Stream:
    def __init__(self) -> None:
        self.channel = Channel()


def test_the_channel_is_registered_once_per_stream_even_after_an_agent_restart() -> None:
    stream = Stream()
    first, again = channel_queue(stream), channel_queue(stream)
    assert first is again is stream.channel.queue
    assert Channel.registrations == 1


class ThrowingQueue(asyncio.Queue[int]):
    """Faust stops a channel by throwing StopAsyncIteration into its queue's getters."""

    def __init__(self, items: int) -> None:
        super().__init__()
        self.left = items

    async def get(self) -> int:
        if self.left == 0:
            raise StopAsyncIteration
        self.left -= 1
        return self.left


def test_a_stopped_channel_ends_the_batches_quietly() -> None:
    async def scenario() -> list[list[int]]:
        return [batch async for batch in batches(ThrowingQueue(3), max_=10, within=0.01)]

    assert asyncio.run(scenario()) == []  # the unfinished batch is dropped, unacknowledged
