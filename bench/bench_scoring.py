"""Benchmark of the pure scoring path (`score_batch`, and one-listing predictions), no broker.

One run, on one machine, with one real XGBoost champion (fitted like `gavel train` does,
made single-threaded like the worker does) and the same listings throughout:

1. In this checkout, in one process: `score_batch` over batches of 500 with the compiled
   scorer and with the plain pipeline (`pipeline.predict(listings_frame(...))`), in
   alternating rounds; per-listing cost and throughput (listings/s). Then the latency of
   one-listing predictions (p50/p99), compiled and pipeline, alternating, both for the
   model call alone and for what `POST /predict` does around it (parse, price, write).
2. With `--baseline /other/checkout`: each checkout's `score_batch` with its own serving
   model (`stream_app.model.LoadedModel`), in alternating child processes, so that
   both see the same machine: the whole hot path before and after a change.
3. With `--profile`: cProfile of `score_batch` on batches of 500 in each checkout, the
   costliest functions by own time.
4. With `--http` (needs the local stack): a champion registered in MLflow under a fresh
   name, then a real `gavel worker` of each checkout in turn, and one-listing
   `POST /predict` round trips timed by a keep-alive client (p50/p99), next to `GET /health`
   on the same worker: the round trip of the HTTP stack, and of the machine's noise.

Every child runs with OMP_NUM_THREADS=1, as the worker scores. The machine has 2 cores
shared with other work: compare figures of the same run only, and repeat.

Usage: .venv/bin/python bench/bench_scoring.py [--baseline /path/to/checkout] [--profile]
Results go to bench/results/scoring-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BATCH = 500

# Loads the data and the checkout's serving model; the same preamble in every child.
PREAMBLE = """
import json, pickle, sys, time
sys.path.insert(0, sys.argv[1])
from stream_app.batch import IncomingEvent, score_batch
from stream_app.model import LoadedModel

payloads, pipeline = pickle.load(open(sys.argv[2], "rb"))
events = [
    IncomingEvent(p[:16].encode(), p.encode(), "auctions.listed", 0, i, 1.4e9)
    for i, p in enumerate(payloads)
]
batches = [events[i:i + 500] for i in range(0, len(events), 500)]
served = LoadedModel("bench", "1", pipeline, time.time())  # the checkout's own serving path
import gc
gc.collect()
gc.freeze()  # as the worker does after each model swap: long-lived objects leave the GC
"""

# Each checkout's score_batch with its own serving model: listings/s over every batch.
CHILD_SERVED = (
    PREAMBLE
    + """
for batch in batches[:3]:
    score_batch(batch, served)  # warm-up
started = time.perf_counter()
scored = 0
for batch in batches:
    scored += len(score_batch(batch, served).scored)
print(json.dumps({"events_per_s": len(events) / (time.perf_counter() - started), "scored": scored}))
"""
)

# cProfile of score_batch in a checkout: the costliest functions by own time.
CHILD_PROFILE = (
    PREAMBLE
    + """
import cProfile, pstats
for batch in batches[:3]:
    score_batch(batch, served)
profile = cProfile.Profile()
profile.enable()
for batch in batches[:20]:
    score_batch(batch, served)
profile.disable()
stats = pstats.Stats(profile).stats
events_profiled = sum(len(batch) for batch in batches[:20])
total = sum(row[2] for row in stats.values())
rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:int(sys.argv[3])]
print(json.dumps({
    "events": events_profiled,
    "total_own_s": total,
    "top_by_own_time": [
        {
            "function": f"{file.split('site-packages/')[-1].replace(sys.argv[1] + '/', '')}"
                        f":{line}({name})",
            "calls": calls,
            "own_us_per_event": 1e6 * own / events_profiled,
            "share": own / total,
            "cumulative_us_per_event": 1e6 * cumulative / events_profiled,
        }
        for (file, line, name), (_, calls, own, cumulative, _) in rows
    ],
}))
"""
)

# This checkout only: compiled scorer vs the plain pipeline, in the same process.
CHILD_COMPARE = (
    PREAMBLE
    + """
