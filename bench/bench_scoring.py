"""Benchmark of the pure scoring path (`score_batch`) of this checkout against another
checkout of Gavel (say, the commit before a change), in one run on one machine.

No broker: the same listings, in batches of 500, through each checkout's `score_batch`
with the same real XGBoost pipeline, measured in alternating child processes so that
both see the same machine. This is the hot path that per-event isolation could slow
down; the Kafka benchmark (`bench_stream.py`) is too noisy on a shared 2-core machine
to resolve a few percent.

Usage: .venv/bin/python bench/bench_scoring.py --baseline /path/to/other/checkout
Results go to bench/results/scoring-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BATCH = 500

CHILD = """
import pickle, sys, time
sys.path.insert(0, sys.argv[1])
from stream_app.batch import IncomingEvent, score_batch
from gavel.features import listings_frame


class Model:  # the BatchModel protocol of either checkout
    name, version, source = "bench", "1", "registry"

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def predict(self, listings):
        return self.pipeline.predict(listings_frame(listings))


payloads, pipeline = pickle.load(open(sys.argv[2], "rb"))
model = Model(pipeline)
events = [IncomingEvent(p[:16], p, "auctions.listed", 0, i, 1.4e9) for i, p in enumerate(payloads)]
batches = [events[i:i + 500] for i in range(0, len(events), 500)]
for batch in batches[:3]:
    score_batch(batch, model)  # warm-up
started = time.perf_counter()
scored = 0
for batch in batches:
    scored += len(score_batch(batch, model).scored)
print(len(events) / (time.perf_counter() - started), scored)
"""


def prepare(path: Path, listings: int) -> None:
    sys.path.insert(0, str(ROOT))
    from producers.sources.synthetic import generate_auctions
    from producers.timeline import listing_payloads
    from trainer.pipeline import fit_xgboost
    from trainer.split import time_split
    from trainer.training import features_and_target

    data = generate_auctions(60_000 + listings, start="2015-01-01", end="2015-06-30", seed=3)
    split = time_split(data.head(60_000), "2015-02-15", test_days=14)
    x_train, y_train = features_and_target(split.train)
    x_val, y_val = features_and_target(split.validation)
    fitted = fit_xgboost(x_train, y_train, x_val, y_val)
    fitted.pipeline.set_params(model__regressor__n_jobs=1)
    payloads = listing_payloads(data.tail(listings))
    with path.open("wb") as file:
        pickle.dump((payloads, fitted.pipeline), file)


def run(checkout: Path, data: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkout), str(data)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="another Gavel checkout")
    parser.add_argument("--listings", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.pkl"
        prepare(data, args.listings)
        rates: dict[str, list[float]] = {"baseline": [], "this": []}
        for _ in range(args.rounds):  # alternate, so that both see the same machine
            rates["baseline"].append(run(args.baseline.resolve(), data))
            rates["this"].append(run(ROOT, data))
            print(f"baseline {rates['baseline'][-1]:,.0f}/s, this {rates['this'][-1]:,.0f}/s")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "baseline_checkout": str(args.baseline),
        "listings": args.listings,
        "batch": BATCH,
        "events_per_s": rates,
        "median_events_per_s": medians,
        "this_to_baseline": medians["this"] / medians["baseline"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"scoring-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"this / baseline = {result['this_to_baseline']:.1%}. Written to {path}")


if __name__ == "__main__":
    main()
