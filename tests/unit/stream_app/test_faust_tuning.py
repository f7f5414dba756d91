"""The worker's one change to Faust's Kafka consumer: a short fetch wait."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from stream_app import faust_delivery, faust_tuning


async def fetch_wait_ms() -> int:
    app = faust.App("gavel-unit-tuning", broker="kafka://127.0.0.1:9")
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    try:
        return consumer._fetch_max_wait_ms
    finally:
        await consumer.stop()


def test_the_fetch_wait_drops_from_faust_hard_coded_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Restored after the test, so that the patch does not leak into other tests.
    monkeypatch.setattr(
        AIOKafkaConsumerThread,
        "_create_worker_consumer",
        AIOKafkaConsumerThread._create_worker_consumer,
    )
    monkeypatch.setattr(Consumer, "_drain_messages", Consumer._drain_messages)
    # Faust's own value, checked so that an upgrade that changes it is noticed.
    assert asyncio.run(fetch_wait_ms()) == 1500
    faust_tuning.apply()
    faust_tuning.apply()  # idempotent
    assert asyncio.run(fetch_wait_ms()) == faust_tuning.FETCH_MAX_WAIT_MS == 50
    assert Consumer._drain_messages is faust_delivery.drain_messages
