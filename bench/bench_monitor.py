"""Benchmark of the drift monitor (not a test), in two parts.

1. Detection: for each drift scenario, how many events after the onset the monitor
   alerts, feeding the monitor's event logic directly (same code as `gavel monitor`).
2. Throughput and peak memory of `gavel monitor` as a process over a replay of 200,000
   events (100,000 scored listings + their sales) already on Kafka, next to a baseline
   taken in the same run: a bare confluent-kafka loop that reads and parses the same
   events and does nothing else.

Results go to bench/results/monitor-<timestamp>.json.
Usage: .venv/bin/python bench/bench_monitor.py [--events 200000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pandas as pd
from confluent_kafka import Consumer, Producer
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gavel.settings import Settings  # noqa: E402
from gavel.topics import AUCTIONS_SOLD, PRICES_SCORED  # noqa: E402
from monitor.core import Monitor  # noqa: E402
from monitor.records import Skipped, parse_sale, parse_scored  # noqa: E402
from monitor.reference import build_reference  # noqa: E402
from producers.sources.scenarios import parse_scenario  # noqa: E402
from producers.sources.synthetic import generate_auctions  # noqa: E402
from producers.timeline import LISTING, build_timeline, listing_payloads  # noqa: E402
from shell.kafka import (  # noqa: E402
    consumer_config,
    delete_topics_with_prefix,
    ensure_topics,
    produce_waiting,
    producer_config,
)
from shell.stack import manager  # noqa: E402
from shell.stack.process import start_gavel, wait_until  # noqa: E402
from stream_app.batch import IncomingEvent, score_batch  # noqa: E402
from stream_app.model import LoadedModel  # noqa: E402
from trainer.split import time_split  # noqa: E402
from trainer.training import evaluate, fit_candidates, reference_sample  # noqa: E402

console = Console()
RESULTS = ROOT / "bench" / "results"
ONSET = "2015-05-01"
SCENARIOS = {
    "market_shock": f"market_shock:start={ONSET},segment=body=SUV,change=-0.2",
    "mix_shift": f"mix_shift:start={ONSET}",
    "new_models": f"new_models:start={ONSET},share=0.15",
}
SALE_DELAY = timedelta(hours=2)


def events(frame: pd.DataFrame, model: LoadedModel) -> list[tuple[str, dict]]:
    """The worker's outputs and the sales, merged in event-time order."""
    payloads = [p.encode() for p in listing_payloads(frame)]
    scored: dict[int, dict] = {}
    for start in range(0, len(frame), 2000):
        chunk = [
            IncomingEvent(None, payloads[i], "bench", 0, i, None)
            for i in range(start, min(start + 2000, len(frame)))
        ]
        for offset, output in zip(
            range(start, start + len(chunk)), score_batch(chunk, model).scored, strict=True
        ):
            scored[offset] = orjson.loads(output.value)
    timeline = build_timeline(frame, SALE_DELAY)
    out = []
    for kind, row in zip(timeline.kind_codes, timeline.rows, strict=True):
        if kind == LISTING:
            out.append(("scored", scored[row]))
        else:
            out.append(
                (
                    "sold",
                    {
                        "auction_id": frame["auction_id"].iat[row],
                        "sold_at": (frame["listed_at"].iat[row] + SALE_DELAY).isoformat(),
                        "sellingprice": float(frame["sellingprice"].iat[row]),
                    },
                )
            )
    return out


def detection(model: LoadedModel, reference: pd.DataFrame, rows: int) -> dict:
    results = {}
    settings = Settings(reports_dir=Path("/tmp/gavel-bench-reports"))
    for name, text in {"stationary": None, **SCENARIOS}.items():
        frame = generate_auctions(
            rows,
            start="2015-01-01",
            end="2015-07-01",
            seed=7,
            scenarios=[parse_scenario(text)] if text else [],
        )
        stream = frame[frame["listed_at"] >= "2015-04-01"].reset_index(drop=True)
        monitor = Monitor(settings, lambda v: build_reference("bench", v, reference, 5000))
        onset = pd.Timestamp(ONSET, tz="UTC")
        after_onset = 0
        first: dict | None = None
        for kind, payload in events(stream, model):
            time_key = payload["listed_at"] if kind == "scored" else payload["sold_at"]
            if pd.Timestamp(time_key) >= onset:
                after_onset += 1
            alerts = feed(monitor, kind, payload)
            if alerts and first is None and (text is None or pd.Timestamp(time_key) >= onset):
                first = {
                    "kind": alerts[0].kind.value,
                    "detector": alerts[0].detector,
                    "events_after_onset": after_onset,
                    "features": [f.feature for f in alerts[0].drifted_features],
                }
            if first and text is not None:
                break
        results[name] = first or {"alert": None}
        console.print(f"    {name}: {results[name]}")
    return results


