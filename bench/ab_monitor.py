"""`gavel monitor` of this checkout against another revision's, alternating (not a test).

Each round runs the baseline's monitor and this checkout's on the same events (scores
and sales of ``--listings`` listings of March to June 2015, priced by one champion, the
sales three hours later), each in a namespace of its own and next to a bare reader
(consume + JSON) of the same topics taken just before it. Alternating rounds on one
machine is the only fair comparison when other work shares the cores. The baseline is
exported with ``git archive`` and run from its own directory (``python -m`` puts the
working directory first on ``sys.path``, so PYTHONPATH alone would run this checkout).

Results go to bench/results/monitor-ab-<timestamp>.json.
Usage: .venv/bin/python bench/ab_monitor.py [--baseline main] [--listings 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import bench_monitor as bm  # noqa: E402
from gavel.settings import Settings  # noqa: E402
from producers.sources.synthetic import generate_auctions  # noqa: E402
from shell import registry  # noqa: E402
from shell.kafka import delete_topics_with_prefix, ensure_topics  # noqa: E402
from shell.stack.process import ManagedProcess, wait_until  # noqa: E402
from trainer.split import time_split  # noqa: E402
from trainer.training import train_and_register  # noqa: E402


def export(revision: str, into: Path) -> Path:
    """The tree of ``revision`` of this repository, written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_monitor(settings: Settings, code: Path, name: str, total: int) -> dict:
    """`gavel monitor` of the tree at ``code`` over the ``total`` events on Kafka."""
    process = ManagedProcess(name, settings.stack.dir / "bench")
    env = {**settings.to_env(), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(code)}
    process.start([sys.executable, "-m", "shell.cli", "monitor"], env=env, cwd=code)
    url = f"http://{settings.host}:{settings.monitor_metrics_port}/metrics"
    samples: list[bm.Sample] = []
    try:
        wait_until(lambda: bm.processed(url) >= 0, 120, 0.1)
        pid = process.pid()
        assert pid is not None and Path(os.readlink(f"/proc/{pid}/cwd")) == code
        while (done := bm.processed(url)) < total:
            samples.append((time.monotonic(), done, bm.status_mb(pid, "VmRSS"), bm.cpu_s(pid)))
            if process.pid() is None:
                raise RuntimeError(f"the monitor exited:\n{process.log_tail(40)}")
            time.sleep(bm.SAMPLE_S)
        samples.append((time.monotonic(), done, bm.status_mb(pid, "VmRSS"), bm.cpu_s(pid)))
        peak = bm.status_mb(pid, "VmHWM")
    finally:
        process.stop()
    started, _, cpu_started = bm.crossing(samples, 1)
    finished, _, cpu_finished = bm.crossing(samples, total)
    return {
        "events_per_s": total / (finished - started),
        "events_per_cpu_s": total / (cpu_finished - cpu_started),
        "peak_rss_mb": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="a git revision")
    parser.add_argument("--listings", type=int, default=100_000, help="events: twice this")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    base = Settings()
    tag = uuid.uuid4().hex[:6]
    model = f"gavel-bench-ab-{tag}"
    first = base.replace(namespace=f"bench-ab-{tag}.", model_name=model)
    ensure_topics(first)
    data = generate_auctions(150_000, start="2015-01-01", end="2015-07-01", seed=7)
    train_and_register(time_split(data, "2015-03-01", test_days=30), first, source="bench")
    delete_topics_with_prefix(first, first.namespace)
    frame = generate_auctions(args.listings, start=bm.STREAM_FROM, end=bm.STREAM_TO, seed=11)
    stream = bm.priced_stream(frame, bm.registry_model(first, registry))
    revision = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    runs = []
    with tempfile.TemporaryDirectory(prefix="gavel-baseline-") as tmp:
        codes = {f"baseline {revision}": export(args.baseline, Path(tmp)), "this checkout": ROOT}
        for round_ in range(args.rounds):
            for label, code in codes.items():
                settings = base.replace(
                    namespace=f"bench-ab-{tag}-{len(runs)}.",
                    model_name=model,
                    reports_dir=base.stack.dir / "bench" / "reports",
                )
                ensure_topics(settings)
                try:
                    bm.produce(settings, stream)
                    bare = bm.bare_reader(settings, len(stream))
                    run = run_monitor(settings, code, f"ab-{len(runs)}", len(stream))
                finally:
                    delete_topics_with_prefix(settings, settings.namespace)
                run |= {
                    "code": label,
                    "round": round_,
                    "bare_reader_events_per_s": bare["events_per_s"],
                    "monitor_to_bare_reader": run["events_per_s"] / bare["events_per_s"],
                    "load_average_1_5_15": os.getloadavg(),
                }
                print(json.dumps(run), flush=True)
                runs.append(run)
    result = {
        "at": datetime.now(UTC).isoformat(),
        "events": len(stream),
        "stream": [bm.STREAM_FROM, bm.STREAM_TO],
        "cpus": os.cpu_count(),
        "runs": runs,
    }
    path = bm.RESULTS / f"monitor-ab-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
