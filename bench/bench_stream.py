"""Benchmark of the scoring path, in one run on one machine (not a test).

1. Throughput of the Faust worker (`gavel worker`) at full speed, over a backlog of
   listings already on Kafka, measured between its first and last output.
2. The ceiling: a bare confluent-kafka loop (consume -> the same batch logic and model ->
   produce) over the same backlog.
3. Listed -> scored latency through the worker at a fixed 2,000 events/s.

Results go to bench/results/stream-<timestamp>.json and are printed with the ratio of
worker to ceiling. Usage: .venv/bin/python bench/bench_stream.py [--listings 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gavel.settings import Settings  # noqa: E402
from gavel.topics import AUCTIONS_DEADLETTER, AUCTIONS_LISTED, PRICES_SCORED  # noqa: E402
from producers.replay import ReplayOptions, replay  # noqa: E402
from producers.sources.synthetic import generate_auctions  # noqa: E402
from shell import registry  # noqa: E402
from shell.kafka import (  # noqa: E402
    consumer_config,
    delete_topics_with_prefix,
    ensure_topics,
    producer_config,
)
from shell.stack import manager  # noqa: E402
from shell.stack.process import ManagedProcess, start_gavel, wait_until  # noqa: E402
from stream_app.batch import IncomingEvent, score_batch  # noqa: E402
from stream_app.model import RegistryModelSource  # noqa: E402
from trainer.split import time_split  # noqa: E402
from trainer.training import train_and_register  # noqa: E402

console = Console()
RESULTS = ROOT / "bench" / "results"
WARMUP_S = 3.0


def topic_records(settings: Settings, topic: str) -> int:
    name = settings.topic(topic)
    consumer = Consumer(consumer_config(settings, f"bench-count-{uuid.uuid4().hex[:6]}"))
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def output_timestamps(settings: Settings, topics: tuple[str, ...]) -> list[dict]:
    """(Kafka timestamp, payload) of every output record, read from the start."""
    consumer = Consumer(consumer_config(settings, f"bench-read-{uuid.uuid4().hex[:6]}"))
    names = [settings.topic(t) for t in topics]
    expected = sum(topic_records(settings, t) for t in topics)
    consumer.subscribe(names)
    rows: list[dict] = []
    deadline = time.monotonic() + 120
    while len(rows) < expected and time.monotonic() < deadline:
        for message in consumer.consume(5000, timeout=0.5):
            if message.error() is None:
                rows.append(
                    {
                        "ts": message.timestamp()[1] / 1000,
                        "value": message.value(),
                        "topic": message.topic(),
                    }
                )
    consumer.close()
    return rows


def start_worker(settings: Settings, workdir: Path) -> ManagedProcess:
    return start_gavel("bench-worker", ["worker", "--loglevel", "warning"], settings, workdir)


def worker_throughput(settings: Settings, listings: int, workdir: Path) -> dict:
    worker = start_worker(settings, workdir)
    try:
        done = wait_until(
            lambda: (
                topic_records(settings, PRICES_SCORED)
                + topic_records(settings, AUCTIONS_DEADLETTER)
                >= listings
            ),
            600,
            1.0,
        )
    finally:
        worker.stop()
    assert done, "the worker did not finish the backlog"
    stamps = sorted(r["ts"] for r in output_timestamps(settings, (PRICES_SCORED,)))
    seconds = stamps[-1] - stamps[0]
    return {"events": len(stamps), "seconds": seconds, "events_per_s": len(stamps) / seconds}


def bare_loop(settings: Settings, listings: int, batch: int) -> dict:
    """consume -> the worker's batch logic with the same model -> produce, no Faust."""
    source = RegistryModelSource(settings)
    model = source.load(source.champion_version())
    consumer = Consumer(
        consumer_config(settings, f"bench-bare-{uuid.uuid4().hex[:6]}", **{"fetch.min.bytes": 1})
    )
    consumer.subscribe([settings.topic(AUCTIONS_LISTED)])
    producer = Producer(producer_config(settings))
    out = settings.topic("bench.bare.scored")
    seen = 0
    started = None
    while seen < listings:
        messages = [m for m in consumer.consume(batch, timeout=1.0) if m.error() is None]
        if not messages:
            continue
        started = started or time.perf_counter()
        events = [
            IncomingEvent(
                m.key(), m.value(), m.topic(), m.partition(), m.offset(), m.timestamp()[1] / 1000
            )
            for m in messages
        ]
        result = score_batch(events, model)
        for output in result.scored + result.dead_letters:
            producer.produce(out, key=output.key, value=output.value)
        producer.poll(0)
        seen += len(messages)
    producer.flush(60)
    seconds = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return {"events": seen, "seconds": seconds, "events_per_s": seen / seconds}


