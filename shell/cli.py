"""The ``gavel`` command line.

Heavy imports happen inside the commands so that ``--help`` stays instant.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from gavel.settings import get_settings

if TYPE_CHECKING:
    from producers.replay import ReplayStats
    from producers.sources import SourceSpec

console = Console(stderr=True)

app = typer.Typer(
    name="gavel",
    help="Gavel: a streaming price scorer for used-car auctions, with drift monitoring "
    "and self-retraining. Settings come from GAVEL_* environment variables or .env.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
stack_app = typer.Typer(help="Run the local stack (Kafka, Redis, MLflow) without Docker.")
app.add_typer(stack_app, name="stack")
trainer_app = typer.Typer(help="The retraining service and model lifecycle commands.")
app.add_typer(trainer_app, name="trainer")

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
        force=True,
    )
    for noisy in ("urllib3", "httpx", "alembic", "mlflow.store", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


Components = Annotated[
    list[str] | None,
    typer.Argument(help="Components to act on (default: kafka redis mlflow)."),
]


@stack_app.command("up")
def stack_up(
    components: Components = None,
    with_prometheus: Annotated[
        bool, typer.Option(help="Also start Prometheus, scraping the worker and monitor.")
    ] = False,
) -> None:
    """Start Kafka (KRaft), Redis and MLflow under .stack/ and create the topics.

    Running it twice is harmless: healthy parts are left alone.
    """
    from shell.stack import manager
    from shell.stack.process import StackError

    names = tuple(components or manager.CORE) + (("prometheus",) if with_prometheus else ())
    try:
        manager.up(get_settings(), names, console=console)
    except StackError as exc:
        raise fail(str(exc)) from None
    console.print(manager.status_table(manager.status(get_settings(), names)))


@stack_app.command("down")
def stack_down(components: Components = None) -> None:
    """Stop every local-stack process (state under .stack/ is kept)."""
    from shell.stack import manager

    names = tuple(components or manager.CORE + manager.OPTIONAL)
    manager.down(get_settings(), names, console=console)


@stack_app.command("status")
def stack_status() -> None:
    """Show each part's health; exits 1 when a core part is not healthy."""
    from shell.stack import manager

    rows = manager.status(get_settings())
    Console().print(manager.status_table(rows))
    if not all(row.healthy for row in rows if row.name in manager.CORE):
        raise typer.Exit(code=1)


SourceOpt = Annotated[
    str, typer.Option("--source", "-s", help="'synthetic' or the path of a Kaggle car_prices CSV.")
]
RowsOpt = Annotated[int, typer.Option(help="Synthetic rows to generate.", min=1)]
SeedOpt = Annotated[int, typer.Option(help="Synthetic generator seed.")]
StartOpt = Annotated[str, typer.Option(help="Synthetic event times start (YYYY-MM-DD).")]
EndOpt = Annotated[str, typer.Option(help="Synthetic event times end, exclusive.")]
ScenarioOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--scenario",
        help="Drift scenario for synthetic data, repeatable, e.g. "
        "'market_shock:start=2015-03-01,segment=body=SUV,change=-0.2', "
        "'mix_shift:start=2015-03-01', 'new_models:start=2015-03-01,share=0.1'.",
    ),
]


def source_spec(
    source: str, rows: int, seed: int, start: str, end: str, scenario: list[str] | None
) -> SourceSpec:
    from producers.sources import SourceSpec

    return SourceSpec(source, rows, seed, start, end, tuple(scenario or ()))


