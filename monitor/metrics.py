"""Prometheus metrics of the monitor (the Grafana drift panels read these).

What changes with every record (records processed, events held, the join's backlog,
the streaming bias) is not updated per record: :meth:`MonitorMetrics.watch` binds
those series to the running monitor, and Prometheus reads them when it scrapes
(``Gauge.set_function`` and a custom collector, prometheus-client's own mechanisms).
Everything else changes once per window or per checkpoint and is set when it does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from gavel.schemas import DriftKind
from monitor.drift import MONITORED
from monitor.records import SkipReason

SOURCES = ("prices.scored", "auctions.sold")
HELD = (
    "join_predictions",
    "join_sales",
    "reorder_scored",
    "reorder_joined",
    "window_scored",
    "window_labelled",
)
DEPENDENCIES = ("mlflow", "redis", "kafka")
JOIN_OUTCOMES = ("joined", "expired_predictions", "expired_sales", "evicted")


class Watched(Protocol):
    """What the scrape-time series read from the running monitor."""

    @property
    def processed(self) -> Mapping[str, int]:
        """Records processed since the process started, by source (every one of SOURCES)."""

    def held_events(self) -> Mapping[str, int]:
        """Events held in the state, by part (every one of HELD)."""

    def streaming_bias(self) -> float:
        """The streaming detector's current estimate (0 before it exists)."""

    def join_outcomes(self) -> Mapping[str, int]:
        """Predictions and sales through the join, by outcome (every one of JOIN_OUTCOMES)."""


def _held(monitor: Watched, state: str) -> int:
    return monitor.held_events()[state]


class CountsCollector(Collector):
    """A labelled counter whose values are read from the monitor when scraped."""

    def __init__(self, name: str, documentation: str, label: str, values: tuple[str, ...]):
        self.name, self.documentation, self.label, self.values = name, documentation, label, values
        self.read: Callable[[], Mapping[str, int]] = lambda: {}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        counts = self.read()
        for value in self.values:
            family.add_metric([value], counts.get(value, 0))
        yield family


class MonitorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.feature_drift = Gauge(
            "gavel_monitor_feature_drift_score",
            "Drift score of each monitored feature in the last window.",
            ["feature", "stattest"],
            registry=r,
        )
        self.feature_drifted = Gauge(
            "gavel_monitor_feature_drifted",
            "1 when the feature drifted in the last window.",
            ["feature"],
            registry=r,
        )
        self.share_drifted = Gauge(
            "gavel_monitor_share_drifted", "Share of drifted features, last window.", registry=r
        )
        self.prediction_drift = Gauge(
            "gavel_monitor_prediction_drift_score",
            "Drift score of the predicted prices, last window.",
            registry=r,
        )
        self.window_mape = Gauge(
            "gavel_monitor_window_mape", "MAPE of the last labelled window.", registry=r
        )
        self.window_mae = Gauge(
            "gavel_monitor_window_mae", "MAE (dollars) of the last labelled window.", registry=r
        )
        self.window_bias = Gauge(
            "gavel_monitor_window_bias", "Mean relative error of the last window.", registry=r
        )
        self.reference_mape = Gauge(
            "gavel_monitor_reference_mape", "MAPE of the champion's reference sample.", registry=r
        )
        self.streaming_bias = Gauge(
            "gavel_monitor_streaming_bias",
            "ADWIN estimate of the mean relative error over recent sales.",
            registry=r,
        )
        self.alerts = Counter(
            "gavel_monitor_alerts", "Drift alerts published, by kind.", ["kind"], registry=r
        )
        self.alert_active = Gauge(
            "gavel_monitor_alert_active",
            "1 while a drift episode of this kind is open.",
            ["kind"],
            registry=r,
        )
        self.events = CountsCollector(
            "gavel_monitor_events_processed", "Events read, by source topic.", "source", SOURCES
        )
        r.register(self.events)
        self.join_outcomes = CountsCollector(
            "gavel_monitor_join",
            "Predictions and sales through the join, by outcome (evicted: over the bound).",
            "outcome",
            JOIN_OUTCOMES,
        )
        r.register(self.join_outcomes)
        self.join_backlog = Gauge(
            "gavel_monitor_join_backlog", "Predictions waiting for their sale.", registry=r
        )
        self.windows = Counter(
            "gavel_monitor_windows", "Windows evaluated, by kind.", ["kind"], registry=r
        )
        self.skipped = Counter(
            "gavel_monitor_skipped",
            "Records skipped, by source topic and reason (see monitor.records.SkipReason).",
            ["source", "reason"],
            registry=r,
        )
        self.held = Gauge(
            "gavel_monitor_held_events",
            "Events held in the monitor's state (all of it is checkpointed), by part.",
            ["state"],
            registry=r,
        )
        self.checkpoints = Counter(
            "gavel_monitor_checkpoints", "Checkpoints written to Redis.", registry=r
        )
        self.checkpoint_bytes = Gauge(
            "gavel_monitor_checkpoint_bytes", "Size of the last checkpoint.", registry=r
        )
        self.checkpoint_seconds = Gauge(
            "gavel_monitor_checkpoint_seconds",
            "Time the last checkpoint took (alert confirmation included).",
            registry=r,
        )
        self.checkpoint_position = Gauge(
            "gavel_monitor_checkpoint_position",
            "Records covered by the last checkpoint or restored one (sum of next offsets).",
            registry=r,
        )
        self.restored_position = Gauge(
            "gavel_monitor_restored_position",
            "Records covered by the checkpoint this process started from (0: none).",
            registry=r,
        )
        self.dependency_waits = Counter(
            "gavel_monitor_dependency_waits",
            "Retries while a dependency failed (MLflow, Redis, Kafka alert delivery).",
            ["dependency"],
            registry=r,
        )
        self.waiting_for = Gauge(
            "gavel_monitor_waiting_for",
            "1 while the monitor waits for this dependency.",
            ["dependency"],
            registry=r,
        )
        self.model_info = Info("gavel_monitor_model", "The reference model version.", registry=r)
        self.model_version = Gauge(
            "gavel_monitor_model_version", "Numeric reference model version.", registry=r
        )
        # Create every labelled series up front, so dashboards have data before the first alert.
        for kind in DriftKind:
            self.alerts.labels(kind=kind.value)
            self.alert_active.labels(kind=kind.value).set(0)
        for source in SOURCES:
            for reason in SkipReason:
                self.skipped.labels(source=source, reason=reason.value)
        for state in HELD:
            self.held.labels(state=state)
        for dependency in DEPENDENCIES:
            self.dependency_waits.labels(dependency=dependency)
            self.waiting_for.labels(dependency=dependency).set(0)
        for feature in MONITORED:
            self.feature_drifted.labels(feature=feature).set(0)
        self.lease_held = Gauge(
            "gavel_monitor_lease_held",
            "1 while this monitor holds its namespace's lease (and reads), 0 as a standby.",
            registry=r,
        )

    def watch(self, monitor: Watched) -> None:
        """Read the per-record series from ``monitor`` at every scrape."""
        self.events.read = lambda: monitor.processed
        self.join_outcomes.read = monitor.join_outcomes
        for state in HELD:
            self.held.labels(state=state).set_function(functools.partial(_held, monitor, state))
        self.join_backlog.set_function(lambda: monitor.held_events()["join_predictions"])
        self.streaming_bias.set_function(monitor.streaming_bias)
