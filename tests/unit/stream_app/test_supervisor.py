"""`gavel worker --processes N`: the children's settings, restarts and the stop."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from gavel.settings import Settings
from stream_app import supervisor
from stream_app.supervisor import plan_children, restart_pause_s, supervise


def test_children_get_distinct_ports_and_ids_and_keep_everything_else() -> None:
    base = Settings(worker_web_port=7000, worker_instance_id="w-{hostname}", namespace="ns.")
    children = plan_children(base, 4)
    assert [c.worker_web_port for c in children] == [7000, 7001, 7002, 7003]
    assert len({c.worker_instance_id for c in children}) == 4
    assert {c.namespace for c in children} == {"ns."}
    assert [c.worker_instance_id for c in plan_children(Settings(), 2)] == [None, None]
    with pytest.raises(ValueError):
        plan_children(base, 0)


def test_restart_pause_grows_and_is_capped() -> None:
    pauses = [restart_pause_s(n) for n in range(1, 12)]
    assert pauses == sorted(pauses) and pauses[-1] == supervisor.RESTART_PAUSE_MAX_S


def test_a_dead_child_is_restarted_and_a_stop_ends_every_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "RESTART_PAUSE_S", 0.05)
    starts = tmp_path / "starts"
    # Each start appends a line; the child dies at once the first two times, then stays.
    script = (
        "import sys, time, pathlib\n"
        f"p = pathlib.Path({str(starts)!r}); p.open('a').write('x\\n')\n"
        "if len(p.read_text().splitlines()) <= 2: sys.exit(1)\n"
        "time.sleep(60)\n"
    )
    stop = threading.Event()
    result: list[int] = []
    runner = threading.Thread(
        target=lambda: result.append(
            supervise(
                Settings(worker_stop_timeout_s=1), 1, stop=stop, argv=[sys.executable, "-c", script]
            )
        )
    )
    runner.start()
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and len(starts.read_text().splitlines() if starts.exists() else []) < 3
    ):
        time.sleep(0.1)
    assert len(starts.read_text().splitlines()) == 3  # two failures, two restarts
    stop.set()
    runner.join(20)
    assert not runner.is_alive()
    assert result == [0]  # stopped by SIGTERM, which is no failure
