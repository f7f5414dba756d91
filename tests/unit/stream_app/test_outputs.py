"""Per-batch delivery confirmation, with a stand-in for librdkafka's producer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from stream_app import outputs as outputs_module
from stream_app.batch import Output
from stream_app.outputs import BatchOutputs

Callback = Callable[[Any, Any], None]


class FakeProducer:
    """Queues produce calls; ``poll`` reports them delivered, or failed when told to."""

    def __init__(self, fail_first: int = 0, queue_limit: int | None = None) -> None:
        self.queued: list[tuple[str, bytes, Callback]] = []
        self.sent: list[tuple[str, bytes]] = []
        self.fail_first = fail_first
        self.queue_limit = queue_limit
        self.buffer_errors = 0

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Callback) -> None:
        if self.queue_limit is not None and len(self.queued) >= self.queue_limit:
            self.buffer_errors += 1
            raise BufferError("queue full")
        self.queued.append((topic, value, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        served, self.queued = self.queued, []
        for topic, value, callback in served:
            if self.fail_first > 0:
                self.fail_first -= 1
                callback("broker said no", None)
            else:
                self.sent.append((topic, value))
                callback(None, None)
        return len(served)


def outputs(n: int, topic: str = "scored") -> list[tuple[str, Output]]:
    return [(topic, Output(key=f"k{i}".encode(), value=f"v{i}".encode())) for i in range(n)]


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 5))


def test_the_future_resolves_only_once_every_output_is_delivered() -> None:
    async def scenario() -> list[bool]:
        producer = FakeProducer()
        producer.poll = lambda timeout=0: 0  # type: ignore[method-assign]  # hold reports
        sink = BatchOutputs(settings=None, producer=producer)  # type: ignore[arg-type]
        delivered = sink.send(outputs(3))
        states = [delivered.done()]
        for *_, callback in producer.queued[:2]:
            callback(None, None)
        states.append(delivered.done())
        producer.queued[2][2](None, None)
        await asyncio.sleep(0)
        states.append(delivered.done())
        return states

    assert run(scenario()) == [False, False, True]


def test_an_empty_batch_is_confirmed_at_once() -> None:
    async def scenario() -> bool:
        sink = BatchOutputs(settings=None, producer=FakeProducer())  # type: ignore[arg-type]
        return sink.send([]).done()

    assert run(scenario())


def test_failed_deliveries_are_sent_again_before_the_batch_is_confirmed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outputs_module, "RETRY_PAUSE_S", 0.01)

    async def scenario() -> list[tuple[str, bytes]]:
        producer = FakeProducer(fail_first=2)
        sink = BatchOutputs(settings=None, producer=producer)  # type: ignore[arg-type]
        server = asyncio.ensure_future(sink.serve())
        await sink.send(outputs(5))
        server.cancel()
        return producer.sent

    sent = run(scenario())
    assert sorted(value for _, value in sent) == [f"v{i}".encode() for i in range(5)]


def test_a_full_local_queue_is_drained_rather_than_dropping_outputs() -> None:
    async def scenario() -> tuple[int, int]:
        producer = FakeProducer(queue_limit=2)
        sink = BatchOutputs(settings=None, producer=producer)  # type: ignore[arg-type]
        await sink.send(outputs(7) + outputs(2, topic="deadletter"))
        return len(producer.sent), producer.buffer_errors

    sent, buffer_errors = run(scenario())
    assert sent == 9
    assert buffer_errors > 0
