"""The commands the README documents, run as a user would, on the real stack.

The examples are read from README.md itself, so the README cannot drift from what
works. (`gavel stack …` is covered by tests/integration/test_stack_cli.py, `gavel
trainer run` by the trainer's tests, `gavel demo` by `make demo`: it takes minutes.)
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from gavel.settings import PROJECT_ROOT, Settings
from gavel.topics import AUCTIONS_LISTED, AUCTIONS_SOLD
from shell import registry
from tests.e2e.conftest import worker_health_url
from tests.helpers import end_offsets, http_ok, service

pytestmark = pytest.mark.e2e

README = (PROJECT_ROOT / "README.md").read_text()
SYNTHETIC = ["--rows", "8000", "--start", "2015-01-01", "--end", "2015-05-01"]


def readme_example(command: str) -> list[str]:
    """The README's example of ``gavel <command>``, as arguments (continuations joined)."""
    text = README.replace("\\\n", " ")
    match = re.search(rf"^gavel {command} (--.+?)(?:\s+#.*)?$", text, re.MULTILINE)
    assert match, f"the README has no `gavel {command}` example"
    return shlex.split(match.group(1))


def gavel(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env(), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "shell.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"$ gavel {shlex.join(args)}  → exit {result.returncode}\n{result.stdout[-1500:]}")
    return result


def test_train_replay_predict_status_and_rollback_as_the_readme_shows(
    services: Settings, tmp_path: Path
) -> None:
    trained = gavel(services, "train", *SYNTHETIC)
    assert trained.returncode == 0, trained.stderr[-3000:]
    champion = registry.champion(registry.connect(services), services.model_name)
    assert champion is not None and champion.version == "1"
    assert "MAPE" in trained.stdout + trained.stderr

    # The README's replay: its window, pace and scenario, over the synthetic source.
    args = readme_example("replay")
    assert "--scenario" in args and "--speedup" in args
    start = args[args.index("--from") + 1]
    days = ["--from", start, "--to", f"{start[:8]}03", "--speedup", "864000"]  # 2 days, fast
    scenario = args[args.index("--scenario") + 1]
    replayed = gavel(services, "replay", *SYNTHETIC, *days, "--scenario", scenario)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    listed = end_offsets(services, AUCTIONS_LISTED)
    assert listed > 50 and end_offsets(services, AUCTIONS_SOLD) > 0
    assert f"{listed:,}" in replayed.stdout + replayed.stderr  # the summary tells the count

    # The README's /predict request, sent to a running worker.
    curl = re.search(r"curl -s \S+/predict (.+?) -d '(\{.+?\})'", README.replace("\\\n", " "))
    assert curl, "the README has no /predict example"
    body = orjson.loads(curl.group(2))
    health = worker_health_url(services)
    with service("worker", ["worker"], services, tmp_path, ready=http_ok(health)):
        response = httpx.post(
            health.replace("/health", "/predict"),
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    priced = response.json()
    assert priced["model_version"] == "1"
    assert 1000 < priced["predictions"][0]["predicted_price"] < 60_000

    status = gavel(services, "trainer", "status")
    assert status.returncode == 0, status.stderr[-3000:]
    assert "champion" in status.stdout and "versions" in status.stdout

    rollback = gavel(services, "trainer", "rollback", "--reason", "readme test")
    assert rollback.returncode == 1, "with one version there is nothing to roll back to"
    assert "previous" in (rollback.stdout + rollback.stderr).lower()


def test_train_on_the_kaggle_csv_as_the_readme_shows(sample_csv: Path, isolated: Settings) -> None:
    args = readme_example("train")
    assert args[0] == "--source" and args[1].endswith("car_auctions_sample.csv.gz")
    trained = gavel(isolated, "train", "--source", str(sample_csv))
    assert trained.returncode == 0, trained.stderr[-3000:]
    champion = registry.champion(registry.connect(isolated), isolated.model_name)
    assert champion is not None and champion.reference_mape is not None
    assert champion.reference_mape < 0.5
