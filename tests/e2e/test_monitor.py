"""The monitor as a real process behind a real worker: quiet on a stationary market,
a performance alert soon after a market shock, a data alert naming the shifted features."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from gavel.kafka import ensure_topics
from gavel.settings import Settings
from gavel.topics import DRIFT_ALERTS
from producers.replay import ReplayOptions, replay
from producers.sources.scenarios import parse_scenario
from producers.sources.synthetic import generate_auctions
from producers.timeline import select
from tests.conftest import fresh_namespace
from tests.e2e.conftest import SMALL_XGB, worker_health_url
from tests.helpers import consume, end_offsets, free_port, http_ok, scrape, service, wait_for
from trainer.split import time_split
from trainer.training import train_and_register

pytestmark = pytest.mark.e2e

ROWS, SEED = 60_000, 7
STREAM_FROM, ONSET = "2015-04-01", pd.Timestamp("2015-05-01", tz="UTC")
SALE_DELAY = timedelta(hours=2)


def auctions(*scenarios: str) -> pd.DataFrame:
    return generate_auctions(
        ROWS,
        start="2015-01-01",
        end="2015-07-01",
        seed=SEED,
        scenarios=[parse_scenario(text) for text in scenarios],
    )


@pytest.fixture(scope="module")
def model_name(stack: Settings) -> str:
    """One champion for the module, trained on the months before the streams."""
    name = f"gavel-test-monitor-{uuid.uuid4().hex[:6]}"
    settings = stack.replace(model_name=name, experiment_name="gavel-tests")
    split = time_split(auctions(), "2015-03-01", test_days=30)
    train_and_register(split, settings, source="e2e-monitor", xgb_params=SMALL_XGB)
    return name


@dataclass
class Pipeline:
    settings: Settings
    metrics_url: str

    def processed(self) -> float:
        samples = scrape(self.metrics_url)
        return sum(v for (name, _), v in samples.items() if name.endswith("processed_total"))

    def alerts(self) -> list[dict]:
        expected = end_offsets(self.settings, DRIFT_ALERTS)
        records = consume(self.settings, DRIFT_ALERTS, until=lambda r: len(r) >= expected)
        return [record.json() for record in records]


@pytest.fixture
def pipeline(stack: Settings, model_name: str, tmp_path: Path) -> Iterator[Pipeline]:
    """A worker and a monitor in a fresh namespace."""
    settings = stack.replace(
        namespace=fresh_namespace(),
        model_name=model_name,
        worker_web_port=free_port(),
        monitor_metrics_port=free_port(),
        reports_dir=tmp_path / "reports",
    )
    ensure_topics(settings)
    metrics_url = f"http://{settings.host}:{settings.monitor_metrics_port}/metrics"
    with (
        service("worker", ["worker"], settings, tmp_path, http_ok(worker_health_url(settings))),
        service("monitor", ["monitor"], settings, tmp_path, http_ok(metrics_url)),
    ):
        yield Pipeline(settings, metrics_url)


def stream(pipeline: Pipeline, frame: pd.DataFrame) -> None:
    stats = replay(frame, pipeline.settings, ReplayOptions(sale_delay=SALE_DELAY))
    assert stats.failed == 0
    wait_for(lambda: pipeline.processed() >= stats.sent, 240, "the monitor to read everything")


def test_a_stationary_market_raises_no_alert(pipeline: Pipeline) -> None:
    frame = select(auctions(), STREAM_FROM)
    assert 2 * len(frame) >= 50_000  # listings plus sales
    stream(pipeline, frame)
    assert pipeline.alerts() == []
    samples = scrape(pipeline.metrics_url)
    assert samples[("gavel_monitor_windows_total", (("kind", "performance"),))] >= 20
    assert samples[("gavel_monitor_join_backlog", ())] < 1000


PERFORMANCE_BOUND_SALES = 2000  # two performance windows of labelled sales


def test_a_market_shock_raises_a_performance_alert_within_two_windows(pipeline: Pipeline) -> None:
    frame = select(
        auctions("market_shock:start=2015-05-01,segment=body=SUV,change=-0.2"), STREAM_FROM
    )
    stream(pipeline, frame)
    alerts = pipeline.alerts()
    assert alerts, "the shock must be noticed"
    assert {alert["kind"] for alert in alerts} == {"performance"}, "features did not move"
    first = alerts[0]
    detected_at = pd.Timestamp(first["window_end"])
    sold = frame["listed_at"] + SALE_DELAY
    sales_since_onset = int(((sold >= ONSET) & (sold <= detected_at)).sum())
    print(f"market shock: alert after {sales_since_onset} sales since onset ({first['detector']})")
    assert detected_at >= ONSET, "no alert before the shock"
    assert sales_since_onset <= PERFORMANCE_BOUND_SALES
    assert first["reference_mape"] > 0 and first["model_version"]
    assert first["report_path"] and Path(first["report_path"]).exists()
    assert len(alerts) == 1, "one alert per episode"


SHIFTED = {"year", "odometer", "condition", "mmr"}


def test_a_mix_shift_raises_a_data_alert_naming_the_shifted_features(pipeline: Pipeline) -> None:
    frame = select(auctions("mix_shift:start=2015-05-01"), STREAM_FROM)
    stream(pipeline, frame)
    data_alerts = [alert for alert in pipeline.alerts() if alert["kind"] == "data"]
    assert len(data_alerts) == 1
    alert = data_alerts[0]
    named = {feature["feature"] for feature in alert["drifted_features"]}
    assert {"year", "odometer"} <= named <= SHIFTED
    for feature in alert["drifted_features"]:
        assert feature["score"] > feature["threshold"] and feature["stattest"]
    assert alert["share_drifted"] >= 0.25
    assert pd.Timestamp(alert["window_end"]) >= ONSET
    listed = frame["listed_at"]
    since_onset = int(((listed >= ONSET) & (listed <= pd.Timestamp(alert["window_end"]))).sum())
    print(f"mix shift: data alert after {since_onset} listings since onset")
    assert since_onset <= 2 * pipeline.settings.monitor.window_events
    assert Path(alert["report_path"]).exists()
