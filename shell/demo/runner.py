"""`gavel demo`: the closed loop on the local stack, narrated as it happens.

stack → first model → streaming prices → market shock → drift alert → retrain →
promotion → hot swap → recovery, then a timeline, the MAPE before and after (next to
the frozen first model's) and a plot.
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from gavel.schemas import DriftAlert, ModelUpdate, ScoredPrice
from gavel.settings import Settings
from shell import registry
from shell.demo.plot import plot_story
from shell.demo.story import Phases, phases, served_frame
from shell.demo.watch import OutputWatcher
from shell.kafka import delete_topics_with_prefix, ensure_topics
from shell.stack import manager
from shell.stack.process import ManagedProcess, StackError, start_gavel, wait_until

if TYPE_CHECKING:
    from producers.replay import ReplayStats

DEMO_MODEL = "gavel-demo"
DEMO_NAMESPACE_PREFIX = "demo-"
# Listings ingested this soon after the first are warm-up: groups settle, first predictions.
LATENCY_WARMUP_S = 10.0


@dataclass(frozen=True)
class DemoPlan:
    """The story's data and pace. The shock hits SUVs: their prices drop by a quarter."""

    rows: int = 200_000
    seed: int = 17
    data_start: str = "2015-01-01"
    data_end: str = "2015-07-01"
    train_until: str = "2015-03-01"
    stream_from: str = "2015-04-23"
    stream_to: str = "2015-05-21"
    shock_at: str = "2015-05-01"
    shock: str = "segment=body=SUV,change=-0.25"
    rate: float = 1200.0
    corrupt_share: float = 0.005
    sale_delay: timedelta = timedelta(hours=2)

    @property
    def scenario(self) -> str:
        return f"market_shock:start={self.shock_at},{self.shock}"


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
        trainer={
            "train_days": 4,
            "eval_days": 1,
            "min_new_labels": 8000,
            "cooldown_s": 600,
            "recheck_s": 2,
        },
    )


def forget_previous_demos(settings: Settings) -> None:
    """Drop earlier demo topics and the demo model, so every run tells the same story."""
    delete_topics_with_prefix(settings, DEMO_NAMESPACE_PREFIX, timeout_s=30)
    client = registry.connect(settings)
    if client.search_registered_models(f"name='{DEMO_MODEL}'"):
        client.delete_registered_model(DEMO_MODEL)


