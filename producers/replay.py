"""Replay auctions onto Kafka in event-time order, paced, with delivery accounting.

>>> from gavel.settings import Settings                          # doctest: +SKIP
>>> from producers.sources.synthetic import generate_auctions    # doctest: +SKIP
>>> stats = replay(generate_auctions(1000), Settings(), ReplayOptions())  # doctest: +SKIP
>>> stats.failed                                                  # doctest: +SKIP
0
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import orjson
import pandas as pd
from confluent_kafka import KafkaError, Message, Producer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from gavel.settings import Settings
from gavel.topics import AUCTIONS_LISTED, AUCTIONS_SOLD
from producers.corruption import corrupt, pick_corruptions
from producers.timeline import (
    LISTING,
    Timeline,
    build_timeline,
    listing_payloads,
    sale_payloads,
)
from shell.kafka import produce_waiting, producer_config

log = logging.getLogger(__name__)

PROGRESS_EVERY = 500


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay. Pace with at most one of ``rate`` (events/s) and ``speedup``
    (event-time seconds per wall second); neither means as fast as possible."""

    sale_delay: timedelta = timedelta(hours=2)
    rate: float | None = None
    speedup: float | None = None
    with_sales: bool = True
    corrupt_share: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rate is not None and self.speedup is not None:
            raise ValueError("choose one pace: --rate, --speedup or --max")
        for name in ("rate", "speedup"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")


@dataclass
class ReplayStats:
    listings: int = 0
    sales: int = 0
    acked: int = 0
    failed: int = 0
    corrupted: Counter[str] = field(default_factory=Counter)
    corrupted_keys: dict[str, str] = field(default_factory=dict)  # auction id -> reason
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    first_event: pd.Timestamp | None = None
    last_event: pd.Timestamp | None = None

    @property
    def sent(self) -> int:
        return self.listings + self.sales

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class _Pacer:
    def __init__(self, options: ReplayOptions, first_event_ns: int) -> None:
        self.options, self.first_event_ns = options, first_event_ns
        self.started = time.monotonic()

    def wait(self, index: int, event_ns: int) -> None:
        if self.options.rate:
            due = self.started + index / self.options.rate
        elif self.options.speedup:
            due = self.started + (event_ns - self.first_event_ns) / 1e9 / self.options.speedup
        else:
            return
        delay = due - time.monotonic()
        if delay > 0.0005:
            time.sleep(delay)


def replay(
    frame: pd.DataFrame,
    settings: Settings,
    options: ReplayOptions,
    progress: Progress | None = None,
    producer: Producer | None = None,
) -> ReplayStats:
    """Send ``frame``'s listings to ``auctions.listed`` and sales to ``auctions.sold``,
    keyed by auction id, in event-time order. Blocks until every send is acknowledged."""
    stats = ReplayStats()
    if frame.empty:
        return stats
    plan = _plan(frame, options)
    topics = (settings.topic(AUCTIONS_LISTED), settings.topic(AUCTIONS_SOLD))
    producer = producer or Producer(producer_config(settings))
    task = progress.add_task("replaying", total=len(plan.timeline)) if progress else None
    pacer = _Pacer(options, int(plan.timeline.times_ns[0]))
    started = time.monotonic()
    _send(producer, plan, topics, pacer, stats, progress, task)
    _flush(producer, stats)
    stats.seconds = time.monotonic() - started
    if progress and task is not None:
        progress.update(task, completed=len(plan.timeline))
    stats.first_event = pd.Timestamp(int(plan.timeline.times_ns[0]), tz="UTC")
    stats.last_event = pd.Timestamp(int(plan.timeline.times_ns[-1]), tz="UTC")
    log.info(
        "replayed %d listings and %d sales in %.1fs (%.0f events/s); %d acked, %d failed",
        stats.listings,
        stats.sales,
        stats.seconds,
        stats.rate,
        stats.acked,
        stats.failed,
    )
    return stats


@dataclass(frozen=True)
class _Plan:
    """What a replay sends: the timeline, every payload and key, and which listings to
    corrupt (row -> kind of corruption)."""

    timeline: Timeline
    listings: list[str]
    sales: list[str]
    keys: list[bytes]
    corruptions: dict[int, str]


def _plan(frame: pd.DataFrame, options: ReplayOptions) -> _Plan:
    """Render everything up front, so that sending is a tight loop."""
    return _Plan(
        timeline=build_timeline(frame, options.sale_delay, options.with_sales),
        listings=listing_payloads(frame),
        sales=sale_payloads(frame, options.sale_delay) if options.with_sales else [],
        keys=[key.encode() for key in frame["auction_id"]],
        corruptions=pick_corruptions(len(frame), options.corrupt_share, options.seed),
    )


def _send(
    producer: Producer,
    plan: _Plan,
    topics: tuple[str, str],
    pacer: _Pacer,
    stats: ReplayStats,
    progress: Progress | None,
    task: TaskID | None,
) -> None:
    """Every event of the plan in timeline order, paced; deliveries count into ``stats``."""
    delivered = _delivery_counter(stats)
    timeline = plan.timeline
    for index, (event_ns, kind, row) in enumerate(
        zip(timeline.times_ns, timeline.kind_codes, timeline.rows, strict=True)
    ):
        pacer.wait(index, int(event_ns))
        message = _message(plan, kind, row, topics, stats)
        if message is None:
            continue
        topic, value = message
        produce_waiting(producer, topic, value, plan.keys[row], on_delivery=delivered)
        if index % PROGRESS_EVERY == 0:
            producer.poll(0)
            if progress and task is not None:
                progress.update(task, completed=index)


def _message(
    plan: _Plan, kind: int, row: int, topics: tuple[str, str], stats: ReplayStats
) -> tuple[str, bytes] | None:
    """The topic and value of one event, counted in ``stats``; ``None`` for the sale of a
    corrupted listing, which is never sent."""
    corruption = plan.corruptions.get(row)
    if kind == LISTING:
        value = plan.listings[row].encode()
        if corruption is not None:
            value, reason = corrupt(orjson.loads(value), corruption)
            stats.corrupted[corruption] += 1
            stats.corrupted_keys[plan.keys[row].decode()] = reason.value
        stats.listings += 1
        return topics[0], value
    if corruption is not None:
        return None  # no sale for a listing that could never be priced
    stats.sales += 1
    return topics[1], plan.sales[row].encode()


def _delivery_counter(stats: ReplayStats) -> Callable[[KafkaError | None, Message], None]:
    """A delivery callback that counts acknowledgements and errors into ``stats``."""

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is None:
            stats.acked += 1
        else:
            stats.failed += 1
            stats.errors[error.str()] += 1

    return delivered


def _flush(producer: Producer, stats: ReplayStats) -> None:
    """Wait for the outstanding deliveries; what is still outstanding after 120s failed."""
    remaining = producer.flush(120)
    if remaining:
        stats.failed += remaining
        stats.errors["not delivered within 120s"] += remaining


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:>9,.0f} ev/s" if task.speed else "        - ev/s", style="cyan")


def replay_progress(console: Console | None = None) -> Progress:
    """A progress bar that shows the send rate."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
