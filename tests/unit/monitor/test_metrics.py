"""Tests for monitor.metrics: every labelled series exists before the first event."""

from __future__ import annotations

import pytest

from gavel.schemas import DriftKind
from monitor.drift import MONITORED
from monitor.metrics import SOURCES, MonitorMetrics


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
