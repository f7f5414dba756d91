"""Faust's message delivery loop without four tasks per message.

faust-streaming's ``Consumer._drain_messages`` hands every fetched message to the
conductor with ``await self.wait_first(callback(message), self.suspend_flow.wait())``:
the delivery may then be abandoned if a rebalance suspends the flow meanwhile. But
``wait_first`` wraps the delivery, the flow event and the service's ``stopped`` and
``crashed`` events in four tasks, and ``asyncio.wait``\\s on them, for each message,
for a delivery that almost always completes without waiting for anything. Measured on
the worker over a backlog (CPU time of the process per listing, pipeline scorer, two
runs each): 191 and 207 µs with Faust's loop, 108 and 109 µs with this one.

:func:`deliver` runs the delivery coroutine eagerly, to its first suspension (what
Python 3.12's eager tasks do). When it completes there, as it does unless the flow is
suspended or the channel's queue is full, no task is made at all. Otherwise the rest of
it goes through ``wait_first`` exactly as before, so a rebalance still abandons it.

:func:`drain_messages` is faust-streaming 0.15.3's ``Consumer._drain_messages`` with that
one line changed; :func:`apply` installs it. A test pins the source it was copied from,
so that a Faust upgrade is reviewed rather than silently patched.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, cast

from faust.transport import consumer as faust_consumer

Delivery = Coroutine[Any, Any, Any]

FAUST_ORIGINAL = faust_consumer.Consumer._drain_messages  # what drain_messages was copied from


def eagerly(coro: Delivery) -> Delivery | None:
    """Run ``coro`` until it first waits; None if it finished, else the rest of it.

    >>> async def quick():
    ...     return 1
    >>> eagerly(quick()) is None
    True
    >>> async def slow():
    ...     await asyncio.sleep(0.01)
    ...     return 2
    >>> async def main():
    ...     rest = eagerly(slow())  # ran up to the sleep
    ...     return await rest  # the rest, awaited like any coroutine
    >>> asyncio.run(main())
    2
    """
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return _finish(coro, yielded)


async def _finish(coro: Delivery, yielded: Any) -> Any:
    """Drive a started coroutine to its end, waiting on what it yields as a task would."""
    while True:
        try:
            if yielded is None:  # a bare yield: asyncio.sleep(0)
                await asyncio.sleep(0)
            else:
                # As asyncio.Task does with what a coroutine yields: the future was
                # marked as awaited by it, and is now awaited on its behalf.
                yielded._asyncio_future_blocking = False
                await yielded
        except asyncio.CancelledError:
            if yielded is None or not yielded.cancelled():
                # This task was cancelled, not what the coroutine waits on: tell it.
                try:
                    yielded = coro.throw(asyncio.CancelledError())
                except StopIteration as stop:
                    return stop.value
                continue
        except BaseException:
            pass
        try:
            yielded = coro.send(None)  # its own await returns the future's result or raises
        except StopIteration as stop:
            return stop.value


async def drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - Faust's loop
    # faust-streaming 0.15.3, faust/transport/consumer.py, Consumer._drain_messages; the
    # only change is marked "Gavel". Runs as Faust's Fetcher task.
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(AsyncIterator[Any], getmany(timeout=1.0))

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # We have a gap in income messages
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None:  # noqa: SIM102 - as in Faust
                            if self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                        # Gavel: deliver eagerly; only a delivery that has to wait
                        # races the flow suspension in wait_first, as before.
                        rest = eagerly(callback(message))
                        if rest is not None:
                            await self.wait_first(rest, self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def apply() -> None:
    """Install :func:`drain_messages` as Faust's delivery loop (idempotent)."""
    method = cast(Callable[[Any, Any], Awaitable[None]], drain_messages)
    faust_consumer.Consumer._drain_messages = method  # type: ignore[method-assign,assignment]  # patching Faust on purpose
