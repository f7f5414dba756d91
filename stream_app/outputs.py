"""The worker's outputs, written with confluent-kafka and confirmed per micro-batch.

librdkafka batches and sends from its own C thread, far cheaper per message than the
pure-Python producer under Faust. :meth:`BatchOutputs.send` returns a future that
resolves once the broker acknowledged every output of that batch; the agent acknowledges
the batch's input events to Faust only then, while it already scores the next batch. A
crash before the confirmation replays the batch (at-least-once), never loses it.

What happens to an output the broker refuses is decided by :func:`classify`:

- **retry**: a transient error (timeout, broker away). librdkafka has already retried
  for ``message.timeout.ms``; the output is sent again after a backoff, at most
  ``retries`` times.
- **replace**: a permanent error (too large, invalid, not authorised). The output is
  replaced by a dead letter of its source event, whose payload is cut to a bound, so
  that the event is still accounted for. A dead letter that is refused in turn is
  replaced once more by one without any payload.
- **fatal**: retries exhausted, a replacement refused, or the producer itself broken.
  The batch's future fails, so its events are never acknowledged, and ``on_fatal`` is
  called: the worker exits non-zero and a restart replays them. It never loops forever.

Delivery reports are served on the event loop's own thread (:meth:`serve`), never on a
second Python thread: that would fight the scoring code for the GIL.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from gavel.schemas import DeadLetterReason
from shell.kafka import Producing, produce_waiting
from stream_app.batch import Output, dead_letter
from stream_app.validation import Invalid

log = logging.getLogger(__name__)

SERVE_EVERY_S = 0.002

_TOO_LARGE = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
}


class Verdict(enum.Enum):
    RETRY = "retry"
    REPLACE = "replace"
    FATAL = "fatal"


def classify(error: KafkaError) -> Verdict:
    """What to do with an output that ``error`` refused.

    >>> classify(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)).value
    'replace'
    >>> classify(KafkaError(KafkaError._MSG_TIMED_OUT, retriable=True)).value
    'retry'
    """
    if error.fatal():
        return Verdict.FATAL
    if error.code() in _TOO_LARGE:
        return Verdict.REPLACE
    if error.retriable() or error.code() in {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.REQUEST_TIMED_OUT,
    }:
        return Verdict.RETRY
    return Verdict.REPLACE


def backoff_s(attempt: int, base_s: float = 0.5, cap_s: float = 8.0) -> float:
    """Exponential backoff before re-send number ``attempt`` (1-based).

    >>> [backoff_s(n) for n in (1, 2, 3, 6)]
    [0.5, 1.0, 2.0, 8.0]
    """
    return min(base_s * 2.0 ** (attempt - 1), cap_s)


class OutputsFailed(Exception):
    """Outputs could not be written within the bounds; nothing of theirs is acknowledged."""


@dataclass(frozen=True)
class OutputPolicy:
    dead_topic: str
    retries: int = 3
    deadletter_payload_bytes: int = 8192
    backoff_base_s: float = 0.5


@dataclass
class _Pending:
    topic: str
    output: Output
    attempt: int = 0
    replacements: int = 0


class _Batch:
    """Counts a batch's outstanding deliveries; resolves its future when none remain."""

    def __init__(self) -> None:
        self.outstanding = 0
        self.sealed = False
        self.outcomes: Counter[str] = Counter()
        self.future: asyncio.Future[Counter[str]] = asyncio.get_running_loop().create_future()

    def delivered(self, output: Output) -> None:
        self.outstanding -= 1
        self.outcomes[output.outcome] += 1
        self._maybe_resolve()

    def seal(self) -> None:
        self.sealed = True
        self._maybe_resolve()

    def fail(self, exc: OutputsFailed) -> None:
        if not self.future.done():
            self.future.set_exception(exc)

    def _maybe_resolve(self) -> None:
        if self.sealed and self.outstanding == 0 and not self.future.done():
            self.future.set_result(self.outcomes)


