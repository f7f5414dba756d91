"""The monitor's event handling: windows, the prediction/sale join, drift and performance
checks, and alerts with hysteresis. No Kafka here: :mod:`monitor.service` feeds it with
parsed records (:mod:`monitor.records`) and checkpoints its :class:`MonitorState`.

Everything the monitor holds between events (the join, the reorder buffers, the open
windows, the streaming detector and the episode gates) is in :class:`MonitorState`, so
that a snapshot taken between two records and restored later continues exactly where it
stopped: the same records then give the same windows and the same alerts.

A record costs a join lookup, a heap push and a few comparisons; frames are built and
tests run once per window. Nothing per record touches Prometheus: the per-record series
are read from the monitor when scraped (:meth:`monitor.metrics.MonitorMetrics.watch`).
To add a check (say, per-segment detectors), give it its state in :class:`MonitorState`
and call it from :meth:`Monitor._window_scored` or :meth:`Monitor._on_joined`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd

from gavel.features import TARGET
from gavel.price_errors import price_metrics
from gavel.schemas import DriftAlert, DriftKind, Severity
from gavel.settings import Settings
from gavel.topics import AUCTIONS_SOLD, PRICES_SCORED
from monitor.alerting import EpisodeGate
from monitor.drift import DriftDetector, DriftResult, monitored_listings
from monitor.join import Joined, PredictionJoin
from monitor.metrics import MonitorMetrics
from monitor.ordering import EventTimeBuffer
from monitor.performance import Breach, PerformanceCheck, StreamingBiasDetector
from monitor.records import SaleRow, ScoredRow
from monitor.reference import Reference
from monitor.reports import ReportWriter
from monitor.windows import TumblingWindows, Window

log = logging.getLogger(__name__)


def scored_frame(rows: list[ScoredRow]) -> pd.DataFrame:
    """The monitored frame of scored rows (one per row, in order)."""
    return monitored_listings([row.listing for row in rows], [row.predicted_price for row in rows])


def labelled_frame(rows: list[Joined]) -> pd.DataFrame:
    frame = scored_frame([row.prediction for row in rows])
    frame[TARGET] = [row.actual for row in rows]
    return frame


def labelled_metrics(rows: list[Joined]) -> dict[str, float]:
    """:func:`gavel.price_errors.price_metrics` of joined rows, without a frame.

    >>> from datetime import datetime, UTC
    >>> t = datetime(2015, 1, 5, tzinfo=UTC)
    >>> scored = ScoredRow("a", t, "1", 110.0, ())
    >>> labelled_metrics([Joined("a", scored, 100.0, t)])["bias"]
    0.1
    """
    actual = [row.actual for row in rows]
    predicted = [row.prediction.predicted_price for row in rows]
    return price_metrics(actual, predicted)


@dataclass
class MonitorState:
    """Everything the monitor holds between two records (picklable, no I/O handles).

    ``version`` names the reference the windows are measured against; restoring loads
    it again (references are rebuilt from the registry, not checkpointed).
    """

    version: str | None
    join: PredictionJoin
    scored_buffer: EventTimeBuffer[ScoredRow]
    joined_buffer: EventTimeBuffer[Joined]
    scored_windows: TumblingWindows[ScoredRow]
    labelled_windows: TumblingWindows[Joined]
    recent_labelled: deque[Joined]
    bias_detector: StreamingBiasDetector | None
    gates: dict[DriftKind, EpisodeGate]
    counts: Counter[str]


class Monitor:
    """Feed it scored prices, sales and champion changes; it returns the alerts to publish."""

    # Set by _reset_windows (at the start and on every new champion) and by restore.
    scored_windows: TumblingWindows[ScoredRow]
    labelled_windows: TumblingWindows[Joined]
    recent_labelled: deque[Joined]
    bias_detector: StreamingBiasDetector | None

    def __init__(
        self,
        settings: Settings,
        load_reference: Callable[[str], Reference],
        metrics: MonitorMetrics | None = None,
        reports: ReportWriter | None = None,
        partitions: tuple[int, int] = (1, 1),
    ) -> None:
        self.config = settings.monitor
        self.model_name = settings.model_name
        self.load_reference = load_reference
        self.metrics = metrics or MonitorMetrics()
        self.reports = reports or ReportWriter(settings.reports_dir)
        period = timedelta(days=self.config.window_days) if self.config.window_days else None
        self.period = period
        self.join = PredictionJoin(
            timedelta(hours=self.config.join_ttl_hours), self.config.join_max_pending, partitions
        )
        self.detector = DriftDetector(self.config)
        self.gates = {kind: EpisodeGate(self.config.recovery_windows) for kind in DriftKind}
        # Partitions interleave out of event-time order; windows read these buffers in order.
        self.scored_buffer: EventTimeBuffer[ScoredRow] = EventTimeBuffer(
            self.config.join_max_pending
        )
        self.joined_buffer: EventTimeBuffer[Joined] = EventTimeBuffer(self.config.join_max_pending)
        self.reference: Reference | None = None
        self.counts: Counter[str] = Counter()
        # Records processed by this process (not state: a restart counts from zero). Fixed
        # keys: the metrics thread reads the dict while this one updates it.
        self.processed: dict[str, int] = {PRICES_SCORED: 0, AUCTIONS_SOLD: 0}
        self._reset_windows()
        self.metrics.watch(self)

    # -- state --------------------------------------------------------------------------

    def snapshot(self) -> MonitorState:
        """The live state (not a copy: pickle it before the next record)."""
        return MonitorState(
            version=self.reference.version if self.reference else None,
            join=self.join,
            scored_buffer=self.scored_buffer,
            joined_buffer=self.joined_buffer,
            scored_windows=self.scored_windows,
            labelled_windows=self.labelled_windows,
            recent_labelled=self.recent_labelled,
            bias_detector=self.bias_detector,
            gates=self.gates,
            counts=self.counts,
        )

    def restore(self, state: MonitorState) -> None:
        """Continue from ``state``: its reference is loaded, nothing is reset."""
        self.reference = self.load_reference(state.version) if state.version else None
        self.join = state.join
        self.scored_buffer = state.scored_buffer
        self.joined_buffer = state.joined_buffer
        self.scored_windows = state.scored_windows
        self.labelled_windows = state.labelled_windows
        self.recent_labelled = state.recent_labelled
        self.bias_detector = state.bias_detector
        self.gates = state.gates
        self.counts = state.counts
        if self.reference is not None:
            self._export_reference()
        for kind, gate in self.gates.items():
            self.metrics.alert_active.labels(kind=kind.value).set(1 if gate.active else 0)

    # -- champion changes -------------------------------------------------------------

    def use_version(self, version: str) -> None:
        """Switch the reference (cached per version) and start new episodes."""
        if self.reference is not None and self.reference.version == version:
            return
        self.reference = self.load_reference(version)
        self._reset_windows()
        for gate in self.gates.values():
            gate.reset()
        for kind in DriftKind:
            self.metrics.alert_active.labels(kind=kind.value).set(0)
        self._export_reference()
        log.info("monitoring against %s v%s", self.model_name, version)

    def _export_reference(self) -> None:
        assert self.reference is not None
        version = self.reference.version
        self.metrics.model_info.info({"model_name": self.model_name, "version": version})
        if version.isdigit():
            self.metrics.model_version.set(int(version))
        self.metrics.reference_mape.set(self.reference.mape)

    def _reset_windows(self) -> None:
        self.scored_windows = TumblingWindows(self.config.window_events, self.period)
        self.labelled_windows = TumblingWindows(self.config.performance_window_events, self.period)
        self.recent_labelled = deque(maxlen=self.config.performance_window_events)
        self.bias_detector = None
        if self.reference is not None:
            self.bias_detector = StreamingBiasDetector(
                self._performance_check(), self.config.adwin_delta, self.config.adwin_min_width
            )

    def _performance_check(self) -> PerformanceCheck:
        assert self.reference is not None
        return PerformanceCheck(
            reference_mape=self.reference.mape,
            reference_bias=self.reference.bias,
            mape_tolerance=self.config.mape_tolerance,
            bias_tolerance=self.config.bias_tolerance,
        )

    # -- events -----------------------------------------------------------------------

    def on_scored(self, row: ScoredRow, partition: int = 0) -> list[DriftAlert]:
        self.processed[PRICES_SCORED] += 1
        if self.reference is None:
            self.use_version(row.model_version)
        alerts: list[DriftAlert] = []
        joined = self.join.add_prediction(row.auction_id, row.listed_at, row, partition)
        if joined is not None:
            alerts += self._buffer_joined(joined)
        for _, early in self.scored_buffer.push(row.listed_at, row):
            alerts += self._window_scored(early)
        return self._release(alerts)

    def on_sale(self, row: SaleRow, partition: int = 0) -> list[DriftAlert]:
        self.processed[AUCTIONS_SOLD] += 1
        joined = self.join.add_sale(row.auction_id, row.sold_at, row.price, partition)
        return self._release(self._buffer_joined(joined) if joined is not None else [])

    def _buffer_joined(self, joined: Joined) -> list[DriftAlert]:
        alerts: list[DriftAlert] = []
        for _, early in self.joined_buffer.push(joined.sold_at, joined):
            alerts += self._on_joined(early)
        return alerts

    def _release(self, alerts: list[DriftAlert]) -> list[DriftAlert]:
        """Feed the windows, in event-time order, whatever the watermarks have passed;
        returns ``alerts`` with the alerts this raised appended."""
        for _, row in self.scored_buffer.release(self.join.prediction_watermark.value):
            alerts += self._window_scored(row)
        for _, joined in self.joined_buffer.release(self.join.complete_until):
            alerts += self._on_joined(joined)
        return alerts

    # -- what the metrics read when scraped (monitor.metrics.Watched) -------------------

    def held_events(self) -> Mapping[str, int]:
        """Events held in the state, by part."""
        return {
            "join_predictions": self.join.backlog,
            "join_sales": self.join.waiting_sales,
            "reorder_scored": len(self.scored_buffer),
            "reorder_joined": len(self.joined_buffer),
            "window_scored": self.scored_windows.open_size,
            "window_labelled": self.labelled_windows.open_size,
        }

    def streaming_bias(self) -> float:
        detector = self.bias_detector
        return detector.estimation if detector is not None else 0.0

    def join_outcomes(self) -> Mapping[str, int]:
        return dataclasses.asdict(self.join.counters)

    def _window_scored(self, row: ScoredRow) -> list[DriftAlert]:
        assert self.reference is not None
        if row.model_version != self.reference.version:
            self.counts["other_version"] += 1
            return []
        closed = self.scored_windows.add(row.listed_at, row)
        return self._evaluate_drift(closed) if closed is not None else []

    def _on_joined(self, joined: Joined) -> list[DriftAlert]:
        if self.reference is None or joined.prediction.model_version != self.reference.version:
            self.counts["joined_other_version"] += 1
            return []
        alerts: list[DriftAlert] = []
        self.recent_labelled.append(joined)
        predicted = joined.prediction.predicted_price
        if self.bias_detector is not None and joined.actual > 0:
            breach = self.bias_detector.update((predicted - joined.actual) / joined.actual)
            if breach is not None and self._gate(DriftKind.PERFORMANCE, breached=True):
                alerts.append(self._streaming_performance_alert(breach))
        closed = self.labelled_windows.add(joined.sold_at, joined)
        if closed is not None:
            alerts += self._evaluate_performance(closed)
        return alerts

    # -- window checks ----------------------------------------------------------------

    def _evaluate_drift(self, window: Window[ScoredRow]) -> list[DriftAlert]:
        assert self.reference is not None
        try:
            result = self.detector.run(self.reference.drift, scored_frame(window.rows))
        except Exception:  # one bad window must not stop monitoring
            log.exception("drift check failed for a window of %d events", len(window))
            return []
        self.metrics.windows.labels(kind="drift").inc()
        self._export_drift(result)
        alerts: list[DriftAlert] = []
        share = result.share_drifted
        if share >= self.config.drift_share:
            if self._gate(DriftKind.DATA, breached=True):
                severity = (
                    Severity.CRITICAL if share >= 2 * self.config.drift_share else Severity.WARNING
                )
                alerts.append(self._drift_alert(DriftKind.DATA, severity, window, result))
        else:
            self._gate(DriftKind.DATA, breached=False)
        prediction = result.prediction
        if prediction is not None and prediction.drifted:
            if self._gate(DriftKind.PREDICTION, breached=True):
                alerts.append(
                    self._drift_alert(DriftKind.PREDICTION, Severity.WARNING, window, result)
                )
        else:
            self._gate(DriftKind.PREDICTION, breached=False)
        return alerts

    def _evaluate_performance(self, window: Window[Joined]) -> list[DriftAlert]:
        metrics = labelled_metrics(window.rows)
        self.metrics.windows.labels(kind="performance").inc()
        self.metrics.window_mape.set(metrics["mape"])
        self.metrics.window_mae.set(metrics["mae"])
        self.metrics.window_bias.set(metrics["bias"])
        check = self._performance_check()
        breach = check.breach(metrics["mape"], metrics["bias"])
        if breach is None:
            if check.calm(metrics["mape"], metrics["bias"]):
                self._gate(DriftKind.PERFORMANCE, breached=False)
            else:
                self.gates[DriftKind.PERFORMANCE].hold()
            return []
        if not self._gate(DriftKind.PERFORMANCE, breached=True):
            return []
        return [self._performance_alert(breach, window, metrics)]

    def _gate(self, kind: DriftKind, breached: bool) -> bool:
        gate = self.gates[kind]
        if breached:
            fired = gate.breach()
        else:
            if gate.calm():
                log.info("%s drift episode over", kind.value)
            fired = False
        self.metrics.alert_active.labels(kind=kind.value).set(1 if gate.active else 0)
        return fired

    # -- alerts -----------------------------------------------------------------------

    def _base_alert(
        self, kind: DriftKind, severity: Severity, window: Window[Any], detector: str = "window"
    ) -> DriftAlert:
        """An alert whose id follows from its kind, version, window bounds and detector."""
        assert self.reference is not None and window.start and window.end
        return DriftAlert(
            kind=kind,
            severity=severity,
            window_start=window.start,
            window_end=window.end,
            window_size=len(window),
            model_name=self.model_name,
            model_version=self.reference.version,
            reference_mape=self.reference.mape,
            detector=detector,
        )

    def _drift_alert(
        self, kind: DriftKind, severity: Severity, window: Window[Any], result: DriftResult
    ) -> DriftAlert:
        alert = self._base_alert(kind, severity, window)
        if kind is DriftKind.DATA:
            alert.drifted_features = result.drifted
        else:
            assert result.prediction is not None  # a prediction alert needs its drift result
            alert.drifted_features = [result.prediction]
        alert.share_drifted = result.share_drifted
        alert.report_path = self._drift_report(alert, result)
        return self._published(alert)

    def _drift_report(self, alert: DriftAlert, result: DriftResult) -> str | None:
        assert self.reference is not None
        try:
            snapshot = self.detector.snapshot(self.reference.drift, result)
        except Exception:  # a report must never take the monitor down
            log.exception("could not build the drift report of alert %s", alert.alert_id)
            return None
        path = self.reports.path_for(alert.kind, alert.alert_id, alert.detected_at)
        saved = self.reports.save_snapshot(snapshot, path)
        return str(saved) if saved else None

    def _performance_alert(
        self,
        breach: Breach,
        window: Window[Joined],
        metrics: dict[str, float],
        detector: str = "window",
    ) -> DriftAlert:
        assert self.reference is not None
        alert = self._base_alert(DriftKind.PERFORMANCE, breach.severity, window, detector)
        alert.mape = metrics["mape"]
        path = self.reports.path_for(alert.kind, alert.alert_id, alert.detected_at)
        frame = labelled_frame(window.rows)  # only an alert needs the window as a frame
        saved = self.reports.performance(frame, self.reference.frame, path)
        alert.report_path = str(saved) if saved else None
        return self._published(alert, breach.reason)

    def _streaming_performance_alert(self, breach: Breach) -> DriftAlert:
        rows = list(self.recent_labelled)
        window: Window[Joined] = Window()
        for row in rows:
            window.add(row.sold_at, row)
        return self._performance_alert(breach, window, labelled_metrics(rows), detector="adwin")

    def _published(self, alert: DriftAlert, reason: str | None = None) -> DriftAlert:
        self.metrics.alerts.labels(kind=alert.kind.value).inc()
        self.counts[f"alert_{alert.kind.value}"] += 1
        features = ", ".join(f"{f.feature} {f.score:.3f}" for f in alert.drifted_features)
        log.warning(
            "%s drift alert (%s, %s) for v%s: %s",
            alert.kind.value,
            alert.severity.value,
            alert.detector,
            alert.model_version,
            reason or features,
        )
        return alert

    def _export_drift(self, result: DriftResult) -> None:
        for feature in result.features:
            self.metrics.feature_drift.labels(
                feature=feature.feature, stattest=feature.stattest
            ).set(feature.score)
            self.metrics.feature_drifted.labels(feature=feature.feature).set(int(feature.drifted))
        self.metrics.share_drifted.set(result.share_drifted)
        if result.prediction is not None:
            self.metrics.prediction_drift.set(result.prediction.score)
