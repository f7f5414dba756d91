"""Profile of the monitor's per-record path, in-process and without Kafka (not a test).

A realistic stream (scored listings and their sales some hours later, on 4 partitions,
read in per-partition chunks as a consumer fetches them) goes through the same code
as `gavel monitor`: ``MonitorService`` parses each record with the contract and feeds
the monitor, with fakes for the broker and Redis. It prints records/s next to a bare
loop's that only decodes the same records' JSON (taken in the same run: on a shared
machine only the ratio means something), and records per CPU second (the process's
own CPU time, which load on a shared machine moves far less than the wall clock), and,
with
``--profile``, a sampling profile (pyinstrument: ``.venv/bin/pip install pyinstrument``;
a sampler distorts far less than cProfile, which inflates every small call).

Usage: .venv/bin/python bench/profile_monitor.py [--listings 50000] [--profile]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gavel.settings import Settings  # noqa: E402
from gavel.topics import AUCTIONS_SOLD, PRICES_SCORED  # noqa: E402
from monitor.core import Monitor  # noqa: E402
from monitor.metrics import MonitorMetrics  # noqa: E402
from monitor.reference import build_reference  # noqa: E402
from monitor.reports import ReportWriter  # noqa: E402
from monitor.service import BATCH, MonitorService  # noqa: E402
from producers.sources.synthetic import generate_auctions  # noqa: E402
from producers.timeline import LISTING, build_timeline, listing_payloads, sale_payloads  # noqa: E402

PARTITIONS = 4
SALE_DELAY = timedelta(hours=3)
FETCH = 500  # records of one partition per fetch


@dataclass
class Record:
    """A consumed record, with the methods of confluent_kafka.Message the service calls."""

    _topic: str
    _value: bytes
    _partition: int
    _offset: int

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


def scored_values(
    frame: pd.DataFrame, version: str, prices: list[float] | None = None, model: str = "bench"
) -> list[bytes]:
    """``ScoredPrice`` JSON as the worker writes it (its fields, in its order), rendered in
    bulk; priced by ``prices``, or by the MMR."""
    listings = listing_payloads(frame)
    listed = frame["listed_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00").tolist()
    if prices is None:
        prices = (frame["mmr"].fillna(frame["sellingprice"])).round(2).tolist()
    return [
        (
            f'{{"auction_id":"{auction}","predicted_price":{price},"model_name":"{model}",'
            f'"model_version":"{version}","listed_at":"{at}","scored_at":"{at}",'
            f'"ingested_at":"{at}","features":{listing},"model_source":"registry"}}'
        ).encode()
        for auction, price, at, listing in zip(
            frame["auction_id"], prices, listed, listings, strict=True
        )
    ]


def stream(listings: int, seed: int = 11, version: str = "1") -> list[Record]:
    """Scores and sales in event-time order per partition, consumed in fetch-sized chunks."""
    frame = generate_auctions(listings, start="2015-03-01", end="2016-12-31", seed=seed)
    scored, sales = scored_values(frame, version), sale_payloads(frame, SALE_DELAY)
    timeline = build_timeline(frame, SALE_DELAY)
    keys = frame["auction_id"].tolist()
    queues: dict[tuple[str, int], list[Record]] = {}
    for kind, row in zip(timeline.kind_codes, timeline.rows, strict=True):
        topic = PRICES_SCORED if kind == LISTING else AUCTIONS_SOLD
        value = scored[row] if kind == LISTING else sales[row].encode()
        partition = zlib.crc32(keys[row].encode()) % PARTITIONS
        queue = queues.setdefault((topic, partition), [])
        queue.append(Record(topic, value, partition, len(queue)))
    out: list[Record] = []
    position = 0
    while any(position < len(q) for q in queues.values()):
        for queue in queues.values():
            out += queue[position : position + FETCH]
        position += FETCH
    return out


class NoProducer:
    def produce(self, *args: Any, **kwargs: Any) -> None:
        kwargs["on_delivery"](None, None)

    def poll(self, _: float = 0) -> int:
        return 0

    def flush(self, _: float = 0) -> int:
        return 0


def service(reference: pd.DataFrame) -> MonitorService:
    settings = Settings(reports_dir=Path("/tmp/gavel-profile-reports"))
    svc = object.__new__(MonitorService)
    svc.settings = settings
    svc.stop = threading.Event()
    svc.metrics = MonitorMetrics()
    svc.monitor = Monitor(
        settings,
        lambda version: build_reference("bench", version, reference, 5000),
        svc.metrics,
        ReportWriter(settings.reports_dir),
        partitions=(PARTITIONS, PARTITIONS),
    )
    svc.producer = NoProducer()  # type: ignore[assignment]  # a fake broker
    svc.topics = {PRICES_SCORED: PRICES_SCORED, AUCTIONS_SOLD: AUCTIONS_SOLD}
    svc.held = None  # no lease: nothing is checkpointed here
    svc.partitions = {PRICES_SCORED: PARTITIONS, AUCTIONS_SOLD: PARTITIONS}
    svc.latest, svc.at_end = {}, set()
    svc.positions, svc.checkpointed = {}, {}
    svc.unconfirmed, svc.failed = {}, []
    return svc


def feed(svc: MonitorService, records: list[Record]) -> None:
    for start in range(0, len(records), BATCH):
        svc._handle_batch(records[start : start + BATCH])  # type: ignore[arg-type]  # stand-ins for Messages


def bare_seconds(records: list[Record]) -> float:
    """A loop that only decodes every record's JSON: the floor of any reader (CPU time)."""
    started = time.process_time()
    for record in records:
        orjson.loads(record.value())
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=50_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--interval", type=float, default=0.0005, help="sampling, seconds")
    args = parser.parse_args()
    raw = generate_auctions(5000, start="2015-01-01", end="2015-03-01", seed=1)
    reference = raw.assign(prediction=raw["mmr"].fillna(raw["sellingprice"]))
    records = stream(args.listings)
    svc = service(reference)
    svc.monitor.use_version("1")  # the reference is built before the clock starts
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=args.interval)
        profiler.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    feed(svc, records)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if profiler:
        profiler.stop()
    bare = bare_seconds(records)
    print(
        f"{len(records):,} records in {seconds:.2f}s: {len(records) / seconds:,.0f}/s "
        f"({len(records) / cpu:,.0f} per CPU second), "
        f"bare JSON loop {len(records) / bare:,.0f} per CPU second, ratio {bare / cpu:.3f} "
        f"({datetime.now(UTC):%H:%M:%S}); counts {dict(svc.monitor.counts)}, "
        f"join {svc.monitor.join.counters}"
    )
    if profiler:
        print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