class BatchOutputs:
    """Produces a batch's outputs and resolves one future when all are on the broker.

    The future's result counts the delivered outputs by outcome (``"scored"`` or a
    dead-letter reason), which can differ from what was sent when outputs were replaced.
    """

    def __init__(
        self,
        producer: Producing,
        policy: OutputPolicy,
        on_fatal: Callable[[str], None] | None = None,
        on_error: Callable[[Verdict, KafkaError], None] | None = None,
        on_success: Callable[[], None] | None = None,
    ) -> None:
        self.producer = producer
        self.policy = policy
        self.on_fatal = on_fatal
        self.on_error = on_error
        self.on_success = on_success
        self.failed: str | None = None

    def send(self, outputs: Iterable[tuple[str, Output]]) -> asyncio.Future[Counter[str]]:
        """Produce ``(topic, output)`` pairs; the future resolves when all are acknowledged."""
        batch = _Batch()
        if self.on_success is not None:  # once per confirmed batch, not per message
            on_success = self.on_success
            batch.future.add_done_callback(
                lambda done: on_success() if not done.cancelled() and not done.exception() else None
            )
        for topic, output in outputs:
            batch.outstanding += 1
            self._produce(batch, _Pending(topic, output))
        batch.seal()
        self.producer.poll(0)
        return batch.future

    def _produce(self, batch: _Batch, pending: _Pending) -> None:
        if self.failed is not None:
            batch.fail(OutputsFailed(self.failed))
            return

        def delivered(error: KafkaError | None, _message: Any) -> None:
            if error is None:
                batch.delivered(pending.output)
            else:
                self._refused(batch, pending, error)

        try:
            produce_waiting(
                self.producer,
                pending.topic,
                pending.output.value,
                pending.output.key,
                poll_s=0.01,
                on_delivery=delivered,
            )
        except KafkaException as exc:  # refused before it was queued (e.g. too large)
            self._refused(batch, pending, exc.args[0])

    def _refused(self, batch: _Batch, pending: _Pending, error: KafkaError) -> None:
        verdict = classify(error)
        if verdict is Verdict.RETRY and pending.attempt >= self.policy.retries:
            verdict = Verdict.FATAL
        if verdict is Verdict.REPLACE and pending.replacements >= 2:
            verdict = Verdict.FATAL
        if self.on_error is not None:
            self.on_error(verdict, error)
        if verdict is Verdict.RETRY:
            pending.attempt += 1
            delay = backoff_s(pending.attempt, self.policy.backoff_base_s)
            log.warning(
                "output to %s not delivered (%s); re-sending in %.1fs (%d/%d)",
                pending.topic,
                error,
                delay,
                pending.attempt,
                self.policy.retries,
            )
            batch.future.get_loop().call_later(delay, self._produce, batch, pending)
        elif verdict is Verdict.REPLACE and pending.output.source is not None:
            log.error("output to %s refused for good (%s); dead-lettering it", pending.topic, error)
            self._produce(batch, self._replacement(pending, error))
        else:
            self._give_up(batch, f"output to {pending.topic} could not be written: {error}")

    def _replacement(self, pending: _Pending, error: KafkaError) -> _Pending:
        source = pending.output.source
        assert source is not None
        too_large = error.code() in _TOO_LARGE
        reason = DeadLetterReason.PAYLOAD_TOO_LARGE if too_large else DeadLetterReason.OUTPUT_FAILED
        # The first replacement keeps a bounded payload; a second one keeps none.
        keep = self.policy.deadletter_payload_bytes if pending.replacements == 0 else 0
        invalid = Invalid(reason, f"the broker refused the output to {pending.topic}: {error}")
        return _Pending(
            self.policy.dead_topic,
            dead_letter(source, invalid, keep),
            replacements=pending.replacements + 1,
        )

    def _give_up(self, batch: _Batch, why: str) -> None:
        log.critical("%s; nothing of this batch is acknowledged", why)
        first = self.failed is None
        self.failed = self.failed or why
        batch.fail(OutputsFailed(why))
        if first and self.on_fatal is not None:
            self.on_fatal(why)

    async def serve(self) -> None:
        """Deliver the delivery reports, on this loop, for as long as the worker runs."""
        while True:
            self.producer.poll(0)
            await asyncio.sleep(SERVE_EVERY_S)
