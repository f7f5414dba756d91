"""Benchmark of the drift monitor (not a test), in three parts.

1. Detection: for each drift scenario, how many events after the onset the monitor
   alerts, feeding the monitor's event logic directly (same code as `gavel monitor`).
2. Throughput and memory of `gavel monitor` as a process over 1,000,000 events already
   on Kafka (500,000 listings of March to June 2015 priced by the champion, trained on
   the months before, and their sales three hours of event time later, interleaved in
   event-time order on 4 partitions; a stationary market, where alerts are rare: each
   alert writes an Evidently report, seconds of work): events/s from
   its first event to its last, and its RSS (VmRSS, sampled from /proc while it runs)
   before its first event and after 250k, 500k and 1M, with the peak (VmHWM). Next to
   it, in the same run on the same events: a bare confluent-kafka loop that consumes
   and decodes the JSON and nothing else (before and after the monitor, as load on a
   shared machine moves), and a loop that also parses with the contract (the least any
   monitor must do). Only ratios between figures of one run mean much.
3. Where the memory goes: RSS of a fresh interpreter after each of the monitor's
   imports, after building a reference and after one Evidently report.

Results go to bench/results/monitor-<timestamp>.json.
Usage: .venv/bin/python bench/bench_monitor.py [--listings 500000] [--skip-detection]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
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

from bench.profile_monitor import scored_values  # noqa: E402
from gavel.schemas import LISTING_FIELDS  # noqa: E402
from gavel.settings import Settings  # noqa: E402
from gavel.topics import AUCTIONS_SOLD, PRICES_SCORED  # noqa: E402
from monitor.core import Monitor  # noqa: E402
from monitor.records import Skipped, parse_sale, parse_scored  # noqa: E402
from monitor.reference import build_reference  # noqa: E402
from monitor.service import BATCH  # noqa: E402
from producers.sources.scenarios import parse_scenario  # noqa: E402
from producers.sources.synthetic import generate_auctions  # noqa: E402
from producers.timeline import LISTING, build_timeline, listing_payloads, sale_payloads  # noqa: E402
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
SALE_DELAY = timedelta(hours=3)
RSS_MARKS = (0, 250_000, 500_000, 1_000_000)
STREAM_FROM, STREAM_TO = "2015-03-01", "2015-07-01"  # after the model's training data
SAMPLE_S = 0.2


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


# -- 2. throughput and memory of the process -------------------------------------------------


def priced_stream(frame: pd.DataFrame, model: LoadedModel) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of the champion's prices and the sales, in event-time order.

    The prices come from one pipeline call per chunk (the worker's batch path, without
    its per-event validation: the generator's listings are valid) and are rendered as
    the worker renders a ``ScoredPrice``.
    """
    prices: list[float] = []
    for start in range(0, len(frame), 50_000):
        chunk = frame.iloc[start : start + 50_000][list(LISTING_FIELDS)]
        prices += [round(float(p), 2) for p in model.pipeline.predict(chunk)]
    scored = scored_values(frame, model.version, prices, model.name)
    sales = [payload.encode() for payload in sale_payloads(frame, SALE_DELAY)]
    keys = [auction_id.encode() for auction_id in frame["auction_id"]]
    timeline = build_timeline(frame, SALE_DELAY)
    return [
        (PRICES_SCORED, keys[row], scored[row])
        if kind == LISTING
        else (AUCTIONS_SOLD, keys[row], sales[row])
        for kind, row in zip(timeline.kind_codes, timeline.rows, strict=True)
    ]


def produce(settings: Settings, stream: list[tuple[str, bytes, bytes]]) -> None:
    producer = Producer(producer_config(settings))
    for topic, key, value in stream:
        produce_waiting(producer, settings.topic(topic), value, key)
    producer.flush(120)


def processed(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return -1.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "gavel_monitor_events_processed_total"
    )


def labelled(url: str, name: str, label: str) -> dict[str, float]:
    """The samples of one labelled metric of a running service, by label value."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=5).text
    return {
        sample.labels[label]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def status_mb(pid: int, field: str) -> float:
    """``VmRSS`` or ``VmHWM`` of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Sample = tuple[float, float, float, float]  # (monotonic, processed, VmRSS MB, CPU s)


def crossing(samples: list[Sample], mark: float) -> tuple[float, float, float]:
    """(time, RSS, CPU) when ``processed`` reached ``mark``: time and CPU interpolated
    between the two samples around it, the RSS of the first sample at or past it."""
    for (t0, p0, _, c0), (t1, p1, rss1, c1) in itertools.pairwise(samples):
        if p0 < mark <= p1:
            share = (mark - p0) / (p1 - p0)
            return t0 + share * (t1 - t0), rss1, c0 + share * (c1 - c0)
    raise ValueError(f"the samples never reached {mark}")


