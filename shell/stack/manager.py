"""`gavel stack up|down|status`: start, stop and inspect the local stack."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

from rich.console import Console
from rich.table import Table

from gavel.settings import Settings
from shell.kafka import ensure_topics
from shell.stack.components import Component, Kafka, MLflow, Prometheus, Redis
from shell.stack.process import StackError, port_in_use, wait_until

CORE = ("kafka", "redis", "mlflow")
OPTIONAL = ("prometheus",)
_CLASSES: dict[str, type[Component]] = {
    "kafka": Kafka,
    "redis": Redis,
    "mlflow": MLflow,
    "prometheus": Prometheus,
}


@dataclass
class ComponentStatus:
    name: str
    address: str
    pid: int | None
    healthy: bool
    uptime_s: float | None
    note: str = ""


def components(settings: Settings, names: tuple[str, ...] = CORE) -> list[Component]:
    unknown = sorted(set(names) - set(_CLASSES))
    if unknown:
        raise StackError(f"unknown stack component(s) {unknown}; choose from {sorted(_CLASSES)}")
    return [_CLASSES[name](settings) for name in names]


def up(
    settings: Settings, names: tuple[str, ...] = CORE, console: Console | None = None
) -> dict[str, float]:
    """Start what is not running yet and wait until healthy; returns start seconds per part."""
    console = console or Console(stderr=True)
    settings.stack.dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for component in components(settings, names):
        if component.process.pid() is not None and component.healthy():
            console.print(f"[green]✓[/] {component.name} already running at {component.address}")
            continue
        if component.process.pid() is None and port_in_use(settings.host, component.port):
            raise StackError(
                f"Port {component.port} for {component.name} is taken by another process. "
                f"Stop it, or choose another port with GAVEL_{component.name.upper()}_PORT."
            )
        with console.status(f"preparing {component.name}…"):
            component.prepare()
        started = time.monotonic()
        with console.status(f"starting {component.name}…"):
            if component.process.pid() is None:
                component.start()
            ok = wait_until(partial(_up_or_exited, component), component.start_timeout_s)
        if not ok or not component.healthy():
            tail = component.process.log_tail()
            component.process.stop()
            raise StackError(
                f"{component.name} did not become healthy within {component.start_timeout_s:.0f}s. "
                f"Last lines of {component.process.log_file}:\n{tail}"
            )
        component.after_start()
        timings[component.name] = time.monotonic() - started
        console.print(
            f"[green]✓[/] {component.name} up at {component.address} "
            f"in {timings[component.name]:.1f}s"
        )
    if "kafka" in names:
        partitions = ensure_topics(settings)
        console.print(
            "[green]✓[/] topics: " + ", ".join(f"{t}({n})" for t, n in partitions.items())
        )
    return timings


def down(
    settings: Settings, names: tuple[str, ...] = CORE + OPTIONAL, console: Console | None = None
) -> None:
    console = console or Console(stderr=True)
    for component in reversed(components(settings, names)):
        if component.process.stop():
            console.print(f"[yellow]■[/] {component.name} stopped")
        else:
            console.print(f"[dim]· {component.name} was not running[/]")


def status(settings: Settings, names: tuple[str, ...] = CORE + OPTIONAL) -> list[ComponentStatus]:
    rows: list[ComponentStatus] = []
    for component in components(settings, names):
        pid = component.process.pid()
        healthy = pid is not None and component.healthy()
        started = component.process.started_at()
        note = ""
        if pid is None and port_in_use(settings.host, component.port):
            note = f"port {component.port} used by a process not started by gavel"
        rows.append(
            ComponentStatus(
                name=component.name,
                address=component.address,
                pid=pid,
                healthy=healthy,
                uptime_s=(time.time() - started) if started else None,
                note=note,
            )
        )
    return rows


def status_table(rows: list[ComponentStatus]) -> Table:
    table = Table(title="Gavel local stack")
    for column in ("component", "address", "pid", "health", "uptime", "note"):
        table.add_column(column)
    for row in rows:
        if row.healthy:
            health = "[green]healthy[/]"
        elif row.pid:
            health = "[red]unhealthy[/]"
        else:
            health = "[dim]stopped[/]"
        uptime = f"{row.uptime_s:.0f}s" if row.uptime_s is not None else "-"
        table.add_row(row.name, row.address, str(row.pid or "-"), health, uptime, row.note)
    return table


def _up_or_exited(component: Component) -> bool:
    """Whether a starting component is healthy, or has already given up."""
    return component.healthy() or component.process.exited_early()
