"""``gavel worker --processes N``: N scoring workers of one consumer group on one host.

Kafka's consumer group spreads the partitions of ``auctions.listed`` over the workers;
this module only starts them, restarts one that dies (with a growing pause, so that a
worker failing at start-up does not spin) and passes SIGTERM on, so that each drains
and commits. Each child is an ordinary ``gavel worker`` with its own HTTP port (the
base port plus its index) and, with static membership, its own instance id.

In docker compose the same scale-out is ``docker compose up --scale worker=N``: each
container is one worker with its own hostname (and so its own instance id).

>>> from gavel.settings import Settings
>>> children = plan_children(Settings(worker_web_port=6066, worker_instance_id="w"), 3)
>>> [(c.worker_web_port, c.worker_instance_id) for c in children]
[(6066, 'w-0'), (6067, 'w-1'), (6068, 'w-2')]
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from gavel.settings import Settings
from shell.shutdown import stop_on_signals

log = logging.getLogger(__name__)

RESTART_PAUSE_S = 1.0
RESTART_PAUSE_MAX_S = 60.0
STABLE_AFTER_S = 60.0  # a child that ran this long starts its next restart from scratch


def plan_children(settings: Settings, processes: int) -> list[Settings]:
    """The settings of each of ``processes`` workers: consecutive ports, distinct ids."""
    if processes < 1:
        raise ValueError("processes must be at least 1")
    base_id = settings.worker_instance_id
    return [
        settings.replace(
            worker_web_port=settings.worker_web_port + index,
            worker_instance_id=f"{base_id}-{index}" if base_id else None,
        )
        for index in range(processes)
    ]


def restart_pause_s(failures: int) -> float:
    """The pause before restarting a worker that failed ``failures`` times in a row.

    >>> [restart_pause_s(n) for n in (1, 2, 3, 8)]
    [1.0, 2.0, 4.0, 60.0]
    """
    return min(RESTART_PAUSE_S * 2.0 ** (failures - 1), RESTART_PAUSE_MAX_S)


@dataclass
class _Child:
    index: int
    settings: Settings
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        env = {**os.environ, **self.settings.to_env()}
        self.process = subprocess.Popen(self.argv, env=env)
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info(
            "worker %d started (pid %d, port %d)",
            self.index,
            self.process.pid,
            self.settings.worker_web_port,
        )


def supervise(
    settings: Settings,
    processes: int,
    loglevel: str = "info",
    stop: threading.Event | None = None,
    argv: list[str] | None = None,
) -> int:
    """Run ``processes`` workers until SIGTERM/SIGINT (or ``stop``); returns the highest
    exit code of the last run of each. ``argv`` replaces the worker command (tests)."""
    stop = stop or stop_on_signals()
    argv = argv or [sys.executable, "-m", "shell.cli", "worker", "--loglevel", loglevel]
    children = [
        _Child(index, child, argv) for index, child in enumerate(plan_children(settings, processes))
    ]
    for child in children:
        child.start()
    while not stop.wait(0.5):
        for child in children:
            _look_after(child)
    return _stop_all(children, settings.worker_stop_timeout_s + 5.0)


def _look_after(child: _Child) -> None:
    now = time.monotonic()
    if child.restart_at is not None:
        if now >= child.restart_at:
            child.start()
        return
    assert child.process is not None
    code = child.process.poll()
    if code is None:
        return
    child.exits.append(code)
    child.failures = 1 if now - child.started_at >= STABLE_AFTER_S else child.failures + 1
    pause = restart_pause_s(child.failures)
    child.restart_at = now + pause
    log.warning(
        "worker %d exited with code %d after %.0fs; restarting it in %.0fs",
        child.index,
        code,
        now - child.started_at,
        pause,
    )


def _stop_all(children: list[_Child], timeout_s: float) -> int:
    running = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.warning("worker pid %d did not stop in time; killing it", process.pid)
            process.kill()
            process.wait()
    codes = [c.process.returncode for c in children if c.process is not None]
    return max((code for code in codes if code > 0), default=0)
