"""Benchmark of the scoring path and its scale-out, in one run on one machine (not a test).

Every speed is reported next to a baseline measured in the same run. The parts
(``--parts``, all by default):

- ``bare``: the ceiling, a bare confluent-kafka loop (consume -> the worker's own batch
  code and model -> produce) over a backlog of listings on Kafka.
- ``worker``: ``gavel worker`` (Faust) over the same backlog, as a share of ``bare``.
- ``latency``: listed -> scored through the worker at a fixed ``--rate``.
- ``predict``: sequential single-listing ``POST /predict`` round trips.
- ``flask``: the competitors' design, a Flask app behind gunicorn (2 workers) pricing one
  listing per request with the same pipeline, fed one POST at a time by client threads.
- ``scaling``: 1, 2 and 3 workers on the same backlog (``--partitions`` partitions).
- ``rss``: the worker's resident memory at 0, 250k, 500k and 1M events.
- ``variants``: the worker under each of ``VARIANTS`` (Faust's fetch size, the commit
  interval, batches in flight, Faust's confluent driver), in alternating rounds, as a
  share of the default measured in the same rounds. Not in the default parts.

Results go to bench/results/stream-<timestamp>.json.
Usage: .venv/bin/python bench/bench_stream.py [--listings 200000] [--parts bare,worker]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gavel.settings import Settings  # noqa: E402
from gavel.topics import AUCTIONS_DEADLETTER, AUCTIONS_LISTED, PRICES_SCORED  # noqa: E402
from producers.replay import ReplayOptions, replay  # noqa: E402
from producers.sources.synthetic import generate_auctions  # noqa: E402
from producers.timeline import listing_payloads  # noqa: E402
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
PARTS = ("bare", "worker", "latency", "predict", "flask", "scaling", "rss")
# name -> (Faust settings over the worker's, Gavel settings over the run's)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "aiokafka's fetches (500 records, 1 MB)": (
        {"broker_max_poll_records": None, "consumer_max_fetch_size": 1024**2},
        {},
    ),
    "commit every 5 s": ({}, {"worker_commit_interval_s": 5.0}),
    "8 batches in flight": ({}, {"worker_batches_in_flight": 8}),
    "1 batch in flight": ({}, {"worker_batches_in_flight": 1}),
    "batches of 1000": ({}, {"worker_batch_size": 1000}),
}
RSS_MARKS = (0, 250_000, 500_000, 1_000_000)


class Bench:
    """One run: the stack, one trained model, and a fresh namespace per measurement."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = Settings()
        manager.up(self.base, manager.CORE, console=Console(stderr=True, quiet=True))
        self.tag = uuid.uuid4().hex[:6]
        self.model_name = f"gavel-bench-{self.tag}"
        self.workdir = self.base.stack.dir / "bench"
        self.faust = json.loads(args.faust) if args.faust else {}
        self.namespaces = 0

    def settings(self, partitions: int | None = None) -> Settings:
        """Fresh topics and groups (a namespace of this run) on ``partitions`` partitions."""
        self.namespaces += 1
        settings = self.base.replace(
            namespace=f"bench-{self.tag}-{self.namespaces}.",
            model_name=self.model_name,
            experiment_name="gavel-bench",
            topic_partitions=partitions or self.args.partitions,
            worker_web_port=6090,
        )
        ensure_topics(settings)
        return settings

    def train(self) -> pd.DataFrame:
        console.print("training the benchmark model (the default recipe, as `gavel train`)…")
        data = generate_auctions(self.args.train_rows, start="2015-01-01", end="2015-12-31", seed=3)
        split = time_split(data, "2015-03-01", test_days=30)
        train_and_register(split, self.settings(), source="bench")
        self.listings = data[data["listed_at"] >= "2015-04-01"].reset_index(drop=True)
        return self.listings

    def backlog(self, n: int, partitions: int | None = None) -> Settings:
        settings = self.settings(partitions)
        replay(self.listings.head(n), settings, ReplayOptions(with_sales=False))
        return settings

    def start_worker(
        self, settings: Settings, name: str = "bench-worker", faust: dict[str, Any] | None = None
    ) -> ManagedProcess:
        args = ["worker", "--loglevel", "warning"]
        faust = self.faust if faust is None else faust
        if not faust:
            return start_gavel(name, args, settings, self.workdir)
        process = ManagedProcess(name, self.workdir)
        env = {
            **os.environ,
            **settings.to_env(),
            "PYTHONUNBUFFERED": "1",
            "GAVEL_BENCH_FAUST": json.dumps(faust),
        }
        process.start(
            [sys.executable, str(ROOT / "bench" / "worker_variant.py"), *args[1:]], env=env
        )
        return process

    def cleanup(self) -> None:
        delete_topics_with_prefix(self.base, f"bench-{self.tag}")


