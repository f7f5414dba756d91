"""Per-batch delivery confirmation and the output error policy, with a stand-in for
librdkafka's producer (the real one is exercised in tests/integration/test_outputs.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from gavel.schemas import DeadLetter, DeadLetterReason
from stream_app.batch import IncomingEvent, Output
from stream_app.outputs import (
    BatchOutputs,
    OutputPolicy,
    OutputsFailed,
    Verdict,
    backoff_s,
    classify,
)

Callback = Callable[[Any, Any], None]
DEAD = "deadletter"


class FakeProducer:
    """Queues produce calls; ``poll`` reports them delivered, or failed as scripted.

    ``errors`` maps a topic to the errors its next deliveries report, in order;
    ``refuse`` makes ``produce`` itself raise for a topic, as librdkafka does for a
    message above its size limit.
    """

    def __init__(
        self,
        errors: dict[str, list[KafkaError]] | None = None,
        queue_limit: int | None = None,
        refuse: dict[str, KafkaError] | None = None,
    ) -> None:
        self.queued: list[tuple[str, bytes, Callback]] = []
        self.sent: list[tuple[str, bytes]] = []
        self.errors = errors or {}
        self.refuse = refuse or {}
        self.queue_limit = queue_limit
        self.buffer_errors = 0

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Callback) -> None:
        if topic in self.refuse:
            raise KafkaException(self.refuse[topic])
        if self.queue_limit is not None and len(self.queued) >= self.queue_limit:
            self.buffer_errors += 1
            raise BufferError("queue full")
        self.queued.append((topic, value, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        served, self.queued = self.queued, []
        for topic, value, callback in served:
            pending = self.errors.get(topic)
            if pending:
                callback(pending.pop(0), None)
            else:
                self.sent.append((topic, value))
                callback(None, None)
        return len(served)


def source(offset: int) -> IncomingEvent:
    return IncomingEvent(b"k", b'{"big": "' + b"x" * 50_000 + b'"}', "listed", 2, offset)


def outputs(n: int, topic: str = "scored") -> list[tuple[str, Output]]:
    return [
        (topic, Output(key=f"k{i}".encode(), value=f"v{i}".encode(), source=source(i)))
        for i in range(n)
    ]


def sink_for(producer: FakeProducer, retries: int = 2, fatal: list[str] | None = None):
    policy = OutputPolicy(dead_topic=DEAD, retries=retries, backoff_base_s=0.001)
    on_fatal = fatal.append if fatal is not None else None
    return BatchOutputs(producer, policy, on_fatal=on_fatal)


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 5))


async def served(sink: BatchOutputs, future: asyncio.Future) -> Any:
    server = asyncio.ensure_future(sink.serve())
    try:
        return await future
    finally:
        server.cancel()


def timed_out() -> KafkaError:
    return KafkaError(KafkaError._MSG_TIMED_OUT, retriable=True)


def too_large() -> KafkaError:
    return KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)


def test_the_future_resolves_only_once_every_output_is_delivered() -> None:
    async def scenario() -> list[bool]:
        producer = FakeProducer()
        producer.poll = lambda timeout=0: 0  # type: ignore[method-assign]  # hold reports
        delivered = sink_for(producer).send(outputs(3))
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
        return sink_for(FakeProducer()).send([]).done()

    assert run(scenario())


def test_transient_failures_are_sent_again_before_the_batch_is_confirmed() -> None:
    async def scenario() -> tuple[list[tuple[str, bytes]], Counter[str]]:
        producer = FakeProducer(errors={"scored": [timed_out(), timed_out()]})
        sink = sink_for(producer)
        outcomes = await served(sink, sink.send(outputs(5)))
        return producer.sent, outcomes

    sent, outcomes = run(scenario())
    assert sorted(value for _, value in sent) == [f"v{i}".encode() for i in range(5)]
    assert outcomes == Counter(scored=5)


def test_past_the_retry_bound_the_batch_fails_and_the_worker_is_told() -> None:
    fatal: list[str] = []

    async def scenario() -> None:
        producer = FakeProducer(errors={"scored": [timed_out()] * 10})
        sink = sink_for(producer, retries=2, fatal=fatal)
        await served(sink, sink.send(outputs(1)))

    with pytest.raises(OutputsFailed, match="could not be written"):
        run(scenario())
    assert len(fatal) == 1


def test_an_output_refused_for_good_becomes_a_dead_letter_that_fits() -> None:
    async def scenario() -> tuple[list[tuple[str, bytes]], Counter[str]]:
        producer = FakeProducer(errors={"scored": [too_large()]})
        sink = sink_for(producer)
        outcomes = await served(sink, sink.send(outputs(3)))
        return producer.sent, outcomes

    sent, outcomes = run(scenario())
    assert outcomes == Counter(scored=2, payload_too_large=1)
    (letter_bytes,) = [value for topic, value in sent if topic == DEAD]
    letter = DeadLetter.model_validate_json(letter_bytes)
    assert letter.reason == DeadLetterReason.PAYLOAD_TOO_LARGE
    assert letter.payload_truncated and letter.payload_bytes > 50_000
    assert len(letter.raw_payload) <= 8192 and len(letter_bytes) < 12_000
    assert letter.payload_sha256 and len(letter.payload_sha256) == 64


def test_a_refused_produce_call_is_treated_like_a_refused_delivery() -> None:
    async def scenario() -> Counter[str]:
        producer = FakeProducer(refuse={"scored": KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)})
        sink = sink_for(producer)
        return await served(sink, sink.send(outputs(2)))

    assert run(scenario()) == Counter(payload_too_large=2)


def test_a_dead_letter_refused_twice_stops_the_worker() -> None:
    fatal: list[str] = []

    async def scenario() -> None:
        producer = FakeProducer(refuse={"scored": too_large(), DEAD: too_large()})
        sink = sink_for(producer, fatal=fatal)
        await served(sink, sink.send(outputs(1)))

    with pytest.raises(OutputsFailed):
        run(scenario())
    assert fatal, "the worker is told to stop"


def test_after_a_fatal_failure_nothing_more_is_confirmed() -> None:
    async def scenario() -> list[BaseException | None]:
        producer = FakeProducer(errors={"scored": [timed_out()] * 10})
        sink = sink_for(producer, retries=0, fatal=[])
        first = sink.send(outputs(1))
        results = []
        with pytest.raises(OutputsFailed):
            await served(sink, first)
        second = sink.send(outputs(1, topic="other"))
        results.append(second.exception() if second.done() else None)
        return results

    (exception,) = run(scenario())
    assert isinstance(exception, OutputsFailed)


def test_a_full_local_queue_is_drained_rather_than_dropping_outputs() -> None:
    async def scenario() -> tuple[int, int]:
        producer = FakeProducer(queue_limit=2)
        sink = sink_for(producer)
        await sink.send(outputs(7) + outputs(2, topic=DEAD))
        return len(producer.sent), producer.buffer_errors

    sent, buffer_errors = run(scenario())
    assert sent == 9
    assert buffer_errors > 0


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (KafkaError(KafkaError._MSG_TIMED_OUT, retriable=True), Verdict.RETRY),
        (KafkaError(KafkaError._TRANSPORT), Verdict.RETRY),
        (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), Verdict.REPLACE),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), Verdict.REPLACE),
        (KafkaError(KafkaError._FATAL, fatal=True), Verdict.FATAL),
    ],
)
def test_classify(error: KafkaError, verdict: Verdict) -> None:
    assert classify(error) is verdict


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_s(n) for n in range(1, 10)]
    assert delays == sorted(delays) and delays[-1] == 8.0
