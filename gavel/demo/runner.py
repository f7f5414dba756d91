"""`gavel demo`: the whole product on the local stack, narrated step by step."""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.table import Table

from gavel import registry
from gavel.demo.watch import OutputWatcher
from gavel.kafka import ensure_topics
from gavel.settings import Settings
from gavel.stack import manager
from gavel.stack.process import ManagedProcess, StackError, wait_until

DEMO_MODEL = "gavel-demo"
DEMO_NAMESPACE_PREFIX = "demo-"


@dataclass(frozen=True)
class DemoPlan:
    """The story: a first model trained on early months, then a month streamed."""

    rows: int = 150_000
    seed: int = 7
    data_start: str = "2015-01-01"
    data_end: str = "2015-06-01"
    train_until: str = "2015-03-01"
    stream_from: str = "2015-04-01"
    stream_to: str = "2015-05-01"
    rate: float = 1500.0
    corrupt_share: float = 0.01
    sale_delay: timedelta = timedelta(hours=2)


class Narrator:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.timeline: list[tuple[float, str]] = []

    def step(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        self.timeline.append((elapsed, message))
        self.console.print(f"[dim]{elapsed:6.1f}s[/] [bold cyan]▶[/] {message}")

    def note(self, message: str) -> None:
        self.console.print(f"        {message}")


def demo_settings(base: Settings) -> Settings:
    run = time.strftime("%Y%m%d-%H%M%S")
    return base.replace(
        namespace=f"{DEMO_NAMESPACE_PREFIX}{run}.",
        model_name=DEMO_MODEL,
        experiment_name="gavel-demo",
        reports_dir=base.reports_dir / f"demo-{run}",
        worker_poll_alias_s=5.0,
    )


def forget_previous_demos(settings: Settings) -> None:
    """Drop earlier demo topics and the demo model, so every run tells the same story."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    old = [t for t in admin.list_topics(timeout=10).topics if t.startswith(DEMO_NAMESPACE_PREFIX)]
    if old:
        for future in admin.delete_topics(old, operation_timeout=30).values():
            future.result(timeout=30)
    client = registry.connect(settings)
    if client.search_registered_models(f"name='{DEMO_MODEL}'"):
        client.delete_registered_model(DEMO_MODEL)


def start_service(
    name: str, args: list[str], settings: Settings, health_url: str, timeout_s: float = 90
) -> ManagedProcess:
    process = ManagedProcess(f"demo-{name}", settings.stack_dir)
    process.stop()
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    process.start([sys.executable, "-m", "gavel.cli", *args], env=env)

    def healthy() -> bool:
        try:
            return httpx.get(health_url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_until(lambda: healthy() or process.pid() is None, timeout_s) or not healthy():
        tail = process.log_tail(30)
        process.stop()
        raise StackError(f"the {name} did not start; last lines of its log:\n{tail}")
    return process


def run_demo(base: Settings, plan: DemoPlan, console: Console, keep_running: bool) -> None:
    from producers.replay import ReplayOptions, replay, replay_progress
    from producers.sources import SourceSpec, load_auctions
    from producers.timeline import select
    from trainer.report import training_table
    from trainer.split import time_split
    from trainer.training import train_and_register

    story = Narrator(console)
    was_running = {row.name for row in manager.status(base, manager.CORE) if row.healthy}
    with ExitStack() as cleanup:
        story.step("starting the local stack: Kafka (KRaft), Redis, MLflow")
        manager.up(base, manager.CORE, console=console)
        if not keep_running:
            to_stop = tuple(n for n in manager.CORE if n not in was_running)
            cleanup.callback(manager.down, base, to_stop, console)
        settings = demo_settings(base)
        forget_previous_demos(settings)
        ensure_topics(settings)
        story.note(f"topics under namespace '{settings.namespace}'")

        spec = SourceSpec(rows=plan.rows, seed=plan.seed, start=plan.data_start, end=plan.data_end)
        story.step(
            f"generating {plan.rows:,} synthetic auctions ({plan.data_start} → {plan.data_end})"
        )
        auctions = load_auctions(spec)

        story.step(f"training the first model on auctions before {plan.train_until}")
        split = time_split(auctions, plan.train_until, test_days=30)
        result = train_and_register(split, settings, source=spec.label)
        console.print(training_table(result))
        story.note(
            f"champion: {settings.model_name} v{result.champion_version} — test MAPE "
            f"{result.metrics['test_mape']:.1%} vs MMR {result.metrics['test_mmr_mape']:.1%}"
        )

        story.step("starting the scoring worker (Faust)")
        worker_url = f"http://{settings.host}:{settings.worker_web_port}"
        worker = start_service("worker", ["worker"], settings, f"{worker_url}/health")
        cleanup.callback(worker.stop)
        story.note(f"worker at {worker_url} (/health, /metrics, POST /predict)")

        watcher = OutputWatcher(settings).start()
        cleanup.callback(watcher.stop)
        month = select(auctions, plan.stream_from, plan.stream_to)
        story.step(
            f"replaying {len(month):,} auctions ({plan.stream_from} → {plan.stream_to}) at "
            f"{plan.rate:,.0f} events/s, {plan.corrupt_share:.0%} malformed on purpose"
        )
        options = ReplayOptions(
            sale_delay=plan.sale_delay,
            rate=plan.rate,
            corrupt_share=plan.corrupt_share,
            seed=plan.seed,
        )
        with replay_progress(console) as progress:
            stats = replay(month, settings, options, progress)
        watcher.wait_for(stats.listings, timeout_s=120)
        story.step("every listing accounted for")
        console.print(stream_summary(stats, watcher))
        story.step("stopping the worker")
    story.step("done")
    console.print(
        f"MLflow runs and models are kept in {Path(base.stack_dir) / 'mlflow'}; "
        f"`gavel stack up` serves them at {base.mlflow_tracking_uri}."
    )


def stream_summary(stats, watcher: OutputWatcher) -> Table:  # type: ignore[no-untyped-def]
    out = watcher.stats
    wall = (out.last_output_at or 0) - (out.first_output_at or 0)
    latencies = out.latency_percentiles()
    table = Table(title="streaming summary", show_header=False)
    table.add_row("listings sent", f"{stats.listings:,}")
    table.add_row("priced", f"{len(out.scored_keys):,}")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(out.dead_reasons.items()))
    table.add_row("dead-lettered", f"{len(out.dead_keys):,} ({reasons or 'none'})")
    table.add_row("model versions", ", ".join(f"v{v}: {n:,}" for v, n in out.versions.items()))
    if wall > 0:
        table.add_row("throughput", f"{out.accounted / wall:,.0f} listings/s (at the replay pace)")
    if latencies:
        table.add_row(
            "listed → scored latency",
            " / ".join(f"{k} {v * 1000:,.0f} ms" for k, v in latencies.items()),
        )
    return table