def feed(monitor: Monitor, kind: str, payload: dict) -> list:
    """One event, parsed as `gavel monitor` parses what it reads."""
    now = datetime.now(UTC)
    if kind == "scored":
        scored = parse_scored(orjson.dumps(payload), now)
        return [] if isinstance(scored, Skipped) else monitor.on_scored(scored)
    sale = parse_sale(orjson.dumps(payload), now)
    return [] if isinstance(sale, Skipped) else monitor.on_sale(sale)


def produce(settings: Settings, stream: list[tuple[str, dict]]) -> None:
    producer = Producer(producer_config(settings))
    topics = {"scored": settings.topic(PRICES_SCORED), "sold": settings.topic(AUCTIONS_SOLD)}
    for kind, payload in stream:
        key = payload["auction_id"].encode()
        produce_waiting(producer, topics[kind], orjson.dumps(payload), key)
    producer.flush(60)


def processed(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "gavel_monitor_events_processed_total"
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def monitor_process(settings: Settings, total: int) -> dict:
    process = start_gavel("bench-monitor", ["monitor"], settings, settings.stack.dir / "bench")
    url = f"http://{settings.host}:{settings.monitor_metrics_port}/metrics"
    try:
        wait_until(lambda: processed(url) > 0, 120, 0.05)
        started = time.monotonic()
        wait_until(lambda: processed(url) >= total, 600, 0.2)
        seconds = time.monotonic() - started
        peak = peak_rss_mb(process.pid() or 0)
    finally:
        process.stop()
    return {
        "events": total,
        "seconds": seconds,
        "events_per_s": total / seconds,
        "peak_rss_mb": peak,
    }


def bare_reader(settings: Settings, total: int) -> dict:
    consumer = Consumer(consumer_config(settings, f"bench-bare-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([settings.topic(PRICES_SCORED), settings.topic(AUCTIONS_SOLD)])
    seen, started = 0, None
    while seen < total:
        for message in consumer.consume(1000, timeout=0.5):
            if message.error() is None:
                started = started or time.monotonic()
                orjson.loads(message.value())
                seen += 1
    seconds = time.monotonic() - (started or time.monotonic())
    consumer.close()
    return {"events": seen, "seconds": seconds, "events_per_s": seen / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()

    console.print("training the benchmark model…")
    data = generate_auctions(150_000, start="2015-01-01", end="2015-07-01", seed=7)
    split = time_split(data, "2015-03-01", test_days=30)
    fitted, _ = fit_candidates(split)
    _, predictions = evaluate(fitted, split.test)
    reference = reference_sample(split.test, predictions)
    model = LoadedModel("bench", "1", fitted.pipeline, time.time())

    console.print("1/2 detection: events from drift onset to the first alert")
    found = detection(model, reference, rows=150_000)

    console.print(f"2/2 `gavel monitor` over {args.events:,} events on Kafka…")
    base = Settings()
    manager.up(base, manager.CORE, console=Console(stderr=True, quiet=True))
    tag = uuid.uuid4().hex[:6]
    settings = base.replace(namespace=f"bench-mon-{tag}.", model_name=f"gavel-bench-mon-{tag}")
    ensure_topics(settings)
    from shell import registry
    from trainer.training import train_and_register

    train_and_register(split, settings, source="bench")  # the monitor's reference
    big = generate_auctions(args.events, start="2015-03-01", end="2016-12-31", seed=11)
    stream = events(big.head(args.events // 2), registry_model(settings, registry))
    produce(settings, stream)
    service = monitor_process(settings, len(stream))
    baseline = bare_reader(settings, len(stream))
    delete_topics_with_prefix(settings, settings.namespace)  # keep the broker small
    result = {
        "at": datetime.now(UTC).isoformat(),
        "detection": found,
        "monitor": service,
        "bare_reader": baseline,
        "monitor_to_bare_reader": service["events_per_s"] / baseline["events_per_s"],
        "window_events": settings.monitor.window_events,
        "performance_window_events": settings.monitor.performance_window_events,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"monitor-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    console.print_json(data=json.loads(path.read_text()))
    console.print(f"written to {path}")


def registry_model(settings: Settings, registry) -> LoadedModel:  # type: ignore[no-untyped-def]  # bench script, not type-checked
    client = registry.connect(settings)
    champion = registry.champion(client, settings.model_name)
    return LoadedModel(
        settings.model_name, champion.version, registry.load_pipeline(champion.uri), time.time()
    )


if __name__ == "__main__":
    main()
