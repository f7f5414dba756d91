"""Micro-batches of events straight off a Faust agent's channel.

``faust.Stream.noack_take`` builds its batches through the stream's per-event
machinery: a processor call, a passive drainer task and two asyncio events per event,
plus the stream's sensors. The worker needs none of it: it takes the events its
channel queue already holds, up to ``max_`` at once, waiting at most ``within`` for a
batch to fill, and acknowledges each event itself once its outputs are on the broker.

Faust still does everything else: the consumer group, fetching, flow control during
rebalances (the queue is a ``FlowControlQueue`` that Faust clears when it resumes), the
acknowledged offsets and their commits.

>>> import asyncio
>>> async def demo():
...     queue = asyncio.Queue()
...     for n in range(5):
...         queue.put_nowait(n)
...     return await anext(batches(queue, max_=3, within=0.01))
>>> asyncio.run(demo())
[0, 1, 2]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_CHANNEL = "_gavel_channel_iterator"


class Queue(Protocol[T_co]):
    """What is used of a Faust channel's queue (an ``asyncio.Queue`` subclass)."""

    def empty(self) -> bool: ...

    def get_nowait(self) -> T_co: ...

    async def get(self) -> T_co: ...


async def batches(queue: Queue[T], max_: int, within: float) -> AsyncIterator[list[T]]:
    """Lists of up to ``max_`` items: as many as are waiting, or what arrives within
    ``within`` seconds of the first."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            batch = [await queue.get()]
        except StopAsyncIteration:  # what Faust throws into its queues when it stops
            return
        deadline = loop.time() + within
        while len(batch) < max_:
            while len(batch) < max_ and not queue.empty():
                batch.append(queue.get_nowait())
            remaining = deadline - loop.time()
            if len(batch) >= max_ or remaining <= 0:
                break
            try:  # only when the queue ran dry: a timer per batch, not per event
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
            except StopAsyncIteration:
                return  # stopping: this batch is not acknowledged, the next owner scores it
        yield batch


def channel_queue(stream: Any) -> Queue[Any]:
    """The queue Faust delivers the agent's events to.

    Iterating the stream's channel registers it with Faust's conductor; an agent that
    Faust restarts gets the same stream back, so the iterator is kept on the stream and
    registered once (a second one would be fed too, and fill up unread).
    """
    channel = getattr(stream, _CHANNEL, None)
    if channel is None:
        channel = aiter(stream.channel)
        setattr(stream, _CHANNEL, channel)
    return channel.queue  # type: ignore[no-any-return]