# -- reading results back ------------------------------------------------------------------


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


def outputs(settings: Settings) -> int:
    return topic_records(settings, PRICES_SCORED) + topic_records(settings, AUCTIONS_DEADLETTER)


def output_rows(settings: Settings, topic: str = PRICES_SCORED) -> list[tuple[float, bytes]]:
    """(Kafka timestamp in seconds, value) of every record of ``topic``."""
    consumer = Consumer(consumer_config(settings, f"bench-read-{uuid.uuid4().hex[:6]}"))
    expected = topic_records(settings, topic)
    consumer.subscribe([settings.topic(topic)])
    rows: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + 180
    while len(rows) < expected and time.monotonic() < deadline:
        for message in consumer.consume(5000, timeout=0.5):
            if message.error() is None:
                rows.append((message.timestamp()[1] / 1000, message.value() or b""))
    consumer.close()
    return rows


def first_to_last(settings: Settings) -> dict[str, float]:
    stamps = sorted(ts for ts, _ in output_rows(settings))
    seconds = stamps[-1] - stamps[0]
    return {"events": len(stamps), "seconds": seconds, "events_per_s": len(stamps) / seconds}


def percentiles(values_ms: np.ndarray) -> dict[str, float]:
    return {
        "n": len(values_ms),
        "p50_ms": float(np.percentile(values_ms, 50)),
        "p95_ms": float(np.percentile(values_ms, 95)),
        "p99_ms": float(np.percentile(values_ms, 99)),
        "max_ms": float(values_ms.max()),
    }


def rss_mb(pid: int | None) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, TypeError):
        return None
    return None


# -- the parts -----------------------------------------------------------------------------


def bare_loop(bench: Bench) -> dict[str, Any]:
    """consume -> the worker's batch logic with the same model -> produce, no Faust."""
    settings = bench.backlog(bench.args.listings)
    source = RegistryModelSource(settings)
    version = source.champion_version()
    assert version is not None
    model = source.load(version)
    consumer = Consumer(
        consumer_config(settings, f"bench-bare-{uuid.uuid4().hex[:6]}", **{"fetch.min.bytes": 1})
    )
    consumer.subscribe([settings.topic(AUCTIONS_LISTED)])
    producer = Producer(producer_config(settings, **{"linger.ms": 2}))
    out = settings.topic(PRICES_SCORED)
    batch, seen, started = settings.worker_batch_size, 0, None
    while seen < bench.args.listings:
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


