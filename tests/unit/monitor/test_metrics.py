"""Tests for monitor.metrics: every labelled series exists before the first event."""

from __future__ import annotations

import pytest

from gavel.schemas import DriftKind
from monitor.drift import MONITORED
from monitor.metrics import HELD, SOURCES, MonitorMetrics


@pytest.fixture
def metrics() -> MonitorMetrics:
    return MonitorMetrics()


def value(metrics: MonitorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.mark.parametrize("kind", [kind.value for kind in DriftKind])
def test_every_drift_kind_is_precreated_at_zero(metrics: MonitorMetrics, kind: str) -> None:
    assert value(metrics, "gavel_monitor_alerts_total", kind=kind) == 0.0
    assert value(metrics, "gavel_monitor_alert_active", kind=kind) == 0.0


def test_drift_kinds_are_all_there_is(metrics: MonitorMetrics) -> None:
    kinds = {
        sample.labels["kind"]
        for family in metrics.registry.collect()
        if family.name == "gavel_monitor_alert_active"
        for sample in family.samples
    }
    assert kinds == {"data", "prediction", "performance"}


@pytest.mark.parametrize("feature", MONITORED)
def test_every_monitored_feature_is_precreated(metrics: MonitorMetrics, feature: str) -> None:
    assert value(metrics, "gavel_monitor_feature_drifted", feature=feature) == 0.0


def test_unmonitored_features_have_no_series(metrics: MonitorMetrics) -> None:
    assert value(metrics, "gavel_monitor_feature_drifted", feature="trim") is None
    assert value(metrics, "gavel_monitor_feature_drifted", feature="prediction") is None


@pytest.mark.parametrize("source", SOURCES)
def test_event_sources_are_precreated(metrics: MonitorMetrics, source: str) -> None:
    assert value(metrics, "gavel_monitor_events_processed_total", source=source) == 0.0


def test_each_instance_has_its_own_registry() -> None:
    first, second = MonitorMetrics(), MonitorMetrics()
    first.alerts.labels(kind="data").inc()
    first.window_mape.set(0.2)
    assert value(first, "gavel_monitor_alerts_total", kind="data") == 1.0
    assert value(second, "gavel_monitor_alerts_total", kind="data") == 0.0
    assert value(first, "gavel_monitor_window_mape") == 0.2
    assert value(second, "gavel_monitor_window_mape") == 0.0


class FakeMonitor:
    """A watched monitor whose numbers the test moves."""

    def __init__(self) -> None:
        self.processed = {source: 0 for source in SOURCES}
        self.held = dict.fromkeys(HELD, 0)
        self.bias = 0.0

    def held_events(self) -> dict[str, int]:
        return self.held

    def streaming_bias(self) -> float:
        return self.bias

    def join_outcomes(self) -> dict[str, int]:
        return {"joined": 5, "evicted": 2}


def test_watched_series_are_read_when_scraped(metrics: MonitorMetrics) -> None:
    monitor = FakeMonitor()
    metrics.watch(monitor)
    monitor.processed["auctions.sold"] = 7
    monitor.held["reorder_joined"] = 3
    monitor.held["join_predictions"] = 11
    monitor.bias = 0.25
    # No call in between: the values come from the monitor at collection time.
    assert value(metrics, "gavel_monitor_events_processed_total", source="auctions.sold") == 7
    assert value(metrics, "gavel_monitor_events_processed_total", source="prices.scored") == 0
    assert value(metrics, "gavel_monitor_held_events", state="reorder_joined") == 3
    assert value(metrics, "gavel_monitor_held_events", state="join_predictions") == 11
    assert value(metrics, "gavel_monitor_join_backlog") == 11
    assert value(metrics, "gavel_monitor_streaming_bias") == 0.25
    assert value(metrics, "gavel_monitor_join_total", outcome="joined") == 5
    assert value(metrics, "gavel_monitor_join_total", outcome="evicted") == 2
    assert value(metrics, "gavel_monitor_join_total", outcome="expired_sales") == 0
    monitor.processed["auctions.sold"] = 8
    assert value(metrics, "gavel_monitor_events_processed_total", source="auctions.sold") == 8
