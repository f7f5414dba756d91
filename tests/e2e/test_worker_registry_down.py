"""The worker while MLflow is down, on a throwaway MLflow server (never the shared one):
a running worker keeps scoring, a new worker serves its cached champion and says so, and
the registry confirms the cached copy once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gavel.settings import Settings
from gavel.topics import PRICES_SCORED
from producers.replay import ReplayOptions, replay
from producers.sources.synthetic import generate_auctions
from tests.e2e.conftest import train_champion, worker_health_url
from tests.helpers import ThrowawayMlflow, consume, free_port, http_ok, service, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_mlflow(tmp_path: Path) -> Iterator[ThrowawayMlflow]:
    server = ThrowawayMlflow(tmp_path)
    server.start()
    yield server
    server.process.stop(timeout_s=20)


def health(settings: Settings) -> dict:
    return httpx.get(worker_health_url(settings), timeout=5).json()


def score(settings: Settings, seed: int, n: int = 300) -> dict[str, dict]:
    """Replay ``n`` new listings and return their scored outputs by auction id."""
    frame = generate_auctions(n, start="2015-03-01", end="2015-04-01", seed=seed)
    frame["auction_id"] = [f"s{seed}-{i}" for i in range(n)]
    replay(frame, settings, ReplayOptions(with_sales=False))
    keys = set(frame["auction_id"])
    records = consume(settings, PRICES_SCORED, until=lambda r: keys <= {x.key for x in r})
    return {r.key: r.json() for r in records if r.key in keys}


def test_mlflow_down_running_worker_scores_new_worker_serves_its_cache(
    services: Settings, own_mlflow: ThrowawayMlflow, tmp_path: Path
) -> None:
    settings = services.replace(mlflow_port=own_mlflow.port, worker_poll_alias_s=2.0)
    champion = train_champion(settings)
    ready = http_ok(worker_health_url(settings))

    with service("worker", ["worker"], settings, tmp_path / "a", ready=ready):
        first = score(settings, seed=1)
        assert {p["model_source"] for p in first.values()} == {"registry"}
        own_mlflow.process.stop(timeout_s=20)
        during = score(settings, seed=2)  # the running worker keeps scoring
        assert len(during) == 300
        wait_for(lambda: health(settings)["warnings"] != [], 30, "the outage to show")
        assert health(settings)["status"] == "ok"

    second = settings.replace(worker_web_port=free_port())
    started = time.monotonic()
    with service(
        "worker", ["worker"], second, tmp_path / "b", ready=http_ok(worker_health_url(second))
    ):
        serving_s = time.monotonic() - started
        body = health(second)
        assert (body["model_version"], body["model_source"]) == (champion.version, "cache")
        assert any("local cache" in warning for warning in body["warnings"])
        cached = score(second, seed=3)
        assert {(p["model_version"], p["model_source"]) for p in cached.values()} == {
            (champion.version, "cache")
        }
        print(f"\na new worker served from its cache {serving_s:.1f}s after its start")

        own_mlflow.start()
        wait_for(lambda: health(second)["model_source"] == "registry", 60, "the confirmation")
        assert health(second)["warnings"] == []
        after = score(second, seed=4)
        assert {p["model_source"] for p in after.values()} == {"registry"}