@app.command()
def train(
    source: SourceOpt = "synthetic",
    train_until: Annotated[
        str | None,
        typer.Option(
            help="Cut-off date: train and validate before it, test on the period after. "
            "Default: the month start that leaves about the last 15% of rows for testing."
        ),
    ] = None,
    test_days: Annotated[int, typer.Option(help="Length of the test period in days.", min=1)] = 30,
    margin: Annotated[
        float, typer.Option(help="Relative MAPE gain needed to replace a champion.", min=0)
    ] = 0.0,
    rows: RowsOpt = 120_000,
    seed: SeedOpt = 0,
    start: StartOpt = "2015-01-01",
    end: EndOpt = "2015-05-01",
    scenario: ScenarioOpt = None,
    verbose: Verbose = False,
) -> None:
    """Train the XGBoost price model and a Ridge baseline, log both to MLflow, register
    the model and make it champion if there is none or it beats the current one.

    The split is by time: train and validation before --train-until, test on the
    --test-days that follow. MAPE is reported next to the MMR estimate's MAPE on the
    same test rows.
    """
    setup_logging(verbose)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from producers.sources import SourceError, load_auctions
    from trainer.report import training_table
    from trainer.split import SplitError, auto_cutoff, time_split
    from trainer.training import train_and_register

    settings = get_settings()
    spec = source_spec(source, rows, seed, start, end, scenario)
    try:
        with console.status(f"loading {spec.label}…"):
            frame = load_auctions(spec, progress=False)
        cutoff = train_until or auto_cutoff(frame)
        split = time_split(frame, cutoff, test_days=test_days)
    except (SourceError, SplitError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(
        f"{len(frame):,} auctions from {spec.label}; train {len(split.train):,}, "
        f"validation {len(split.validation):,}, test {len(split.test):,} "
        f"(cut-off {split.train_until:%Y-%m-%d})"
    )
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        result = train_and_register(
            split, settings, source=spec.label, margin=margin, progress=progress
        )
    Console().print(training_table(result))


@app.command()
def replay(
    source: SourceOpt = "synthetic",
    rows: RowsOpt = 120_000,
    seed: SeedOpt = 0,
    start: StartOpt = "2015-01-01",
    end: EndOpt = "2015-05-01",
    scenario: ScenarioOpt = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Only auctions listed at or after this date.")
    ] = None,
    to: Annotated[str | None, typer.Option(help="Only auctions listed before this date.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many auctions.", min=1)] = None,
    speedup: Annotated[
        float | None,
        typer.Option(help="Event-time seconds per wall second, e.g. 86400 = a day per second."),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Events per second.")] = None,
    max_: Annotated[
        bool, typer.Option("--max", help="As fast as possible (the default pace).")
    ] = False,
    sale_delay: Annotated[
        str, typer.Option(help="Event time from listing to sale, e.g. 30m, 2h, 1d.")
    ] = "2h",
    sales: Annotated[bool, typer.Option(help="Also send sale outcomes to auctions.sold.")] = True,
    corrupt_share: Annotated[
        float,
        typer.Option(help="Share of listings to send malformed, to exercise dead letters."),
    ] = 0.0,
    verbose: Verbose = False,
) -> None:
    """Replay auctions onto Kafka in event-time order: each listing to auctions.listed,
    its sale to auctions.sold after --sale-delay, keyed by auction id.

    Exits 1 if any send was not acknowledged by the broker.
    """
    setup_logging(verbose)
    from producers.replay import ReplayOptions, replay_progress
    from producers.replay import replay as run_replay
    from producers.sources import SourceError, load_auctions
    from producers.timeline import parse_duration, select

    if max_ and (speedup or rate):
        raise fail("--max cannot be combined with --speedup or --rate")
    try:
        options = ReplayOptions(
            sale_delay=parse_duration(sale_delay),
            rate=rate,
            speedup=speedup,
            with_sales=sales,
            corrupt_share=corrupt_share,
            seed=seed,
        )
        spec = source_spec(source, rows, seed, start, end, scenario)
        with console.status(f"loading {spec.label}…"):
            frame = select(load_auctions(spec), from_, to, limit)
    except (SourceError, ValueError) as exc:
        raise fail(str(exc)) from None
    settings = get_settings()
    console.print(
        f"replaying {len(frame):,} auctions from {spec.label} to {settings.kafka_bootstrap}"
    )
    with replay_progress(console) as progress:
        stats = run_replay(frame, settings, options, progress)
    Console().print(replay_summary(stats))
    if stats.failed:
        raise fail(f"{stats.failed} sends failed: {dict(stats.errors)}")


def replay_summary(stats: ReplayStats) -> Table:
    table = Table(title="replay summary", show_header=False)
    table.add_row("listings sent", f"{stats.listings:,}")
    table.add_row("  of which malformed on purpose", f"{sum(stats.corrupted.values()):,}")
    table.add_row("sales sent", f"{stats.sales:,}")
    table.add_row("acknowledged", f"{stats.acked:,}")
    table.add_row("failed", f"[red]{stats.failed:,}[/]" if stats.failed else "0")
    table.add_row("event time", f"{stats.first_event} → {stats.last_event}")
    table.add_row("wall time", f"{stats.seconds:.1f}s ({stats.rate:,.0f} events/s)")
    return table


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Faust log level.")] = "info",
    instance_id: Annotated[
        str | None,
        typer.Option(
            help="Static group membership (GAVEL_WORKER_INSTANCE_ID): a worker restarted "
            "with the same id takes its partitions back at once. Unique per process.",
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Run this many workers of one consumer group (ports from "
            "GAVEL_WORKER_WEB_PORT up, instance ids suffixed -0, -1, ...); a worker that "
            "dies is restarted. More workers than partitions of auctions.listed sit idle.",
        ),
    ] = 1,
) -> None:
    """Run the Faust scoring worker: price auctions.listed with the champion model, emit
    prices.scored, dead-letter bad events (with a reason), hot-swap new champions.

    HTTP on GAVEL_WORKER_WEB_PORT: POST /predict, GET /health (503 when degraded; it
    names the partitions this worker owns), GET /metrics. Scale out by running more
    workers, here with --processes or anywhere with the same GAVEL_NAMESPACE: Kafka's
    consumer group spreads the partitions of auctions.listed (GAVEL_TOPIC_PARTITIONS at
    topic creation) over them. SIGTERM drains the batches in flight and commits; exit
    code 3 means outputs could not be written (nothing was acknowledged, a restart
    replays them).
    """
    settings = get_settings()
    if instance_id is not None:
        settings = settings.replace(worker_instance_id=instance_id)
    if processes > 1:
        from stream_app.supervisor import supervise

        setup_logging(False)
        raise typer.Exit(supervise(settings, processes, loglevel=loglevel))
    from stream_app.app import run_worker

    run_worker(settings, loglevel=loglevel)


@app.command()
def monitor(verbose: Verbose = False) -> None:
    """Run the drift monitor: windowed feature, prediction and performance drift against
    the champion's reference, Prometheus metrics on GAVEL_MONITOR_METRICS_PORT, alerts to
    drift.alerts and an Evidently HTML report per alert under reports/.

    Tune it with GAVEL_MONITOR__* variables (e.g. GAVEL_MONITOR__WINDOW_EVENTS=2000).
    Run one monitor per namespace.
    """
    setup_logging(verbose)
    from monitor.service import run_monitor

    run_monitor(get_settings())


@trainer_app.command("run")
def trainer_run(verbose: Verbose = False) -> None:
    """Retrain on drift alerts: policy (kind, severity, cooldown, new labels), a Redis
    lock so only one trainer trains, recent labelled data read back from Kafka, gating
    against the champion, promotion in MLflow and an announcement on models.updates.

    Tune it with GAVEL_TRAINER__* variables (e.g. GAVEL_TRAINER__COOLDOWN_S=900).
    """
    setup_logging(verbose)
    from trainer.service import run_trainer

    run_trainer(get_settings())


@trainer_app.command("rollback")
def trainer_rollback(
    reason: Annotated[str, typer.Option(help="Why, recorded on the versions.")] = "manual",
) -> None:
    """Make the 'previous' version champion again and announce it on models.updates."""
    setup_logging()
    from shell.registry import RollbackError
    from trainer.service import TrainerService

    try:
        update = TrainerService(get_settings()).rollback(reason)
    except RollbackError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"[green]✓[/] {update.model_name}: champion is v{update.version} again "
        f"(v{update.previous_version} rolled back)"
    )


