"""`gavel stack` against the running stack, and its errors."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gavel.settings import Settings

pytestmark = pytest.mark.integration


def gavel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shell.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def test_status_reports_every_core_part_healthy(stack: Settings) -> None:
    result = gavel("stack", "status", env=stack.to_env() | _path_env())
    assert result.returncode == 0, result.stdout + result.stderr
    for part in ("kafka", "redis", "mlflow"):
        assert part in result.stdout
    assert result.stdout.count("healthy") >= 3


def test_up_twice_is_harmless(stack: Settings) -> None:
    result = gavel("stack", "up", env=stack.to_env() | _path_env())
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("already running") == 3


def test_a_taken_port_gets_a_clear_error(stack: Settings, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = stack.replace(stack={"dir": tmp_path / "stack"}, redis_port=port)
        result = gavel("stack", "up", "redis", env=settings.to_env() | _path_env())
    assert result.returncode == 1
    assert f"Port {port}" in result.stderr and "GAVEL_REDIS_PORT" in result.stderr


def test_up_status_and_down_of_one_component(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(stack={"dir": tmp_path / "stack"}, redis_port=port)
    env = settings.to_env() | _path_env()
    try:
        up = gavel("stack", "up", "redis", env=env)
        assert up.returncode == 0, up.stderr
        assert f"redis up at redis://127.0.0.1:{port}/0" in up.stderr
    finally:
        down = gavel("stack", "down", "redis", env=env)
    assert down.returncode == 0 and "redis stopped" in down.stderr
    status = gavel("stack", "status", env=env)
    assert "stopped" in status.stdout


def _path_env() -> dict[str, str]:
    import os

    return {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}


def test_mlflow_runs_without_its_job_consumers(stack: Settings) -> None:
    """MLflow 3 would start seven huey job consumers (~1.7 GB) that Gavel never uses."""
    server = int((stack.stack.dir / "pids" / "mlflow.pid").read_text())
    tree = _descendants(server)
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in tree]
    assert any(b"uvicorn" in command for command in commands), commands  # the probe can see
    assert not [command for command in commands if b"huey" in command or b"_job_runner" in command]


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid] + [d for child in children for d in _descendants(int(child))]
