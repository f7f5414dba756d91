"""Adjustments to faust-streaming's Kafka consumer, applied by the worker only: the
fetch wait below, and the message delivery of :mod:`stream_app.faust_delivery`.

Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500``, hard-coded. When
a fetch request happens to cover only partitions without new data, the broker holds it
for the full 1.5 s while data piles up on the others: at 2,000 listings/s the worker
was seen stalling for 1.1-1.5 s every few batches, its p50 latency near one second.
A 50 ms ceiling keeps the stall short; with ``fetch_min_bytes=1`` a busy broker still
answers at once, and an idle one costs 20 empty fetches a second.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from stream_app import faust_delivery

FETCH_MAX_WAIT_MS = 50

_original = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original(self, transport)
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
    return consumer


def apply() -> None:
    faust_delivery.apply()
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]  # patching Faust on purpose