def monitor_process(settings: Settings, total: int) -> dict:
    """Run `gavel monitor` over the ``total`` events on Kafka, sampling processed and RSS."""
    process = start_gavel("bench-monitor", ["monitor"], settings, settings.stack.dir / "bench")
    url = f"http://{settings.host}:{settings.monitor_metrics_port}/metrics"
    samples: list[Sample] = []
    try:
        wait_until(lambda: processed(url) >= 0, 120, 0.1)
        pid = process.pid()
        assert pid is not None, process.log_tail(40)
        while True:
            done = processed(url)
            samples.append((time.monotonic(), done, status_mb(pid, "VmRSS"), cpu_s(pid)))
            if done >= total:
                break
            if process.pid() is None:
                raise RuntimeError(f"the monitor exited:\n{process.log_tail(40)}")
            if time.monotonic() - samples[0][0] > 900:
                raise TimeoutError(f"{done:.0f} of {total} events in 900 s")
            time.sleep(SAMPLE_S)
        peak = status_mb(pid, "VmHWM")
        time.sleep(1.0)  # anything read twice would show now
        held = labelled(url, "gavel_monitor_held_events", "state")
        join = labelled(url, "gavel_monitor_join_total", "outcome")
        alerts = labelled(url, "gavel_monitor_alerts_total", "kind")
        read = processed(url)
    finally:
        process.stop()
    if read != total:
        raise RuntimeError(f"the monitor read {read:.0f} events of {total}")
    idle = [rss for _, done, rss, _ in samples if done <= 0]
    started, _, cpu_started = crossing(samples, 1)
    rss_at = {"0": idle[-1] if idle else float("nan")}
    times = {}
    for mark in RSS_MARKS[1:]:
        if mark <= total:
            times[mark], rss_at[f"{mark:_}"], _ = crossing(samples, mark)
    finished, _, cpu_finished = crossing(samples, total)
    seconds = finished - started
    cpu = cpu_finished - cpu_started
    segments = {}
    previous, previous_t = 0, started
    for mark, at in times.items():
        segments[f"{previous:_}-{mark:_}"] = (mark - previous) / (at - previous_t)
        previous, previous_t = mark, at
    growth = None
    if "250_000" in rss_at and f"{total:_}" in rss_at:
        growth = rss_at[f"{total:_}"] / rss_at["250_000"] - 1
    return {
        "events": total,
        "seconds": seconds,
        "events_per_s": total / seconds,
        "cpu_seconds": cpu,
        "events_per_cpu_s": total / cpu,
        "events_per_s_by_segment": segments,
        "rss_mb_at_events": rss_at,
        "rss_growth_250k_to_end": growth,
        "peak_rss_mb": peak,
        "held_events_at_end": held,
        "join_at_end": join,
        "alerts": alerts,
        "samples": len(samples),
    }