import orjson
from gavel.schemas import Listing
from stream_app.predict import parse_predict_request
from stream_app.scorer import PipelineScorer

rounds, one_row_calls = int(sys.argv[3]), int(sys.argv[4])
compiled = served
assert compiled.scorer.compiled, "the benchmark's champion must compile"
plain = LoadedModel("bench", "1", pipeline, time.time(), scorer=PipelineScorer(pipeline))
models = {"compiled": compiled, "pipeline": plain}

for model in models.values():
    for batch in batches[:3]:
        score_batch(batch, model)  # warm-up
per_listing = {name: [] for name in models}
for _ in range(rounds):  # alternate, so that both see the same machine
    for name, model in models.items():
        started = time.perf_counter()
        for batch in batches:
            score_batch(batch, model)
        per_listing[name].append(1e6 * (time.perf_counter() - started) / len(events))

listings = [Listing.model_validate_json(p) for p in payloads[:one_row_calls]]
bodies = [orjson.dumps({k: v for k, v in orjson.loads(p).items() if v is not None})
          for p in payloads[:one_row_calls]]

def respond(model, body):  # what POST /predict does, less aiohttp
    parsed, errors = parse_predict_request(body)
    prices = model.predict(parsed)
    predictions = [
        {"auction_id": listing.auction_id, "predicted_price": round(float(price), 2)}
        for listing, price in zip(parsed, prices)
    ]
    return orjson.dumps(
        {"model_name": model.name, "model_version": model.version, "predictions": predictions}
    )

one_row = {f"{kind}_{name}": [] for kind in ("predict", "request") for name in models}
chunk = 25
for start in range(0, one_row_calls, chunk):  # alternate in chunks of calls
    for name, model in models.items():
        for listing, body in zip(listings[start:start + chunk], bodies[start:start + chunk]):
            began = time.perf_counter()
            model.predict([listing])
            middle = time.perf_counter()
            respond(model, body)
            ended = time.perf_counter()
            one_row[f"predict_{name}"].append(1e6 * (middle - began))
            one_row[f"request_{name}"].append(1e6 * (ended - middle))
