"""The worker's outputs, written with confluent-kafka and confirmed per micro-batch.

librdkafka batches and sends from its own C thread, far cheaper per message than the
pure-Python producer under Faust. :meth:`BatchOutputs.send` returns a future that
resolves once the broker acknowledged every output of that batch; the agent acknowledges
the batch's input events to Faust only then, while it already scores the next batch. A
crash before the confirmation replays the batch (at-least-once), never loses it.

Delivery reports are served on the event loop's own thread (:meth:`serve`), never on a
second Python thread: that would fight the scoring code for the GIL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError, Message, Producer

from gavel.kafka import producer_config
from gavel.settings import Settings
from stream_app.batch import Output

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 1.0
SERVE_EVERY_S = 0.002


class _Batch:
    """Counts a batch's outstanding deliveries; resolves its future when none remain."""

    def __init__(self, owner: BatchOutputs) -> None:
        self.owner = owner
        self.outstanding = 0
        self.sealed = False
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def delivered(self, topic: str, output: Output, error: KafkaError | None) -> None:
        if error is not None:
            log.error("output not delivered (%s); sending it again", error)
            # Still counted as outstanding: the batch waits for the second attempt.
            loop = self.future.get_loop()
            loop.call_later(RETRY_PAUSE_S, self.owner.produce, self, topic, output, True)
            return
        self.outstanding -= 1
        self._maybe_resolve()

    def seal(self) -> None:
        self.sealed = True
        self._maybe_resolve()

    def _maybe_resolve(self) -> None:
        if self.sealed and self.outstanding == 0 and not self.future.done():
            self.future.set_result(None)


class BatchOutputs:
    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        self.producer = producer or Producer(producer_config(settings, **{"linger.ms": 2}))

    def send(self, outputs: Iterable[tuple[str, Output]]) -> asyncio.Future[None]:
        """Produce ``(topic, output)`` pairs; the future resolves when all are acknowledged."""
        batch = _Batch(self)
        for topic, output in outputs:
            self.produce(batch, topic, output)
        batch.seal()
        self.producer.poll(0)
        return batch.future

    def produce(self, batch: _Batch, topic: str, output: Output, counted: bool = False) -> None:
        if not counted:
            batch.outstanding += 1

        def delivered(error: KafkaError | None, message: Message) -> None:
            batch.delivered(topic, output, error)

        while True:
            try:
                self.producer.produce(topic, output.value, output.key, on_delivery=delivered)
                return
            except BufferError:  # local queue full: serve deliveries to make room
                self.producer.poll(0.01)

    async def serve(self) -> None:
        """Deliver the delivery reports, on this loop, for as long as the worker runs."""
        while True:
            self.producer.poll(0)
            await asyncio.sleep(SERVE_EVERY_S)
