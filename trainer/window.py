"""Reading the training window back from Kafka: by time, incrementally, never partially.

A :class:`TopicReader` starts at the offsets that ``offsets_for_times`` gives for a
Kafka (ingestion) time, so a retraining does not read a topic's whole history. Each
:meth:`TopicReader.refresh` captures the high watermarks first and reads from where the
previous refresh stopped up to them: waiting for labels costs only the new records. A
refresh that cannot reach the watermarks it captured raises :class:`IncompleteRead`
instead of returning part of the window; the positions it did reach are kept, so the
next refresh carries on from there.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from confluent_kafka import Consumer, TopicPartition

from gavel.records import Skipped, Tally, parse_sale, parse_scored
from gavel.schemas import Sale, ScoredPrice
from gavel.settings import Settings
from gavel.topics import AUCTIONS_SOLD, PRICES_SCORED
from shell.kafka import consumer_config
from trainer.labelled import labelled_frame

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 10.0


class IncompleteRead(RuntimeError):
    """A topic could not be read up to the high watermarks captured when the read began."""


def remaining(positions: dict[int, int], ends: dict[int, int]) -> dict[int, int]:
    """The partitions not read up to their end yet, with how many records each lacks.

    >>> remaining({0: 5, 1: 9, 2: 0}, {0: 5, 1: 12, 2: 0})
    {1: 3}
    """
    return {p: end - positions.get(p, 0) for p, end in ends.items() if positions.get(p, 0) < end}


class TopicReader:
    """One topic, read from ``since`` (Kafka time; None = the oldest retained record)."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        since: datetime | None,
        timeout_s: float,
        consumer: Consumer | None = None,
    ) -> None:
        self.name = settings.topic(topic)
        self.since = since
        self.timeout_s = timeout_s
        group = f"{settings.group('trainer-reader')}-{uuid.uuid4().hex[:6]}"  # never commits
        self.consumer = consumer or Consumer(consumer_config(settings, group))
        self.positions: dict[int, int] | None = None  # the next offset to read, by partition

    def _partitions(self) -> list[int]:
        metadata = self.consumer.list_topics(self.name, timeout=METADATA_TIMEOUT_S)
        topic = metadata.topics.get(self.name)
        if topic is None or topic.error is not None:
            raise IncompleteRead(f"topic {self.name} is not available: {topic and topic.error}")
        return sorted(topic.partitions)

    def _watermarks(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        return {
            p: self.consumer.get_watermark_offsets(
                TopicPartition(self.name, p), timeout=METADATA_TIMEOUT_S
            )
            for p in partitions
        }

    def _start(self, marks: dict[int, tuple[int, int]]) -> dict[int, int]:
        """Where reading begins: the first record at or after ``since``, by partition."""
        if self.since is None:
            return {p: low for p, (low, _) in marks.items()}
        millis = int(self.since.timestamp() * 1000)
        found = self.consumer.offsets_for_times(
            [TopicPartition(self.name, p, millis) for p in marks], timeout=METADATA_TIMEOUT_S
        )
        starts = {}
        for tp in found:
            low, high = marks[tp.partition]
            # -1: no record that recent; start at the end, only newer records will count.
            starts[tp.partition] = high if tp.offset < 0 else max(tp.offset, low)
        return starts

    def refresh(self, handle: Callable[[bytes | None], None]) -> int:
        """Hand every record from the last position up to the current high watermarks to
        ``handle``; returns how many. Raises :class:`IncompleteRead` if it cannot get there
        within ``timeout_s``."""
        marks = self._watermarks(self._partitions())
        if self.positions is None:
            self.positions = self._start(marks)
            log.info(
                "reading %s from %s: offsets %s",
                self.name,
                f"{self.since:%Y-%m-%d %H:%M:%S}" if self.since else "the oldest record",
                self.positions,
            )
        ends = {p: high for p, (_, high) in marks.items()}
        for p, (low, _) in marks.items():
            self.positions[p] = max(self.positions.get(p, low), low)  # retention moved on
        todo = remaining(self.positions, ends)
        if not todo:
            return 0
        self.consumer.assign([TopicPartition(self.name, p, self.positions[p]) for p in todo])
        handled = 0
        deadline = time.monotonic() + self.timeout_s
        try:
            while todo and time.monotonic() < deadline:
                for message in self.consumer.consume(5000, timeout=0.5):
                    if message.error():
                        log.debug("%s: %s", self.name, message.error())
                        continue
                    part, offset = message.partition(), message.offset()
                    assert part is not None and offset is not None  # a consumed record has both
                    if offset < self.positions[part] or offset >= ends[part]:
                        continue  # past the watermark captured: the next refresh's
                    handle(message.value())
                    handled += 1
                    self.positions[part] = offset + 1
                for tp in self.consumer.position(
                    [TopicPartition(self.name, p) for p in remaining(self.positions, ends)]
                ):
                    if tp.offset >= ends[tp.partition]:  # only gaps (e.g. markers) were left
                        self.positions[tp.partition] = ends[tp.partition]
                todo = remaining(self.positions, ends)
        finally:
            self.consumer.unassign()
        if todo:
            raise IncompleteRead(
                f"{self.name}: read stopped short of the high watermarks after "
                f"{self.timeout_s:g}s; records missing by partition: {todo}"
            )
        return handled

    def close(self) -> None:
        self.consumer.close()


@dataclass
class WindowStats:
    """What a window read has seen so far, per topic."""

    tallies: dict[str, Tally] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {topic: tally.as_dict() for topic, tally in self.tallies.items()}

    @property
    def skipped(self) -> int:
        return sum(tally.total_skipped for tally in self.tallies.values())


class LabelledWindow:
    """Scored listings joined with their sales, read from Kafka and kept up to date.

    Each :meth:`refresh` reads only what arrived since the last one; the latest scored
    event and the latest sale per auction are kept (a re-score or re-delivery replaces).
    """

    def __init__(self, settings: Settings, since: datetime | None, timeout_s: float = 60.0) -> None:
        self.scored_reader = TopicReader(settings, PRICES_SCORED, since, timeout_s)
        self.sales_reader = TopicReader(settings, AUCTIONS_SOLD, since, timeout_s)
        self.listings: dict[str, ScoredPrice] = {}
        self.sales: dict[str, Sale] = {}
        self.stats = WindowStats(
            {PRICES_SCORED: Tally(), AUCTIONS_SOLD: Tally()}  # by un-namespaced topic
        )
        self._frame: pd.DataFrame | None = None

    def _on_scored(self, raw: bytes | None) -> None:
        outcome = parse_scored(raw, datetime.now(UTC))
        self.stats.tallies[PRICES_SCORED].count(outcome)
        if isinstance(outcome, Skipped):
            log.debug("skipped a %s value (%s): %s", PRICES_SCORED, outcome.reason, outcome.detail)
        else:
            self.listings[outcome.auction_id] = outcome

    def _on_sale(self, raw: bytes | None) -> None:
        outcome = parse_sale(raw, datetime.now(UTC))
        self.stats.tallies[AUCTIONS_SOLD].count(outcome)
        if isinstance(outcome, Skipped):
            log.debug("skipped a %s value (%s): %s", AUCTIONS_SOLD, outcome.reason, outcome.detail)
        else:
            self.sales[outcome.auction_id] = outcome

    def refresh(self) -> pd.DataFrame:
        """The labelled frame of everything read so far, after reading what is new."""
        skipped_before = self.stats.skipped
        new = self.scored_reader.refresh(self._on_scored)
        new += self.sales_reader.refresh(self._on_sale)
        if new or self._frame is None:  # nothing new: the same frame
            self._frame = labelled_frame(self.listings.values(), self.sales.values())
        frame = self._frame
        log.info("read %d new records; %d labelled auctions in the window", new, len(frame))
        if self.stats.skipped > skipped_before:
            log.warning("skipped malformed records so far: %s", self.stats.as_dict())
        return frame

    def close(self) -> None:
        self.scored_reader.close()
        self.sales_reader.close()

    def __enter__(self) -> LabelledWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
