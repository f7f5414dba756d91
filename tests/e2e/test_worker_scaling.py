"""Scaling out: several workers in one consumer group on the real broker.

Three workers share six partitions of ``auctions.listed``; one is killed with -9 mid
stream and its partitions move to the others; a fourth joins later and takes a share.
Every listing is accounted for by its partition and offset on ``auctions.listed``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from gavel.settings import Settings
from gavel.topics import AUCTIONS_DEADLETTER, AUCTIONS_LISTED, PRICES_SCORED
from producers.replay import ReplayOptions, replay
from producers.sources.synthetic import generate_auctions
from shell.kafka import consumer_config, ensure_topics
from shell.stack.process import ManagedProcess
from tests.conftest import fresh_namespace
from tests.e2e.conftest import worker_health_url
from tests.helpers import consume, end_offsets, free_port, http_ok, service, wait_for
from trainer.training import TrainingResult

pytestmark = pytest.mark.e2e

PARTITIONS = 6


def partitions_of(settings: Settings) -> list[int] | None:
    """The partitions a worker says it owns, or None while it does not answer."""
    try:
        body = httpx.get(worker_health_url(settings), timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    owned = body.get("partitions")
    return list(owned) if isinstance(owned, list) else None


def ownership(workers: list[Settings]) -> list[list[int] | None]:
    return [partitions_of(w) for w in workers]


def covers_all_once(owned: list[list[int] | None]) -> bool:
    flat = [p for share in owned if share for p in share]
    return sorted(flat) == list(range(PARTITIONS))


def scored_high_watermarks(settings: Settings, partitions: list[int]) -> dict[int, int]:
    consumer = Consumer(consumer_config(settings, settings.group("test-watermarks")))
    try:
        topic = settings.topic(PRICES_SCORED)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


@pytest.fixture
def six_partitions(services: Settings) -> Settings:
    settings = services.replace(namespace=fresh_namespace(), topic_partitions=PARTITIONS)
    ensure_topics(settings)
    return settings


def start_workers(
    stack: ExitStack, settings: Settings, count: int, workdir: Path, first: int = 0
) -> Iterator[tuple[Settings, ManagedProcess]]:
    for index in range(first, first + count):
        mine = settings.replace(worker_web_port=free_port())
        process = stack.enter_context(
            service(
                f"worker-{index}", ["worker"], mine, workdir, ready=http_ok(worker_health_url(mine))
            )
        )
        yield mine, process


def test_workers_share_partitions_take_over_a_killed_one_and_admit_a_late_one(
    six_partitions: Settings, champion: TrainingResult, tmp_path: Path
) -> None:
    settings = six_partitions
    frame = generate_auctions(24_000, start="2015-03-01", end="2015-04-01", seed=31)
    feeder = threading.Thread(
        target=replay, args=(frame, settings, ReplayOptions(with_sales=False, rate=800))
    )
    with ExitStack() as stack:
        running = list(start_workers(stack, settings, 3, tmp_path))
        workers = [w for w, _ in running]
        wait_for(lambda: covers_all_once(ownership(workers)), 60, "the six partitions to be shared")
        shares = ownership(workers)
        print(f"\nthree workers own {shares}")
        assert all(shares), f"every worker owns partitions: {shares}"

        feeder.start()
        wait_for(lambda: end_offsets(settings, PRICES_SCORED) > 3000, 60, "scoring to start")
        victim_index = 0
        _, victim = running[victim_index]
        moved = shares[victim_index]
        assert moved
        pid = victim.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: victim.pid() is None, 10, "the worker to die")
        before = scored_high_watermarks(settings, moved)
        survivors = [w for i, w in enumerate(workers) if i != victim_index]

        def resumed() -> bool:
            now = scored_high_watermarks(settings, moved)
            return all(now[p] > before[p] for p in moved)

        wait_for(resumed, 30, f"partitions {moved} of the killed worker to be scored again")
        resume_s = time.monotonic() - killed_at
        wait_for(lambda: covers_all_once(ownership(survivors)), 30, "the survivors to own all")
        after_kill = ownership(survivors)
        print(f"killed the owner of {moved}; scoring resumed after {resume_s:.1f}s; {after_kill}")

        late_settings, _ = next(start_workers(stack, settings, 1, tmp_path, first=3))
        alive = [*survivors, late_settings]
        wait_for(
            lambda: bool(partitions_of(late_settings)) and covers_all_once(ownership(alive)),
            60,
            "the late worker to take partitions",
        )
        with_late = ownership(alive)
        print(f"a late worker joined: {with_late}")
        feeder.join()

        listed = consume(
            settings, AUCTIONS_LISTED, until=lambda r: len(r) >= len(frame), timeout_s=60
        )
        positions = {(r.partition, r.offset): r.key for r in listed}
        keys = {key for key in positions.values()}

        def accounted() -> tuple[set[str | None], set[tuple[int, int]]]:
            scored = consume(
                settings,
                PRICES_SCORED,
                until=lambda r: keys <= {x.key for x in r},
                timeout_s=90,
            )
            dead = consume(settings, AUCTIONS_DEADLETTER, until=lambda r: True, timeout_s=5)
            dead_at = {(d.json()["partition"], d.json()["offset"]) for d in dead}
            return {r.key for r in scored}, dead_at

        scored_keys, dead_at = accounted()
        lost = [
            pos for pos, key in positions.items() if key not in scored_keys and pos not in dead_at
        ]
        print(f"{len(positions)} listings on {PARTITIONS} partitions, {len(lost)} unaccounted")
        assert len(positions) == len(frame)
        assert not lost, f"{len(lost)} listings lost, e.g. at {lost[:5]}"
        assert resume_s <= 10.0, f"scoring of {moved} resumed only after {resume_s:.1f}s"
        assert partitions_of(late_settings), "the late worker owns partitions"
