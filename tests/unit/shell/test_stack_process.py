"""Tests for shell.stack.process with real, short-lived child processes (no servers)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shell.stack.process import ManagedProcess, group_members, port_in_use, wait_until


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}


@pytest.fixture
def managed(tmp_path: Path) -> Iterator[ManagedProcess]:
    process = ManagedProcess("sleeper", tmp_path / "state")
    yield process
    process.stop(timeout_s=2.0)  # never leave a child behind, even when a test fails


def test_start_writes_pid_and_log(managed: ManagedProcess, tmp_path: Path) -> None:
    pid = managed.start(["sleep", "30"], cwd=tmp_path)
    assert managed.pid() == pid
    assert running(pid)
    assert managed.pid_file == tmp_path / "state" / "pids" / "sleeper.pid"
    assert managed.pid_file.read_text() == str(pid)
    assert "starting: sleep 30" in managed.log_tail()
    assert managed.started_at() == pytest.approx(time.time(), abs=30)
    assert not managed.exited_early()
    # Its own session: stopping it cannot signal the test runner.
    assert os.getpgid(pid) == pid
    assert os.getsid(pid) == pid
    assert os.getpgid(pid) != os.getpgrp()


def test_stop_kills_the_process(managed: ManagedProcess) -> None:
    pid = managed.start(["sleep", "30"])
    started = time.monotonic()
    assert managed.stop() is True
    assert time.monotonic() - started < 5
    assert not running(pid)
    assert managed.pid() is None
    assert not managed.pid_file.exists()
    assert managed.started_at() is None


def test_stop_kills_the_whole_group(managed: ManagedProcess) -> None:
    pid = managed.start(["sh", "-c", "sleep 30 & sleep 30"])
    assert wait_until(lambda: len(group_members(pid)) >= 2, timeout_s=5, interval_s=0.02)
    members = group_members(pid)
    grandchildren = members - {pid}
    assert grandchildren
    assert managed.stop() is True
    assert not any(running(member) for member in members)
    assert group_members(pid) == set()
    assert not managed.pid_file.exists()


def test_env_and_cwd_reach_the_child(managed: ManagedProcess, tmp_path: Path) -> None:
    script = 'echo "value=$GAVEL_TEST_VALUE in $(pwd)"'
    managed.start(["sh", "-c", script], env={"GAVEL_TEST_VALUE": "42"}, cwd=tmp_path)
    assert wait_until(lambda: "value=42" in managed.log_tail(), timeout_s=5, interval_s=0.02)
    assert f"value=42 in {tmp_path}" in managed.log_tail()


def test_stop_with_nothing_running(managed: ManagedProcess) -> None:
    assert managed.pid() is None
    assert managed.stop() is False
    assert managed.log_tail() == "(no log)"


@pytest.mark.parametrize("content", ["not a pid", ""])
def test_unreadable_pid_file_is_removed(managed: ManagedProcess, content: str) -> None:
    managed.pid_file.parent.mkdir(parents=True)
    managed.pid_file.write_text(content)
    assert managed.pid() is None
    assert managed.stop() is False
    assert not managed.pid_file.exists()


def test_exited_early(managed: ManagedProcess) -> None:
    pid = managed.start(["sh", "-c", "echo boom; exit 3"])
    assert wait_until(managed.exited_early, timeout_s=5, interval_s=0.02)
    assert not running(pid)
    assert managed.pid() is None
    assert managed.log_tail().endswith("boom")
    assert managed.stop() is False
    assert not managed.pid_file.exists()


def test_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert port_in_use("127.0.0.1", port) is True
    assert port_in_use("127.0.0.1", port) is False


def test_port_in_use_bound_but_not_listening() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        assert port_in_use("127.0.0.1", sock.getsockname()[1]) is False


def test_wait_until_returns_once_true() -> None:
    calls: list[float] = []

    def third_time() -> bool:
        calls.append(time.monotonic())
        return len(calls) >= 3

    started = time.monotonic()
    assert wait_until(third_time, timeout_s=5, interval_s=0.01) is True
    assert len(calls) == 3
    assert time.monotonic() - started < 1


def test_wait_until_times_out() -> None:
    calls: list[int] = []

    def never() -> bool:
        calls.append(1)
        return False

    started = time.monotonic()
    assert wait_until(never, timeout_s=0.1, interval_s=0.02) is False
    elapsed = time.monotonic() - started
    assert 0.1 <= elapsed < 1
    assert len(calls) >= 3  # polled repeatedly, plus a final check


def test_wait_until_checks_once_more_at_the_deadline() -> None:
    assert wait_until(lambda: True, timeout_s=0) is True
