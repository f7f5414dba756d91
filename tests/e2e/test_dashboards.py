"""Debian's Prometheus scrapes a real worker and monitor; every PromQL expression of the
Grafana dashboard is run through Prometheus's HTTP API and must return data."""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gavel.settings import Settings
from producers.replay import ReplayOptions, replay
from producers.sources.scenarios import parse_scenario
from producers.sources.synthetic import generate_auctions
from producers.timeline import select
from shell.kafka import ensure_topics
from shell.stack.components import Prometheus
from tests.conftest import fresh_namespace
from tests.e2e.conftest import SMALL_XGB, worker_health_url
from tests.helpers import free_port, http_ok, service, wait_for
from tests.unit.deploy.test_dashboards import dashboard_exprs, load_dashboard
from trainer.split import time_split
from trainer.training import train_and_register

pytestmark = pytest.mark.e2e


@pytest.fixture
def observed(stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A worker, a monitor and a Prometheus scraping both every second."""
    tag = uuid.uuid4().hex[:8]
    settings = stack.replace(
        namespace=fresh_namespace(),
        model_name=f"gavel-test-dash-{tag}",
        experiment_name="gavel-tests",
        stack={
            "dir": tmp_path / "stack",
            "prometheus_port": free_port(),
            "prometheus_scrape_interval_s": 1.0,
        },
        reports_dir=tmp_path / "reports",
        worker_web_port=free_port(),
        monitor_metrics_port=free_port(),
        monitor={"window_events": 500, "performance_window_events": 300},
    )
    ensure_topics(settings)
    auctions = generate_auctions(30_000, start="2015-01-01", end="2015-05-01", seed=9)
    split = time_split(auctions, "2015-03-01", test_days=30)
    train_and_register(split, settings, source="e2e-dash", xgb_params=SMALL_XGB)
    prometheus = Prometheus(settings)
    prometheus.prepare()
    prometheus.start()
    try:
        wait_for(prometheus.healthy, 30, "Prometheus")
        metrics = f"http://{settings.host}:{settings.monitor_metrics_port}/metrics"
        with (
            service("worker", ["worker"], settings, tmp_path, http_ok(worker_health_url(settings))),
            service("monitor", ["monitor"], settings, tmp_path, http_ok(metrics)),
        ):
            yield settings
    finally:
        prometheus.process.stop()


def query(settings: Settings, expr: str) -> list[dict]:
    url = f"http://{settings.host}:{settings.stack.prometheus_port}/api/v1/query"
    body = httpx.get(url, params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def has_data(result: list[dict]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def test_every_dashboard_query_returns_data(observed: Settings) -> None:
    exprs = dashboard_exprs(load_dashboard())
    assert len(exprs) >= 10
    stream = select(
        generate_auctions(
            30_000,
            start="2015-01-01",
            end="2015-05-01",
            seed=9,
            scenarios=[parse_scenario("market_shock:start=2015-04-10,segment=body=SUV")],
        ),
        "2015-04-01",
    )
    options = ReplayOptions(rate=400, corrupt_share=0.02)
    feeder = threading.Thread(target=replay, args=(stream, observed, options), daemon=True)
    feeder.start()
    # Query while the stream flows, so that every rate() window holds traffic.
    missing = list(exprs)

    def all_answered() -> bool:
        missing[:] = [expr for expr in missing if not has_data(query(observed, expr))]
        return not missing

    try:
        wait_for(all_answered, 120, "every dashboard query to return data")
    except TimeoutError:
        pytest.fail(f"queries without data: {missing}")
    finally:
        feeder.join(120)