def start_service(
    name: str, args: list[str], settings: Settings, health_url: str | None, timeout_s: float = 90
) -> ManagedProcess:
    ManagedProcess(f"demo-{name}", settings.stack.dir).stop()  # one left by an earlier run
    process = start_gavel(f"demo-{name}", args, settings, settings.stack.dir)

    def healthy() -> bool:
        if health_url is None:
            return process.pid() is not None
        try:
            return httpx.get(health_url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_until(lambda: healthy() or process.pid() is None, timeout_s) or not healthy():
        tail = process.log_tail(30)
        process.stop()
        raise StackError(f"the {name} did not start; last lines of its log:\n{tail}")
    return process


class LiveNarration:
    """Prints alerts, model updates and swaps the moment the watcher sees them."""

    def __init__(self, story: Narrator) -> None:
        self.story = story
        self.marks: dict[str, float] = {}

    def __call__(self, topic: str, event: BaseModel) -> None:
        now = time.time()
        if isinstance(event, DriftAlert):
            self.marks.setdefault(f"{event.kind.value} alert", now)
            mape = f", window MAPE {event.mape:.1%}" if event.mape else ""
            features = ", ".join(f.feature for f in event.drifted_features)
            reference = (
                f", reference MAPE {event.reference_mape:.1%}" if event.reference_mape else ""
            )
            self.story.step(
                f"[bold red]drift alert[/]: {event.kind.value} ({event.severity.value}, "
                f"{event.detector}) on v{event.model_version}{mape}"
                + (f", features: {features}" if features else "")
                + reference
            )
            if event.report_path:
                self.story.note(f"Evidently report: {event.report_path}")
        elif isinstance(event, ModelUpdate):
            action = event.action.value
            self.marks.setdefault(action, now)
            metrics = event.metrics
            scores = ""
            if "test_mape" in metrics and "champion_test_mape" in metrics:
                scores = (
                    f" — challenger {metrics['test_mape']:.1%} vs champion "
                    f"{metrics['champion_test_mape']:.1%} on the latest sales"
                )
            self.story.step(f"[bold green]model {action}[/]: v{event.version}{scores}")
        elif topic == "swap" and isinstance(event, ScoredPrice):
            self.marks.setdefault("new champion serving", now)
            self.story.step(
                f"[bold green]hot swap[/]: the worker now prices with v{event.model_version}"
                " (no restart)"
            )


def run_demo(base: Settings, plan: DemoPlan, console: Console, keep_running: bool) -> None:
    """The whole story: stack, first model, services, the shocked stream, the report."""
    story = Narrator(console)
    with ExitStack() as cleanup:
        settings = _start_stack(base, story, console, cleanup, keep_running)
        auctions, first = _first_model(settings, plan, story, console)
        watcher, narration = _start_services(settings, story, cleanup)
        window, stats = _stream(settings, plan, auctions, watcher, story, console)
        story.step("every listing accounted for; stopping the services")
        report(console, settings, plan, window, watcher, narration, stats, first, story)
    story.step("done")
    console.print(
        f"MLflow runs and models are kept in {base.stack.dir / 'mlflow'}; "
        f"`gavel stack up` serves them at {base.mlflow_display_uri}."
    )


def _start_stack(
    base: Settings, story: Narrator, console: Console, cleanup: ExitStack, keep_running: bool
) -> Settings:
    """Start what is not running (stopped again at the end unless ``keep_running``); the
    demo's settings, with its namespace fresh."""
    parts = manager.CORE + (("prometheus",) if shutil.which("prometheus") else ())
    was_running = {row.name for row in manager.status(base, parts) if row.healthy}
    story.step("starting the local stack: " + ", ".join(parts))
    manager.up(base, parts, console=console)
    if not keep_running:
        cleanup.callback(
            manager.down, base, tuple(n for n in parts if n not in was_running), console
        )
    settings = demo_settings(base)
    forget_previous_demos(settings)
    ensure_topics(settings)
    story.note(f"topics under namespace '{settings.namespace}'")
    return settings


def _first_model(
    settings: Settings, plan: DemoPlan, story: Narrator, console: Console
) -> tuple[pd.DataFrame, str]:
    """The synthetic auctions with their shock, and the first champion trained on them."""
    from producers.sources import SourceSpec, load_auctions
    from trainer.report import training_table
    from trainer.split import time_split
    from trainer.training import train_and_register

    spec = SourceSpec(
        rows=plan.rows,
        seed=plan.seed,
        start=plan.data_start,
        end=plan.data_end,
        scenarios=(plan.scenario,),
    )
    story.step(
        f"generating {plan.rows:,} synthetic auctions; from {plan.shock_at} SUV prices "
        "drop by 25% (MMR does not follow)"
    )
    auctions = load_auctions(spec)
    story.step(f"training the first model on auctions before {plan.train_until}")
    result = train_and_register(
        time_split(auctions, plan.train_until, test_days=30), settings, source=spec.label
    )
    console.print(training_table(result))
    return auctions, str(result.champion_version)


def _start_services(
    settings: Settings, story: Narrator, cleanup: ExitStack
) -> tuple[OutputWatcher, LiveNarration]:
    """The worker, the monitor and the trainer, and a watcher of what they write."""
    story.step("starting the worker (Faust), the monitor and the trainer")
    worker_url = f"http://{settings.host}:{settings.worker_web_port}"
    monitor_url = f"http://{settings.host}:{settings.monitor_metrics_port}/metrics"
    for name, args, health in (
        ("worker", ["worker"], f"{worker_url}/health"),
        ("monitor", ["monitor"], monitor_url),
        ("trainer", ["trainer", "run"], None),
    ):
        cleanup.callback(start_service(name, args, settings, health).stop)
    narration = LiveNarration(story)
    watcher = OutputWatcher(settings, narration, monitor_url).start()
    cleanup.callback(watcher.stop)
    return watcher, narration


def _stream(
    settings: Settings,
    plan: DemoPlan,
    auctions: pd.DataFrame,
    watcher: OutputWatcher,
    story: Narrator,
    console: Console,
) -> tuple[pd.DataFrame, ReplayStats]:
    """Replay the demo's window at its rate, and wait until every listing is accounted for."""
    from producers.replay import ReplayOptions, replay, replay_progress
    from producers.timeline import select

    window = select(auctions, plan.stream_from, plan.stream_to)
    story.step(
        f"replaying {len(window):,} auctions ({plan.stream_from} → {plan.stream_to}) at "
        f"{plan.rate:,.0f} events/s; the shock starts on {plan.shock_at}"
    )
    options = ReplayOptions(
        sale_delay=plan.sale_delay,
        rate=plan.rate,
        corrupt_share=plan.corrupt_share,
        seed=plan.seed,
    )
    with replay_progress(console) as progress:
        stats = replay(window, settings, options, progress)
    watcher.wait_for(stats.listings, timeout_s=120)
    return window, stats


def report(
    console: Console,
    settings: Settings,
    plan: DemoPlan,
    window: pd.DataFrame,
    watcher: OutputWatcher,
    narration: LiveNarration,
    stats: Any,
    first: str,
    story: Narrator,
) -> None:
    served = served_frame(window, watcher.scored)
    frozen = registry.load_pipeline(f"models:/{settings.model_name}/{first}").predict(served)
    onset = pd.Timestamp(plan.shock_at, tz="UTC")
    shocked = [
        e.ingested_at.timestamp()
        for e in watcher.scored
        if e.listed_at >= onset and e.ingested_at is not None
    ]
    marks = dict(narration.marks)
    if shocked:
        marks["shock onset"] = min(shocked)
    console.print(stream_summary(stats, watcher))
    result: Phases | None = None
    if (served["version"] != first).any():
        result = phases(served, onset, first, frozen)
        console.print(mape_table(result))
    if "shock onset" in marks and "new champion serving" in marks:
        lag = marks["new champion serving"] - marks["shock onset"]
        story.note(f"shock onset → new champion serving: {lag:.0f}s of wall time")
    else:
        story.note("[yellow]no new champion served during the replay[/]")
    reference = registry.champion(registry.connect(settings), settings.model_name)
    path = plot_story(
        served,
        frozen,
        watcher.scrapes,
        marks,
        reference_mape=_reference_mape(settings, first),
        path=settings.reports_dir / "demo.png",
    )
    console.print(timeline_table(story))
    console.print(f"[bold]plot:[/] {path}")
    console.print(f"[bold]drift reports:[/] {settings.reports_dir}")
    console.print(
        f"[bold]metrics:[/] worker http://{settings.host}:{settings.worker_web_port}/metrics, "
        f"monitor http://{settings.host}:{settings.monitor_metrics_port}/metrics"
        + (
            f", Prometheus http://{settings.host}:{settings.stack.prometheus_port}"
            if shutil.which("prometheus")
            else ""
        )
    )
    if reference:
        console.print(f"[bold]champion now:[/] {settings.model_name} v{reference.version}")


def _reference_mape(settings: Settings, version: str) -> float:
    info = registry.version_info(registry.connect(settings), settings.model_name, version)
    return float(info.reference_mape or 0.0)


def mape_table(result: Phases) -> Table:
    table = Table(title="MAPE by phase (same events)")
    table.add_column("phase")
    table.add_column("served", justify="right")
    table.add_column("frozen first model", justify="right")
    for row in result.table_rows():
        table.add_row(*row)
    return table


def timeline_table(story: Narrator) -> Table:
    table = Table(title="timeline", show_header=False)
    for elapsed, message in story.timeline:
        table.add_row(f"{elapsed:6.1f}s", message)
    return table


def stream_summary(stats: Any, watcher: OutputWatcher) -> Table:
    out = watcher.stats
    wall = (out.last_output_at or 0) - (out.first_output_at or 0)
    latencies = out.latency_percentiles(LATENCY_WARMUP_S)
    warmup_max = out.warmup_max_s(LATENCY_WARMUP_S)
    table = Table(title="streaming summary", show_header=False)
    table.add_row("listings sent", f"{stats.listings:,}")
    table.add_row("priced", f"{len(out.scored_keys):,}")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(out.dead_reasons.items()))
    table.add_row("dead-lettered", f"{len(out.dead_keys):,} ({reasons or 'none'})")
    table.add_row("by model version", ", ".join(f"v{v}: {n:,}" for v, n in out.versions.items()))
    if wall > 0:
        table.add_row("throughput", f"{out.accounted / wall:,.0f} listings/s at the replay pace")
    if latencies:
        table.add_row(
            "listed → scored latency",
            " / ".join(f"{k} {v * 1000:,.0f} ms" for k, v in latencies.items())
            + f" (after the first {LATENCY_WARMUP_S:.0f} s)",
        )
    if warmup_max is not None:
        table.add_row(
            f"first {LATENCY_WARMUP_S:.0f} s (warm-up)", f"max {warmup_max * 1000:,.0f} ms"
        )
    return table