print(json.dumps({"per_listing_us": per_listing, "one_row_us": one_row}))
"""
)


def prepare(path: Path, listings: int) -> None:
    sys.path.insert(0, str(ROOT))
    from producers.sources.synthetic import generate_auctions
    from producers.timeline import listing_payloads
    from stream_app.model import single_threaded
    from trainer.pipeline import fit_xgboost
    from trainer.split import time_split
    from trainer.training import features_and_target

    data = generate_auctions(60_000 + listings, start="2015-01-01", end="2015-06-30", seed=3)
    split = time_split(data.head(60_000), "2015-02-15", test_days=14)
    x_train, y_train = features_and_target(split.train)
    x_val, y_val = features_and_target(split.validation)
    fitted = fit_xgboost(x_train, y_train, x_val, y_val)
    single_threaded(fitted.pipeline)  # as the worker serves it: one thread per prediction
    payloads = listing_payloads(data.tail(listings))
    with path.open("wb") as file:
        pickle.dump((payloads, fitted.pipeline), file, protocol=pickle.HIGHEST_PROTOCOL)


def child(script: str, checkout: Path, data: Path, *args: object) -> Any:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(checkout), str(data), *map(str, args)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)]

    return {"p50": at(0.50), "p99": at(0.99), "mean": statistics.fmean(ordered)}


def compare_in_process(data: Path, rounds: int, one_row_calls: int) -> dict[str, Any]:
    raw = child(CHILD_COMPARE, ROOT, data, rounds, one_row_calls)
    per_listing = raw["per_listing_us"]
    medians = {name: statistics.median(values) for name, values in per_listing.items()}
    # On a shared machine the best round is the closest to the code's own cost.
    best = {name: min(values) for name, values in per_listing.items()}
    one_row = {name: percentiles(values) for name, values in raw["one_row_us"].items()}
    for name, value in medians.items():
        print(
            f"score_batch, {name}: {value:.1f} µs/listing = {1e6 / value:,.0f} listings/s"
            f" (best round {best[name]:.1f} µs = {1e6 / best[name]:,.0f}/s)"
        )
    for name, stats in one_row.items():
        print(f"one listing, {name}: p50 {stats['p50']:,.0f} µs, p99 {stats['p99']:,.0f} µs")
    return {
        "score_batch_us_per_listing": per_listing,
        "median_us_per_listing": medians,
        "median_listings_per_s": {name: 1e6 / value for name, value in medians.items()},
        "best_round_listings_per_s": {name: 1e6 / value for name, value in best.items()},
        "compiled_speedup": medians["pipeline"] / medians["compiled"],
        "one_row_us": one_row,
        "one_row_calls": one_row_calls,
    }


def compare_checkouts(baseline: Path, data: Path, rounds: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"baseline": [], "this": []}
    for _ in range(rounds):  # alternate, so that both see the same machine
        rates["baseline"].append(child(CHILD_SERVED, baseline, data)["events_per_s"])
        rates["this"].append(child(CHILD_SERVED, ROOT, data)["events_per_s"])
        print(f"baseline {rates['baseline'][-1]:,.0f}/s, this {rates['this'][-1]:,.0f}/s")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "baseline_checkout": str(baseline),
        "events_per_s": rates,
        "median_events_per_s": medians,
        "best_round_events_per_s": {name: max(values) for name, values in rates.items()},
        "this_to_baseline": medians["this"] / medians["baseline"],
    }


def profiles(checkouts: dict[str, Path], data: Path, top: int = 15) -> dict[str, Any]:
    out = {}
    for name, checkout in checkouts.items():
        out[name] = child(CHILD_PROFILE, checkout, data, top)
        print(f"\nprofile of score_batch, {name} ({checkout}), own time per event:")
        for row in out[name]["top_by_own_time"]:
            print(f"  {row['own_us_per_event']:6.2f} µs {row['share']:5.1%}  {row['function']}")
    return out


def http_predict(
    checkouts: dict[str, Path], listings: int, requests: int, rounds: int
) -> dict[str, Any]:
    """One-listing ``POST /predict`` round trips against real workers, alternating."""
    sys.path.insert(0, str(ROOT))
    import uuid

    import orjson
    from rich.console import Console

    from gavel.settings import Settings
    from producers.sources.synthetic import generate_auctions
    from producers.timeline import listing_payloads
    from shell.kafka import delete_topics_with_prefix, ensure_topics
    from shell.stack import manager
    from shell.stack.process import wait_until
    from trainer.split import time_split
    from trainer.training import train_and_register

    base = Settings()
    manager.up(base, manager.CORE, console=Console(stderr=True, quiet=True))
    tag = uuid.uuid4().hex[:6]
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    settings = base.replace(
        namespace=f"bench-{tag}.",
        model_name=f"gavel-bench-{tag}",
        experiment_name="gavel-bench",
        worker_web_port=_free_port(),
        worker_model_cache_dir=workdir / "model-cache",
    )
    ensure_topics(settings)
    data = generate_auctions(60_000 + listings, start="2015-01-01", end="2015-06-30", seed=3)
    split = time_split(data.head(60_000), "2015-02-15", test_days=14)
    train_and_register(split, settings, source="bench")
    bodies = [
        orjson.dumps({k: v for k, v in orjson.loads(p).items() if v is not None})
        for p in listing_payloads(data.tail(listings))
    ]
    latencies: dict[str, list[float]] = {name: [] for name in checkouts}
    # GET /health on the same worker: the round trip of the HTTP stack and the machine.
    floor: dict[str, list[float]] = {name: [] for name in checkouts}
    try:
        for _ in range(rounds):
            for name, checkout in checkouts.items():
                worker = start_worker(name, checkout, settings, workdir)
                try:
                    ready = wait_until(lambda: _healthy(settings), 120, 0.5)
                    assert ready, f"the {name} worker did not start:\n{worker.log_tail(30)}"
                    latencies[name] += _post_all(settings, bodies, requests)
                    floor[name] += _post_all(settings, [b""], requests, "GET", "/health")
                finally:
                    worker.stop()
                stats = percentiles(latencies[name][-requests:])
                health = percentiles(floor[name][-requests:])
                print(
                    f"{name}: p50 {stats['p50']:,.0f} µs, p99 {stats['p99']:,.0f} µs"
                    f" (GET /health: p50 {health['p50']:,.0f} µs, p99 {health['p99']:,.0f} µs)"
                )
    finally:
        delete_topics_with_prefix(settings, f"bench-{tag}")
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "model": settings.model_name,
        "requests_per_round": requests,
        "rounds": rounds,
        "round_trip_us": {name: percentiles(values) for name, values in latencies.items()},
        "health_round_trip_us": {name: percentiles(values) for name, values in floor.items()},
    }


def start_worker(name: str, checkout: Path, settings: Any, workdir: Path) -> Any:
    """``gavel worker`` of ``checkout``, as ``start_gavel`` starts it, but run from the
    checkout: ``python -m`` puts the working directory first on the path."""
    from shell.stack.process import ManagedProcess

    process = ManagedProcess(f"bench-{name}", workdir)
    env = {
        **settings.to_env(),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(checkout),
        "OMP_NUM_THREADS": "1",
    }
    process.start([sys.executable, "-m", "shell.cli", "worker"], env=env, cwd=checkout)
    return process


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(settings: Any) -> bool:
    import http.client

    try:
        connection = http.client.HTTPConnection(settings.host, settings.worker_web_port, timeout=2)
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:
        return False


def _post_all(
    settings: Any, bodies: list[bytes], requests: int, method: str = "POST", path: str = "/predict"
) -> list[float]:
    """Round trips of ``requests`` one-listing POSTs on one keep-alive connection, after
    a warm-up; every answer must be a 200."""
    import http.client

    connection = http.client.HTTPConnection(settings.host, settings.worker_web_port, timeout=10)
    headers = {"Content-Type": "application/json"}
    out = []
    for index in range(requests + 100):
        body = bodies[index % len(bodies)] if method == "POST" else None
        started = time.perf_counter()
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - started
        assert response.status == 200, answer
        if index >= 100:  # the first hundred warm up
            out.append(1e6 * elapsed)
    connection.close()
    return out


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another Gavel checkout to compare with")
    parser.add_argument("--listings", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--one-row-calls", type=int, default=2_000)
    parser.add_argument("--profile", action="store_true", help="cProfile score_batch too")
    parser.add_argument("--http", action="store_true", help="time POST /predict on workers")
    parser.add_argument("--http-requests", type=int, default=2_000)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": load_average(),
        "listings": args.listings,
        "batch": BATCH,
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.pkl"
        prepare(data, args.listings)
        print("1. this checkout, compiled scorer vs the plain pipeline, one process")
        result["compiled_vs_pipeline"] = compare_in_process(data, args.rounds, args.one_row_calls)
        if args.baseline is not None:
            print("2. score_batch with each checkout's serving model, alternating processes")
            result["checkouts"] = compare_checkouts(args.baseline.resolve(), data, args.rounds)
        if args.profile:
            checkouts = {"this": ROOT}
            if args.baseline is not None:
                checkouts["baseline"] = args.baseline.resolve()
            result["profiles"] = profiles(checkouts, data)
    if args.http:
        print("4. POST /predict, one listing, against real workers")
        workers = {"this": ROOT}
        if args.baseline is not None:
            workers["baseline"] = args.baseline.resolve()
        result["http_predict"] = http_predict(workers, 2_000, args.http_requests, 2)
    result["load_average_after"] = load_average()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"scoring-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Written to {path}")


if __name__ == "__main__":
    main()
