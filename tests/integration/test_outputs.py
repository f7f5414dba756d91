"""The output error policy against real librdkafka producers: a live broker that refuses
an output, and a broker that is not there at all."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Producer

from gavel.schemas import DeadLetter, DeadLetterReason
from gavel.settings import Settings
from gavel.topics import AUCTIONS_DEADLETTER, PRICES_SCORED
from shell.kafka import producer_config
from stream_app.batch import IncomingEvent, Output
from stream_app.outputs import BatchOutputs, OutputPolicy, OutputsFailed
from tests.helpers import consume, free_port

pytestmark = pytest.mark.integration


async def send_and_serve(sink: BatchOutputs, pairs: list[tuple[str, Output]]) -> object:
    server = asyncio.ensure_future(sink.serve())
    try:
        return await asyncio.wait_for(sink.send(pairs), 60)
    finally:
        server.cancel()


def test_an_output_over_the_size_limit_is_replaced_by_a_dead_letter_on_the_broker(
    isolated: Settings,
) -> None:
    source = IncomingEvent(b"big-1", b"{" + b"x" * 1_500_000, "listed", 0, 42)
    oversized = Output(b"big-1", b"y" * 1_500_000, source=source)
    dead_topic = isolated.topic(AUCTIONS_DEADLETTER)
    sink = BatchOutputs(Producer(producer_config(isolated)), OutputPolicy(dead_topic=dead_topic))

    outcomes = asyncio.run(send_and_serve(sink, [(isolated.topic(PRICES_SCORED), oversized)]))

    assert outcomes == {"payload_too_large": 1}
    (record,) = consume(isolated, AUCTIONS_DEADLETTER, until=lambda r: len(r) >= 1)
    letter = DeadLetter.model_validate_json(record.value)
    assert letter.reason == DeadLetterReason.PAYLOAD_TOO_LARGE
    assert (letter.partition, letter.offset, letter.key) == (0, 42, "big-1")
    assert letter.payload_bytes == 1_500_001 and letter.payload_truncated
    assert "MSG_SIZE_TOO_LARGE" in letter.detail


def test_without_a_broker_the_worker_gives_up_within_its_bound(isolated: Settings) -> None:
    nowhere = isolated.replace(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    producer = Producer(producer_config(nowhere, **{"message.timeout.ms": 1000}))
    fatal: list[str] = []
    policy = OutputPolicy(dead_topic="dead", retries=2, backoff_base_s=0.1)
    sink = BatchOutputs(producer, policy, on_fatal=fatal.append)
    output = Output(b"k", b"v", source=IncomingEvent(b"k", b"v", "listed", 0, 1))

    started = time.monotonic()
    with pytest.raises(OutputsFailed, match="could not be written"):
        asyncio.run(send_and_serve(sink, [("scored", output)]))
    elapsed = time.monotonic() - started

    assert len(fatal) == 1 and "_MSG_TIMED_OUT" in fatal[0]
    # Three attempts of one second each, plus the backoffs: bounded, never forever.
    assert 2.5 < elapsed < 20
