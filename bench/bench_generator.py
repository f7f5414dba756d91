"""Time the synthetic generator: ``python bench/bench_generator.py [ROWS] [--scenarios]``.

Prints rows per second for the base frame and, with ``--scenarios``, for a frame with
one scenario of each kind. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import time

from producers.sources.scenarios import MarketShock, MixShift, NewModels
from producers.sources.synthetic import generate_auctions, load_calibration


def bench(rows: int, *, with_scenarios: bool, repeat: int) -> float:
    """Best wall time (seconds) of ``repeat`` runs."""
    scenarios = (
        [
            MarketShock("2015-03-01", {"body": "SUV"}),
            MixShift("2015-04-01"),
            NewModels("2015-05-01"),
        ]
        if with_scenarios
        else []
    )
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        frame = generate_auctions(rows, seed=0, scenarios=scenarios)
        best = min(best, time.perf_counter() - began)
        del frame  # freeing a million strings is not the generator's time
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--scenarios", action="store_true", help="also time three scenarios")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load_calibration()  # reading the JSON is a one-off cost, not the generator's
    cases = [False, True] if args.scenarios else [False]
    for with_scenarios in cases:
        seconds = bench(args.rows, with_scenarios=with_scenarios, repeat=args.repeat)
        label = "with 3 scenarios" if with_scenarios else "base"
        rate = args.rows / seconds
        print(f"{label:>16}: {args.rows:,} rows in {seconds:.2f} s = {rate:,.0f} rows/s")


if __name__ == "__main__":
    main()
