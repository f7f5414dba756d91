"""The worker's outputs, written with confluent-kafka and confirmed per micro-batch.

librdkafka batches and sends from its own C thread, far cheaper per message than the
pure-Python producer under Faust. A batch's input events are acknowledged to Faust only
after :meth:`BatchOutputs.confirm` returns, that is after the broker acknowledged every
output: a crash before that replays the batch (at-least-once), never loses it.
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


class BatchOutputs:
    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        self.producer = producer or Producer(producer_config(settings, **{"linger.ms": 2}))
        self._pending: dict[int, tuple[str, Output]] = {}
        self._failed: list[tuple[str, Output, KafkaError]] = []
        self._sequence = 0

    def send(self, topic: str, outputs: Iterable[Output]) -> None:
        for output in outputs:
            self._sequence += 1
            self._pending[self._sequence] = (topic, output)
            self._produce(topic, output, self._sequence)

    def _produce(self, topic: str, output: Output, sequence: int) -> None:
        def delivered(error: KafkaError | None, message: Message) -> None:
            sent = self._pending.pop(sequence, None)
            if error is not None and sent is not None:
                self._failed.append((*sent, error))

        while True:
            try:
                self.producer.produce(topic, output.value, output.key, on_delivery=delivered)
                return
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.01)

    async def confirm(self) -> None:
        """Wait until the broker acknowledged every output sent so far, re-sending failures.

        It never gives up: an unacknowledged batch must not be acknowledged upstream.
        """
        while True:
            await asyncio.to_thread(self.producer.flush, 30)
            if not self._failed and not self._pending:
                return
            failed, self._failed = self._failed, []
            if failed:
                log.error(
                    "%d outputs were not delivered (%s); sending them again",
                    len(failed),
                    failed[0][2],
                )
                await asyncio.sleep(RETRY_PAUSE_S)
                for topic, output, _ in failed:
                    self._sequence += 1
                    self._pending[self._sequence] = (topic, output)
                    self._produce(topic, output, self._sequence)
