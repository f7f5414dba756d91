"""The ``gavel`` command line.

Heavy imports happen inside the commands so that ``--help`` stays instant.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from gavel.settings import get_settings

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
    from gavel.stack import manager
    from gavel.stack.process import StackError

    names = tuple(components or manager.CORE) + (("prometheus",) if with_prometheus else ())
    try:
        manager.up(get_settings(), names, console=console)
    except StackError as exc:
        raise fail(str(exc)) from None
    console.print(manager.status_table(manager.status(get_settings(), names)))


@stack_app.command("down")
def stack_down(components: Components = None) -> None:
    """Stop every local-stack process (state under .stack/ is kept)."""
    from gavel.stack import manager

    names = tuple(components or manager.CORE + manager.OPTIONAL)
    manager.down(get_settings(), names, console=console)


@stack_app.command("status")
def stack_status() -> None:
    """Show each part's health; exits 1 when a core part is not healthy."""
    from gavel.stack import manager

    rows = manager.status(get_settings())
    Console().print(manager.status_table(rows))
    if not all(row.healthy for row in rows if row.name in manager.CORE):
        raise typer.Exit(code=1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