@trainer_app.command("status")
def trainer_status(limit: Annotated[int, typer.Option(help="Decisions to show.")] = 15) -> None:
    """The registry's versions and the trainer's latest decisions."""
    from shell import registry
    from trainer.service import TrainerStore

    settings = get_settings()
    versions = Table(title=f"{settings.model_name} versions")
    for column in ("version", "aliases", "role", "test MAPE", "reason"):
        versions.add_column(column)
    client = registry.connect(settings)
    for row in registry.model_versions(client, settings.model_name):
        mape = f"{row['test_mape']:.2%}" if row.get("test_mape") is not None else "-"
        reason = row.get("promotion_reason") or row.get("rejection_reason") or ""
        versions.add_row(row["version"], row["aliases"], row.get("role", ""), mape, reason)
    decisions = Table(title="trainer decisions (newest first)")
    for column in ("at", "alert", "kind", "decision", "reason"):
        decisions.add_column(column)
    for entry in TrainerStore(settings).decisions(limit):
        decisions.add_row(
            entry["at"][:19],
            (entry.get("alert_id") or "-")[:8],
            entry.get("kind") or "-",
            entry["decision"],
            entry["reason"],
        )
    store = TrainerStore(settings)
    window = Table(title="last training window read (records read, skipped by reason)")
    for column in ("topic", "read", "skipped"):
        window.add_column(column)
    last = store.window() or {"topics": {}}
    for topic, tally in last["topics"].items():
        skipped = ", ".join(f"{k}: {n}" for k, n in tally["skipped"].items()) or "none"
        window.add_row(topic, str(tally["read"]), skipped)
    out = Console()
    out.print(versions)
    out.print(decisions)
    out.print(window)


@app.command()
def demo(
    keep_running: Annotated[
        bool, typer.Option(help="Leave the stack running afterwards, to explore MLflow.")
    ] = False,
    rate: Annotated[float, typer.Option(help="Replay pace, events per second.")] = 1200.0,
    verbose: Verbose = False,
) -> None:
    """The closed loop on the local stack, narrated as it happens: stack → first model →
    streaming prices → market shock → drift alert → retrain → promotion → hot swap →
    recovery. Ends with a timeline, MAPE before and after (next to the frozen first
    model's) and a plot. Stops what it started unless --keep-running."""
    setup_logging(verbose)
    from shell.demo.runner import DemoPlan, run_demo
    from shell.stack.process import StackError

    try:
        run_demo(get_settings(), DemoPlan(rate=rate), console, keep_running)
    except StackError as exc:
        raise fail(str(exc)) from None


def main() -> None:
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:
        # Not str(exc): pydantic quotes the input, which may hold a password.
        problems = "\n".join(
            f"  {'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        console.print(f"[bold red]error:[/] invalid settings (GAVEL_* or .env):\n{problems}")
        raise SystemExit(2) from None
    except Exception as exc:
        from shell import registry

        if not registry.refused_credentials(exc):
            raise
        console.print(
            "[bold red]error:[/] MLflow refused the credentials: set "
            "GAVEL_MLFLOW_TRACKING_USERNAME and GAVEL_MLFLOW_TRACKING_PASSWORD "
            f"(server said: {str(exc)[:200]})"
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