def latency_at_rate(settings: Settings, frame, rate: float, workdir: Path) -> dict:
    """Listed -> scored latency over one paced replay, its first WARMUP_S seconds excluded
    (the consumer group settles and the model warms up)."""
    worker = start_worker(settings, workdir)
    try:
        url = f"http://{settings.host}:{settings.worker_web_port}/health"
        import httpx

        wait_until(lambda: _ok(httpx, url), 90, 0.5)
        stats = replay(frame, settings, ReplayOptions(with_sales=False, rate=rate))
        wait_until(lambda: topic_records(settings, PRICES_SCORED) >= stats.listings * 0.99, 120)
    finally:
        worker.stop()
    rows = []
    for row in output_timestamps(settings, (PRICES_SCORED,)):
        payload = json.loads(row["value"])
        ingested = datetime.fromisoformat(payload["ingested_at"]).timestamp()
        rows.append((ingested, row["ts"] - ingested))
    timed = np.asarray(rows)
    timed = timed[timed[:, 0] >= timed[:, 0].min() + WARMUP_S]
    values = timed[:, 1] * 1000
    return {
        "rate": rate,
        "events": len(values),
        "warmup_s": WARMUP_S,
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
        "over_100_ms": float((values > 100).mean()),
    }


def _ok(httpx, url: str) -> bool:  # type: ignore[no-untyped-def]  # bench script, not type-checked
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    args = parser.parse_args()

    base = Settings()
    manager.up(base, manager.CORE, console=Console(stderr=True, quiet=True))
    tag = uuid.uuid4().hex[:6]
    settings = base.replace(
        namespace=f"bench-{tag}.", model_name=f"gavel-bench-{tag}", experiment_name="gavel-bench"
    )
    workdir = base.stack.dir / "bench"
    ensure_topics(settings)
    console.print("training the benchmark model…")
    data = generate_auctions(400_000, start="2015-01-01", end="2015-12-31", seed=3)
    train_and_register(time_split(data, "2015-03-01", test_days=30), settings, source="bench")
    backlog = data[data["listed_at"] >= "2015-04-01"].head(args.listings)
    replay(backlog, settings, ReplayOptions(with_sales=False))
    console.print(f"{len(backlog):,} listings waiting on {settings.topic(AUCTIONS_LISTED)}")

    console.print("1/3 worker throughput…")
    worker = worker_throughput(settings, len(backlog), workdir)
    console.print(f"    {worker['events_per_s']:,.0f} events/s")
    console.print("2/3 bare confluent-kafka loop (ceiling)…")
    ceiling = bare_loop(settings, len(backlog), settings.worker_batch_size)
    console.print(f"    {ceiling['events_per_s']:,.0f} events/s")

    console.print(f"3/3 latency at {args.rate:,.0f} events/s…")
    fresh = settings.replace(namespace=f"bench-{tag}-lat.")
    ensure_topics(fresh)
    n = int(args.rate * (args.latency_seconds + WARMUP_S))
    latency = latency_at_rate(
        fresh, data[data["listed_at"] >= "2015-06-01"].head(n), args.rate, workdir
    )

    delete_topics_with_prefix(settings, f"bench-{tag}")  # keep the broker small
    ratio = worker["events_per_s"] / ceiling["events_per_s"]
    champion = registry.champion(registry.connect(settings), settings.model_name)
    result = {
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": f"{settings.model_name} v{champion.version if champion else '?'}",
        "batch_size": settings.worker_batch_size,
        "batch_within_s": settings.worker_batch_within_s,
        "worker": worker,
        "bare_loop": ceiling,
        "worker_to_ceiling": ratio,
        "latency": latency,
        "targets": {
            "throughput_ratio_at_least": 0.5,
            "p99_ms_at_most": 100.0,
            "throughput_met": ratio >= 0.5,
            "latency_met": latency["p99_ms"] <= 100.0,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"stream-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    console.print_json(data=result)
    console.print(
        f"worker / ceiling = {ratio:.0%}; p99 at {args.rate:,.0f}/s = "
        f"{latency['p99_ms']:.0f} ms. Written to {path}"
    )


if __name__ == "__main__":
    main()