def worker_run(
    bench: Bench,
    workers: int = 1,
    partitions: int | None = None,
    faust: dict[str, Any] | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """``workers`` worker processes over a fresh backlog, timed first to last output."""
    settings = bench.backlog(bench.args.listings, partitions).replace(**changes)
    processes = []
    try:
        for index in range(workers):
            mine = settings.replace(worker_web_port=settings.worker_web_port + index)
            processes.append(bench.start_worker(mine, f"bench-worker-{index}", faust))
        done = wait_until(lambda: outputs(settings) >= bench.args.listings, 900, 1.0)
        rss = [rss_mb(p.pid()) for p in processes]
    finally:
        for process in processes:
            process.stop()
    assert done, f"the workers did not finish the backlog:\n{processes[0].log_tail(30)}"
    return {**first_to_last(settings), "workers": workers, "rss_mb": rss}


def latency_at_rate(bench: Bench) -> dict[str, Any]:
    """Listed -> scored latency over one paced replay, its first WARMUP_S seconds excluded
    (the consumer group settles and the model warms up)."""
    settings = bench.settings()
    worker = bench.start_worker(settings)
    try:
        health = f"http://{settings.host}:{settings.worker_web_port}/health"
        assert wait_until(lambda: _ok(health), 120, 0.5), worker.log_tail(30)
        rate = bench.args.rate
        frame = bench.listings.head(int(rate * (bench.args.latency_seconds + WARMUP_S)))
        stats = replay(frame, settings, ReplayOptions(with_sales=False, rate=rate))
        wait_until(lambda: topic_records(settings, PRICES_SCORED) >= stats.listings * 0.99, 120)
    finally:
        worker.stop()
    timed = []
    for ts, value in output_rows(settings):
        ingested = datetime.fromisoformat(orjson.loads(value)["ingested_at"]).timestamp()
        timed.append((ingested, ts - ingested))
    rows = np.asarray(timed)
    rows = rows[rows[:, 0] >= rows[:, 0].min() + WARMUP_S]
    values = rows[:, 1] * 1000
    return {
        "rate": rate,
        "warmup_s": WARMUP_S,
        **percentiles(values),
        "over_100_ms": float((values > 100).mean()),
    }


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def request_bodies(bench: Bench, n: int) -> list[bytes]:
    return [p.encode() for p in listing_payloads(bench.listings.head(n))]


def predict_latency(bench: Bench, requests: int = 3000) -> dict[str, Any]:
    """Sequential single-listing POST /predict, client-side round trip, after a warm-up."""
    settings = bench.settings()
    worker = bench.start_worker(settings)
    bodies = request_bodies(bench, requests)
    url = f"http://{settings.host}:{settings.worker_web_port}"
    try:
        assert wait_until(lambda: _ok(f"{url}/health"), 120, 0.5), worker.log_tail(30)
        timings = _post_sequentially(f"{url}/predict", bodies)
    finally:
        worker.stop()
    return percentiles(np.asarray(timings[len(timings) // 10 :]) * 1000)


def _post_sequentially(url: str, bodies: list[bytes]) -> list[float]:
    timings = []
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=10) as client:
        for body in bodies:
            started = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return timings


@contextmanager
def flask_server(bench: Bench, port: int) -> Iterator[str]:
    source = RegistryModelSource(bench.settings())
    version = source.champion_version()
    assert version is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.pkl"
        path.write_bytes(pickle.dumps(source.load(version).pipeline))
        env = {**os.environ, "GAVEL_BENCH_PIPELINE": str(path), "PYTHONPATH": str(ROOT)}
        gunicorn = Path(sys.executable).with_name("gunicorn")
        argv = [str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}", "bench.flask_baseline:app"]
        server = subprocess.Popen(argv, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/predict"
            probe = request_bodies(bench, 1)[0]
            assert wait_until(lambda: _flask_up(url, probe), 120, 0.5), "gunicorn did not start"
            yield url
        finally:
            server.terminate()
            server.wait(20)


def _flask_up(url: str, body: bytes) -> bool:
    try:
        headers = {"Content-Type": "application/json"}
        return httpx.post(url, content=body, headers=headers, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def flask_baseline(bench: Bench, clients: int = 4, seconds: float = 20.0) -> dict[str, Any]:
    """Listings/s of the per-request design, ``clients`` threads posting one at a time."""
    bodies = request_bodies(bench, 5000)
    with flask_server(bench, port=6095) as url:
        counts = [0] * clients
        stop_at = time.monotonic() + seconds

        def client(index: int) -> None:
            headers = {"Content-Type": "application/json"}
            with httpx.Client(timeout=10) as http:
                i = index
                while time.monotonic() < stop_at:
                    http.post(url, content=bodies[i % len(bodies)], headers=headers)
                    counts[index] += 1
                    i += clients

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    return {"clients": clients, "gunicorn_workers": 2, "listings_per_s": sum(counts) / elapsed}


def worker_rss(bench: Bench) -> dict[str, Any]:
    """The worker's RSS as it scores ``--rss-events`` listings (marks at 0, 250k, ...)."""
    total = bench.args.rss_events
    frame = generate_auctions(total, start="2015-04-01", end="2015-12-31", seed=5)
    settings = bench.settings()
    replay(frame, settings, ReplayOptions(with_sales=False))
    worker = bench.start_worker(settings)
    marks = [m for m in RSS_MARKS if m <= total]
    samples: dict[int, float | None] = {}
    try:
        health = f"http://{settings.host}:{settings.worker_web_port}/health"
        wait_until(lambda: _ok(health) or outputs(settings) > 0, 120, 0.2)
        for mark in marks:
            wait_until(lambda m=mark: outputs(settings) >= m, 900, 0.2)  # type: ignore[misc]
            samples[mark] = rss_mb(worker.pid())
    finally:
        worker.stop()
    values = [v for v in samples.values() if v is not None]
    growth = (values[-1] / samples[250_000] - 1) if samples.get(250_000) else None
    return {
        "events": total,
        "rss_mb_at": {str(k): v for k, v in samples.items()},
        "peak_mb": max(values),
        "growth_250k_to_end": growth,
    }


def variants(bench: Bench, rounds: int = 2) -> dict[str, Any]:
    """Each variant's worker throughput, rounds alternating, as a share of the default's."""
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, (faust, changes) in VARIANTS.items():
            run = timed(
                f"  variant {name}", lambda f=faust, c=changes: worker_run(bench, 1, None, f, **c)
            )
            rates[name].append(run["events_per_s"])
    default = float(np.median(rates["default"]))
    return {
        name: {"events_per_s": runs, "median_to_default": float(np.median(runs)) / default}
        for name, runs in rates.items()
    }


def confluent_driver(bench: Bench, wait_s: float = 90.0) -> dict[str, Any]:
    """Faust's confluent-kafka driver: does it score the backlog at all?"""
    settings = bench.backlog(20_000)
    broker = ";".join(f"confluent://{h}" for h in settings.kafka_bootstrap.split(","))
    worker = bench.start_worker(settings, "bench-worker-confluent", {"broker": broker})
    try:
        scored = wait_until(lambda: outputs(settings) > 0, wait_s, 1.0)
        log = worker.log_tail(15)
    finally:
        worker.stop()
    return {
        "scored_anything_within_s": wait_s if scored else None,
        "outputs": outputs(settings),
        "log_tail": log,
    }


# -- the run -------------------------------------------------------------------------------


def timed(label: str, part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    console.print(f"[bold]{label}[/]…")
    started = time.monotonic()
    result = part()
    console.print(f"    {json.dumps(result)[:300]}  ({time.monotonic() - started:.0f}s)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"of {', '.join(PARTS)}")
    parser.add_argument("--listings", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--rss-events", type=int, default=1_000_000)
    parser.add_argument("--faust", default="", help="JSON over the worker's Faust settings")
    parser.add_argument("--label", default="", help="appended to the results file name")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    bench = Bench(args)
    bench.train()
    result: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_start": os.getloadavg(),
        "model": bench.model_name,
        "listings": args.listings,
        "partitions": args.partitions,
        "faust_overrides": bench.faust,
    }
    try:
        if "bare" in parts:
            result["bare_loop"] = timed("bare confluent-kafka loop", lambda: bare_loop(bench))
        if "worker" in parts:
            result["worker"] = timed("gavel worker", lambda: worker_run(bench))
        if "latency" in parts:
            result["latency"] = timed(
                f"latency at {args.rate:,.0f}/s", lambda: latency_at_rate(bench)
            )
        if "predict" in parts:
            result["predict"] = timed("sequential POST /predict", lambda: predict_latency(bench))
        if "flask" in parts:
            result["flask"] = timed("Flask + gunicorn per request", lambda: flask_baseline(bench))
        if "scaling" in parts:
            result["scaling"] = [
                timed(f"{n} workers", lambda n=n: worker_run(bench, n)) for n in (1, 2, 3)
            ]
        if "variants" in parts:
            result["variants"] = variants(bench)
            result["confluent_driver"] = timed(
                "Faust's confluent driver", lambda: confluent_driver(bench)
            )
        if "rss" in parts:
            result["worker_rss"] = timed("worker RSS", lambda: worker_rss(bench))
    finally:
        bench.cleanup()
    result["load_average_at_end"] = os.getloadavg()
    summarise(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    label = f"-{args.label}" if args.label else ""
    path = RESULTS / f"stream-{datetime.now(UTC):%Y%m%dT%H%M%S}{label}.json"
    path.write_text(json.dumps(result, indent=2))
    console.print(f"written to {path}")


def summarise(result: dict[str, Any]) -> None:
    """Ratios to the baselines of the same run, and the targets."""
    summary: dict[str, Any] = {}
    bare, worker = result.get("bare_loop"), result.get("worker")
    if bare and worker:
        summary["worker_to_bare"] = worker["events_per_s"] / bare["events_per_s"]
        summary["worker_to_bare_met"] = summary["worker_to_bare"] >= 0.5
    if bare:
        summary["bare_met"] = bare["events_per_s"] >= 25_000
    if "latency" in result:
        summary["latency_p99_met"] = result["latency"]["p99_ms"] <= 100
    if "predict" in result:
        summary["predict_p99_met"] = result["predict"]["p99_ms"] <= 2
    if "flask" in result and worker:
        summary["worker_to_flask"] = worker["events_per_s"] / result["flask"]["listings_per_s"]
    if "scaling" in result:
        one = result["scaling"][0]["events_per_s"]
        summary["scaling_vs_one"] = [run["events_per_s"] / one for run in result["scaling"]]
    if "worker_rss" in result:
        rss = result["worker_rss"]
        summary["rss_met"] = rss["peak_mb"] <= 400 and (rss["growth_250k_to_end"] or 0) < 0.05
    result["summary"] = summary
    console.print_json(data=summary)


if __name__ == "__main__":
    main()
