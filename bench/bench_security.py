"""What transport security costs: replay and worker throughput over SASL_SSL next to
PLAINTEXT, on one broker with both listeners, in alternating rounds (not a test).

A broker of its own is started (fresh ports, state under .stack/bench-secure, the local
stack's jars) with a PLAINTEXT and a SASL_SSL (SCRAM-SHA-512) listener; MLflow is the
local stack's. Each round replays the same listings to a fresh namespace through one
listener and lets a `gavel worker` on that listener score the backlog.

Results go to bench/results/security-<timestamp>.json. Usage:
    .venv/bin/python bench/bench_security.py [--listings 40000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_stream import worker_throughput  # noqa: E402

from gavel.settings import Settings  # noqa: E402
from producers.replay import ReplayOptions, replay  # noqa: E402
from producers.sources.synthetic import generate_auctions  # noqa: E402
from shell.kafka import ensure_topics  # noqa: E402
from shell.stack import manager  # noqa: E402
from shell.stack.components import Kafka  # noqa: E402
from shell.stack.process import port_in_use  # noqa: E402
from shell.stack.tls import make_broker_keystore  # noqa: E402
from trainer.split import time_split  # noqa: E402
from trainer.training import train_and_register  # noqa: E402

console = Console()
RESULTS = ROOT / "bench" / "results"


def free_port(start: int) -> int:
    port = start
    while port_in_use("127.0.0.1", port):
        port += 1
    return port


def secured_broker(base: Settings) -> tuple[Settings, Settings]:
    """Settings of the bench broker's PLAINTEXT and SASL_SSL listeners."""
    home = base.stack.dir / "bench-secure"
    shutil.rmtree(home, ignore_errors=True)
    keystore_password = uuid.uuid4().hex
    ca, keystore = make_broker_keystore(home / "tls", keystore_password)
    server = base.replace(
        stack={
            "dir": home,
            "kafka_controller_port": free_port(29192),
            "kafka_sasl_ssl_port": free_port(29292),
            "kafka_keystore": keystore,
            "kafka_keystore_password": keystore_password,
        },
        kafka_port=free_port(29092),
        kafka_sasl_username="gavel-bench",
        kafka_sasl_password=uuid.uuid4().hex,
    )
    libs = Kafka(server).libs_dir
    libs.parent.mkdir(parents=True, exist_ok=True)
    libs.symlink_to(Kafka(base).libs_dir)
    manager.up(server, ("kafka",), console=Console(stderr=True, quiet=True))
    secure = server.replace(
        kafka_bootstrap=f"{server.host}:{server.stack.kafka_sasl_ssl_port}",
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_ca_file=ca,
    )
    return server, secure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    base = Settings()
    manager.up(base, ("redis", "mlflow"), console=Console(stderr=True, quiet=True))
    console.print("starting a broker with PLAINTEXT and SASL_SSL listeners…")
    plain, secure = secured_broker(base)
    tag = uuid.uuid4().hex[:6]
    model = {"model_name": f"gavel-bench-sec-{tag}", "experiment_name": "gavel-bench"}
    try:
        console.print("training the benchmark model…")
        data = generate_auctions(200_000, start="2015-01-01", end="2015-12-31", seed=3)
        train_and_register(
            time_split(data, "2015-03-01", test_days=30), plain.replace(**model), source="bench"
        )
        backlog = data[data["listed_at"] >= "2015-04-01"].head(args.listings)
        rounds: dict[str, list[dict]] = {"PLAINTEXT": [], "SASL_SSL": []}
        for round_no in range(args.rounds):
            for name, listener in (("PLAINTEXT", plain), ("SASL_SSL", secure)):
                settings = listener.replace(namespace=f"bench-{tag}-{name}-{round_no}.", **model)
                ensure_topics(settings)
                stats = replay(backlog, settings, ReplayOptions(with_sales=False))
                worker = worker_throughput(settings, len(backlog), base.stack.dir / "bench")
                row = {"replay_events_per_s": stats.rate, "worker": worker}
                rounds[name].append(row)
                console.print(
                    f"round {round_no + 1} {name}: replay {stats.rate:,.0f}/s, "
                    f"worker {worker['events_per_s']:,.0f}/s"
                )
    finally:
        manager.down(plain, ("kafka",), console=Console(stderr=True, quiet=True))

    def median(name: str, pick) -> float:  # type: ignore[no-untyped-def]  # bench script, not type-checked
        return statistics.median(pick(row) for row in rounds[name])

    summary = {
        kind: {
            name: median(name, pick)
            for name in rounds
        }
        for kind, pick in (
            ("replay_events_per_s", lambda r: r["replay_events_per_s"]),
            ("worker_events_per_s", lambda r: r["worker"]["events_per_s"]),
        )
    }  # fmt: skip
    ratios = {kind: v["SASL_SSL"] / v["PLAINTEXT"] for kind, v in summary.items()}
    result = {
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "listings": len(backlog),
        "sasl_mechanism": secure.kafka_sasl_mechanism.value,
        "rounds": rounds,
        "median": summary,
        "sasl_ssl_to_plaintext": ratios,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"security-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    console.print_json(data={k: result[k] for k in ("median", "sasl_ssl_to_plaintext")})
    console.print(
        f"SASL_SSL / PLAINTEXT: replay {ratios['replay_events_per_s']:.0%}, "
        f"worker {ratios['worker_events_per_s']:.0%}. Written to {path}"
    )


if __name__ == "__main__":
    main()
