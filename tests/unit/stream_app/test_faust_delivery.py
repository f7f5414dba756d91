"""Eager delivery: a coroutine run to its first wait, and the rest run as a task would."""

from __future__ import annotations

import asyncio
import hashlib
import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app import faust_delivery
from stream_app.faust_delivery import eagerly

# faust-streaming 0.15.3's Consumer._drain_messages, which faust_delivery copies: an
# upgrade that changes it must be reviewed (and this hash updated) before it is patched.
FAUST_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


def test_the_copied_faust_loop_is_the_one_installed_faust_has() -> None:
    source = inspect.getsource(faust_delivery.FAUST_ORIGINAL)
    assert hashlib.sha256(source.encode()).hexdigest() == FAUST_DRAIN_SHA256


def test_a_delivery_that_never_waits_runs_at_once_without_a_task() -> None:
    done: list[int] = []

    async def deliver() -> None:
        done.append(1)

    async def main() -> object:
        before = len(asyncio.all_tasks())
        rest = eagerly(deliver())
        return rest, len(asyncio.all_tasks()) - before

    rest, new_tasks = asyncio.run(main())
    assert rest is None and done == [1] and new_tasks == 0


Step = tuple[str, int]  # ("sleep0" | "future" | "fail" | "sleep", n)


async def scripted(steps: list[Step], log: list[str]) -> int:
    total = 0
    loop = asyncio.get_running_loop()
    for kind, n in steps:
        if kind == "sleep0":
            await asyncio.sleep(0)
        elif kind == "sleep":
            await asyncio.sleep(n / 10_000)
        elif kind == "future":
            future: asyncio.Future[int] = loop.create_future()
            loop.call_soon(future.set_result, n)
            total += await future
        else:
            future = loop.create_future()
            loop.call_soon(future.set_exception, ValueError(n))
            try:
                await future
            except ValueError as exc:
                log.append(f"caught {exc}")
                total -= n
    return total


steps = st.lists(
    st.tuples(st.sampled_from(["sleep0", "future", "fail", "sleep"]), st.integers(0, 5)),
    max_size=8,
)


@settings(max_examples=80, deadline=None)
@given(steps)
def test_the_rest_behaves_as_the_plain_coroutine(script: list[Step]) -> None:
    async def plain() -> tuple[int, list[str]]:
        log: list[str] = []
        return await scripted(script, log), log

    async def eager() -> tuple[int, list[str]]:
        log: list[str] = []
        coro = scripted(script, log)
        rest = eagerly(coro)
        if rest is None:  # finished in its first step: its result is not needed by Faust
            return await scripted(script, []), log
        return await rest, log

    assert asyncio.run(eager()) == asyncio.run(plain())


def test_an_exception_after_a_wait_reaches_the_awaiter() -> None:
    async def deliver() -> None:
        await asyncio.sleep(0.001)
        raise KeyError("boom")

    async def main() -> None:
        rest = eagerly(deliver())
        assert rest is not None
        await rest

    with pytest.raises(KeyError):
        asyncio.run(main())


def test_a_delivery_abandoned_by_a_rebalance_is_cancelled_and_cleans_up() -> None:
    """What Faust's wait_first does when the flow is suspended first."""
    cleaned: list[str] = []

    async def deliver(gate: asyncio.Event) -> None:
        try:
            await gate.wait()  # flow control: suspended during a rebalance
        finally:
            cleaned.append("released")

    async def main() -> bool:
        gate, suspended = asyncio.Event(), asyncio.Event()
        rest = eagerly(deliver(gate))
        assert rest is not None
        task = asyncio.ensure_future(rest)
        asyncio.get_running_loop().call_later(0.01, suspended.set)
        _, pending = await asyncio.wait(
            [task, asyncio.ensure_future(suspended.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for future in pending:
            future.cancel()
        await asyncio.sleep(0.01)
        return task.cancelled()

    assert asyncio.run(main()) is True
    assert cleaned == ["released"]