def bare_reader(settings: Settings, total: int, parse: bool = False) -> dict:
    """Consume ``total`` events and decode their JSON (``parse``: parse them with the
    contract, as the monitor does first), in batches of the monitor's size."""
    consumer = Consumer(consumer_config(settings, f"bench-bare-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([settings.topic(PRICES_SCORED), settings.topic(AUCTIONS_SOLD)])
    scored_topic = settings.topic(PRICES_SCORED)
    seen, started, cpu_started = 0, None, time.process_time()
    while seen < total:
        messages = consumer.consume(BATCH, timeout=0.5)
        now = datetime.now(UTC)
        for message in messages:
            if message.error() is None:
                started = started or time.monotonic()
                if not parse:
                    orjson.loads(message.value())
                elif message.topic() == scored_topic:
                    parse_scored(message.value(), now)
                else:
                    parse_sale(message.value(), now)
                seen += 1
    seconds = time.monotonic() - (started or time.monotonic())
    cpu = time.process_time() - cpu_started  # librdkafka's threads included
    consumer.close()
    return {
        "events": seen,
        "seconds": seconds,
        "events_per_s": seen / seconds,
        "events_per_cpu_s": seen / cpu,
    }


# -- 3. where the memory goes ---------------------------------------------------------------

RSS_PROBE = """
import json, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
steps = {"interpreter": rss()}
import numpy, pandas
steps["numpy + pandas"] = rss()
import pydantic, gavel.schemas, gavel.records
steps["pydantic + contracts"] = rss()
import confluent_kafka, redis, prometheus_client, tenacity
steps["kafka, redis, prometheus clients"] = rss()
import evidently, evidently.metrics, evidently.presets, scipy.stats
steps["evidently (+ scipy, plotly)"] = rss()
import river.drift
steps["river"] = rss()
import mlflow
steps["mlflow"] = rss()
import monitor.service
steps["the rest of monitor.service"] = rss()
from producers.sources.synthetic import generate_auctions
from monitor.reference import build_reference
from monitor.drift import DriftDetector
from gavel.settings import MonitorSettings
raw = generate_auctions(5000, start="2015-01-01", end="2015-03-01", seed=1)
sample = raw.assign(prediction=raw["mmr"])
steps["(bench: a generated sample)"] = rss()
reference = build_reference("m", "1", sample, 5000)
steps["a reference of 5,000 rows"] = rss()
detector = DriftDetector(MonitorSettings())
current = reference.frame.drop(columns=["sellingprice"]).head(2000)
result = detector.run(reference.drift, current)
steps["one window's drift tests"] = rss()
detector.snapshot(reference.drift, result)
steps["one Evidently report (an alert)"] = rss()
print(json.dumps(steps))
"""


def rss_breakdown() -> dict[str, float]:
    """RSS (MB) of a fresh interpreter after each import and step of the monitor, in order."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", RSS_PROBE], capture_output=True, text=True, env=env, check=True
    )
    steps = json.loads(out.stdout.strip().splitlines()[-1])
    previous = 0.0
    breakdown = {}
    for step, rss in steps.items():
        breakdown[step] = {"rss_mb": round(rss, 1), "added_mb": round(rss - previous, 1)}
        previous = rss
    return breakdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=500_000, help="events: twice this")
    parser.add_argument("--skip-detection", action="store_true")
    args = parser.parse_args()

    console.print("training the benchmark model…")
    data = generate_auctions(150_000, start="2015-01-01", end="2015-07-01", seed=7)
    split = time_split(data, "2015-03-01", test_days=30)
    found = None
    if not args.skip_detection:
        fitted, _ = fit_candidates(split)
        _, predictions = evaluate(fitted, split.test)
        reference = reference_sample(split.test, predictions)
        model = LoadedModel("bench", "1", fitted.pipeline, time.time())
        console.print("1/3 detection: events from drift onset to the first alert")
        found = detection(model, reference, rows=150_000)

    total = 2 * args.listings
    console.print(f"2/3 `gavel monitor` over {total:,} events on Kafka…")
    base = Settings()
    manager.up(base, manager.CORE, console=Console(stderr=True, quiet=True))
    tag = uuid.uuid4().hex[:6]
    settings = base.replace(
        namespace=f"bench-mon-{tag}.",
        model_name=f"gavel-bench-mon-{tag}",
        reports_dir=base.stack.dir / "bench" / "reports",
    )
    ensure_topics(settings)
    from shell import registry
    from trainer.training import train_and_register

    train_and_register(split, settings, source="bench")  # the monitor's reference
    frame = generate_auctions(args.listings, start=STREAM_FROM, end=STREAM_TO, seed=11)
    stream = priced_stream(frame, registry_model(settings, registry))
    del frame
    produce(settings, stream)
    del stream
    load = os.getloadavg()
    try:
        console.print("    bare reader…")
        bare_before = bare_reader(settings, total)
        console.print("    contract reader…")
        contract = bare_reader(settings, total, parse=True)
        console.print("    the monitor…")
        service = monitor_process(settings, total)
        console.print("    bare reader again…")
        bare_after = bare_reader(settings, total)
    finally:
        delete_topics_with_prefix(settings, settings.namespace)  # keep the broker small
    bare = (bare_before["events_per_s"] + bare_after["events_per_s"]) / 2
    console.print("3/3 where the memory goes…")
    memory = rss_breakdown()
    result = {
        "at": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15_before": load,
        "load_average_1_5_15_after": os.getloadavg(),
        "detection": found,
        "monitor": service,
        "bare_reader_before": bare_before,
        "bare_reader_after": bare_after,
        "contract_reader": contract,
        "monitor_to_bare_reader": service["events_per_s"] / bare,
        "monitor_to_contract_reader": service["events_per_s"] / contract["events_per_s"],
        "monitor_to_bare_reader_per_cpu_s": service["events_per_cpu_s"]
        / ((bare_before["events_per_cpu_s"] + bare_after["events_per_cpu_s"]) / 2),
        "memory_breakdown": memory,
        "window_events": settings.monitor.window_events,
        "performance_window_events": settings.monitor.performance_window_events,
        "sale_delay_hours": SALE_DELAY.total_seconds() / 3600,
        "stream": [STREAM_FROM, STREAM_TO],
        "alerts_during_the_run": service["alerts"],
        "batch": BATCH,
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
