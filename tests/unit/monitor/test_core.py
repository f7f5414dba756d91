"""Tests for monitor.core.Monitor fed with ScoredPrice and Sale payloads (no Kafka)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from gavel.features import TARGET
from gavel.price_errors import price_metrics
from gavel.schemas import DriftAlert, DriftKind, Severity
from gavel.settings import Settings
from monitor.checkpoint import Checkpoint, decode, encode
from monitor.core import Monitor, labelled_frame
from monitor.drift import MONITORED, PREDICTION, DriftResult
from monitor.records import Skipped, parse_sale, parse_scored
from monitor.reference import Reference, build_reference
from monitor.reports import ReportWriter
from monitor.windows import Window
from producers.sources.scenarios import MixShift
from producers.sources.synthetic import generate_auctions
from tests.unit.monitor.helpers import MODEL_NAME, Event, events, with_prediction

STREAM_START, STREAM_END = "2015-03-01", "2015-05-01"
ONSET = pd.Timestamp("2015-04-01", tz="UTC")
WINDOW_EVENTS, PERFORMANCE_WINDOW_EVENTS = 2000, 1000
NOW = datetime(2030, 1, 1, tzinfo=UTC)  # the clock records are checked against


@dataclass
class Loader:
    """``load_reference`` for the monitor: the same sample for every version, counted."""

    sample: pd.DataFrame
    versions: list[str] = field(default_factory=list)

    def __call__(self, version: str) -> Reference:
        self.versions.append(version)
        return build_reference(MODEL_NAME, version, self.sample, 5000)


def make_monitor(
    reports: Path,
    sample: pd.DataFrame,
    partitions: tuple[int, int] = (1, 1),
    **monitor: Any,
) -> tuple[Monitor, Loader]:
    settings = Settings().replace(
        model_name=MODEL_NAME,
        reports_dir=reports,
        monitor={
            "window_events": WINDOW_EVENTS,
            "performance_window_events": PERFORMANCE_WINDOW_EVENTS,
            **monitor,
        },
    )
    loader = Loader(sample)
    monitor = Monitor(settings, loader, reports=ReportWriter(reports), partitions=partitions)
    record_windows(monitor)
    return monitor, loader


def record_windows(monitor: Monitor) -> None:
    """Log every evaluated window's measures on the monitor (read them with ``history``)."""
    rows: list[dict[str, Any]] = []
    run, evaluate_drift = monitor.detector.run, monitor._evaluate_drift
    evaluate_performance = monitor._evaluate_performance

    def on_run(reference: Any, frame: pd.DataFrame) -> DriftResult:
        result = run(reference, frame)
        rows.append(
            {
                "kind": "drift",
                "share_drifted": result.share_drifted,
                **{f"drift_{f.feature}": f.score for f in result.features},
                "prediction_drift": result.prediction.score if result.prediction else None,
            }
        )
        return result

    def on_drift(window: Window[Any]) -> list[DriftAlert]:
        logged = len(rows)
        alerts = evaluate_drift(window)
        for row in rows[logged:]:
            row["window_end"] = window.end
        return alerts

    def on_performance(window: Window[Any]) -> list[DriftAlert]:
        frame = labelled_frame(window.rows)
        measures = price_metrics(frame[TARGET], frame[PREDICTION])
        rows.append({"kind": "performance", "window_end": window.end, **measures})
        rows[-1]["rows"] = len(window)
        return evaluate_performance(window)

    monitor.detector.run = on_run  # type: ignore[method-assign]  # a test fake in its place
    monitor._evaluate_drift = on_drift  # type: ignore[method-assign]  # a test fake in its place
    monitor._evaluate_performance = on_performance  # type: ignore[method-assign]  # a test fake in its place
    monitor._window_log = rows  # type: ignore[attr-defined]  # attached by the test


def feed(monitor: Monitor, stream: Iterable[Event]) -> list[DriftAlert]:
    """Each event's JSON parsed as the service parses it, then fed to the monitor."""
    alerts: list[DriftAlert] = []
    for event in stream:
        value = orjson.dumps(event.payload)
        if event.topic == "scored":
            scored = parse_scored(value, NOW)
            assert not isinstance(scored, Skipped), scored
            alerts += monitor.on_scored(scored, event.partition)
        else:
            sale = parse_sale(value, NOW)
            assert not isinstance(sale, Skipped), sale
            alerts += monitor.on_sale(sale, event.partition)
    return alerts


def stream_frame(n: int, *scenarios: Any, seed: int = 2) -> pd.DataFrame:
    raw = generate_auctions(
        n, start=STREAM_START, end=STREAM_END, seed=seed, scenarios=list(scenarios)
    )
    return with_prediction(raw)


def of_kind(alerts: list[DriftAlert], kind: DriftKind) -> list[DriftAlert]:
    return [alert for alert in alerts if alert.kind is kind]


def sample_value(monitor: Monitor, name: str, **labels: str) -> float | None:
    return monitor.metrics.registry.get_sample_value(name, labels)


def history(monitor: Monitor, kind: str) -> pd.DataFrame:
    logged = monitor._window_log  # type: ignore[attr-defined]  # attached by the test
    frame = pd.DataFrame(logged, columns=["kind", "window_end"])
    if logged:
        frame = pd.DataFrame(logged)
    return frame[frame["kind"] == kind].reset_index(drop=True)


# -- a stationary market ------------------------------------------------------------------

STATIONARY_ROWS = 12_000


@dataclass
class Run:
    monitor: Monitor
    loader: Loader
    alerts: list[DriftAlert]
    stream: list[Event]
    reports: Path


@pytest.fixture(scope="module")
def stationary(reference_sample: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Run:
    reports = tmp_path_factory.mktemp("stationary") / "reports"
    monitor, loader = make_monitor(reports, reference_sample)
    stream = events(stream_frame(STATIONARY_ROWS))
    return Run(monitor, loader, feed(monitor, stream), stream, reports)


def test_a_stationary_market_raises_no_alert(stationary: Run) -> None:
    monitor = stationary.monitor
    assert stationary.alerts == []
    assert not any(gate.active for gate in monitor.gates.values())
    assert not stationary.reports.exists()  # no alert, no report
    assert stationary.loader.versions == ["1"]  # the first event's version, loaded once
    assert monitor.reference is not None and monitor.reference.version == "1"
    drift, performance = history(monitor, "drift"), history(monitor, "performance")
    # One partition: every listing is released at once, so every drift window closed.
    assert len(drift) == STATIONARY_ROWS // WINDOW_EVENTS
    assert monitor.scored_windows.open_size == len(monitor.scored_buffer) == 0
    assert len(performance) >= STATIONARY_ROWS // PERFORMANCE_WINDOW_EVENTS - 1
    assert (drift["share_drifted"] == 0).all()
    assert (drift["prediction_drift"] < 0.1).all()
    assert (performance["rows"] == PERFORMANCE_WINDOW_EVENTS).all()
    reference_bias = monitor.reference.bias
    assert (abs(performance["bias"] - reference_bias) < monitor.config.bias_tolerance).all()
    assert monitor.counts == {}


def test_every_event_is_accounted_for(stationary: Run) -> None:
    monitor = stationary.monitor
    drift_rows = len(history(monitor, "drift")) * WINDOW_EVENTS
    assert drift_rows + monitor.scored_windows.open_size + len(monitor.scored_buffer) == (
        STATIONARY_ROWS
    )
    performance = history(monitor, "performance")
    labelled = int(performance["rows"].sum()) + monitor.labelled_windows.open_size
    assert labelled + len(monitor.joined_buffer) == monitor.join.counters.joined
    assert monitor.join.counters.joined == STATIONARY_ROWS
    assert monitor.join.backlog == 0 and monitor.join.waiting_sales == 0


def test_metrics_follow_the_stream(stationary: Run) -> None:
    monitor = stationary.monitor
    reference = monitor.reference
    assert reference is not None
    value = sample_value
    assert value(monitor, "gavel_monitor_events_processed_total", source="prices.scored") == (
        STATIONARY_ROWS
    )
    assert value(monitor, "gavel_monitor_events_processed_total", source="auctions.sold") == (
        STATIONARY_ROWS
    )
    drift, performance = history(monitor, "drift"), history(monitor, "performance")
    assert value(monitor, "gavel_monitor_windows_total", kind="drift") == len(drift)
    assert value(monitor, "gavel_monitor_windows_total", kind="performance") == len(performance)
    for kind in DriftKind:
        assert value(monitor, "gavel_monitor_alerts_total", kind=kind.value) == 0
        assert value(monitor, "gavel_monitor_alert_active", kind=kind.value) == 0
    assert value(monitor, "gavel_monitor_reference_mape") == pytest.approx(reference.mape)
    assert value(monitor, "gavel_monitor_model_version") == 1
    assert value(monitor, "gavel_monitor_model_info", model_name=MODEL_NAME, version="1") == 1
    assert value(monitor, "gavel_monitor_join_backlog") == monitor.join.backlog
    joined = value(monitor, "gavel_monitor_join_total", outcome="joined")
    assert joined == monitor.join.counters.joined == STATIONARY_ROWS
    last = performance.iloc[-1]
    assert value(monitor, "gavel_monitor_window_mape") == pytest.approx(last["mape"])
    assert value(monitor, "gavel_monitor_window_bias") == pytest.approx(last["bias"])
    assert value(monitor, "gavel_monitor_window_mae") == pytest.approx(last["mae"])
    assert monitor.bias_detector is not None
    streaming = value(monitor, "gavel_monitor_streaming_bias")
    assert streaming == pytest.approx(monitor.bias_detector.estimation)
    assert streaming == pytest.approx(reference.bias, abs=0.03)
    assert value(monitor, "gavel_monitor_share_drifted") == 0
    year = value(
        monitor, "gavel_monitor_feature_drift_score", feature="year", stattest="wasserstein"
    )
    assert year == pytest.approx(drift.iloc[-1]["drift_year"])
    state = value(
        monitor, "gavel_monitor_feature_drift_score", feature="state", stattest="jensenshannon"
    )
    assert state == pytest.approx(drift.iloc[-1]["drift_state"])
    for feature in MONITORED:
        assert value(monitor, "gavel_monitor_feature_drifted", feature=feature) == 0
    assert value(monitor, "gavel_monitor_prediction_drift_score") == pytest.approx(
        drift.iloc[-1]["prediction_drift"]
    )


# -- a market shock -----------------------------------------------------------------------


def test_a_market_shock_raises_one_performance_alert(
    reference_sample: pd.DataFrame, tmp_path: Path
) -> None:
    frame = stream_frame(12_000)
    shocked = (frame["body"] == "SUV") & (frame["listed_at"] >= ONSET)
    assert 0.2 < shocked.sum() / (frame["listed_at"] >= ONSET).sum() < 0.35
    frame.loc[shocked, "sellingprice"] *= 0.75
    monitor, _ = make_monitor(tmp_path / "reports", reference_sample)
    alerts = feed(monitor, events(frame))

    assert len(alerts) == 1, [(a.kind, a.detector, a.window_end) for a in alerts]
    (alert,) = alerts
    assert alert.kind is DriftKind.PERFORMANCE
    assert alert.window_end > ONSET
    assert alert.window_start <= alert.window_end
    assert alert.window_size == PERFORMANCE_WINDOW_EVENTS
    assert alert.severity in {Severity.WARNING, Severity.CRITICAL}
    assert (alert.model_name, alert.model_version) == (MODEL_NAME, "1")
    assert monitor.reference is not None
    assert alert.reference_mape == pytest.approx(monitor.reference.mape)
    assert alert.mape is not None and alert.mape > monitor.reference.mape
    assert alert.drifted_features == []
    assert alert.report_path is not None
    report = Path(alert.report_path)
    assert report.is_file() and report.parent == tmp_path / "reports"
    assert alert.alert_id[:8] in report.name and "performance" in report.name
    assert "<html" in report.read_text(encoding="utf-8")[:500].lower()
    # The shock goes on: the episode stays open, and it raised exactly that one alert.
    performance = history(monitor, "performance")
    after = performance[performance["window_end"] > alert.window_end]
    assert len(after) >= 3
    assert (after["bias"] - monitor.reference.bias > monitor.config.bias_tolerance).all()
    assert monitor.gates[DriftKind.PERFORMANCE].active
    assert sample_value(monitor, "gavel_monitor_alert_active", kind="performance") == 1
    assert sample_value(monitor, "gavel_monitor_alerts_total", kind="performance") == 1
    assert sample_value(monitor, "gavel_monitor_alerts_total", kind="data") == 0
    before = performance[performance["window_end"] < ONSET]
    assert len(before) >= 3
    assert (abs(before["bias"] - monitor.reference.bias) < monitor.config.bias_tolerance).all()


# -- a mix shift ----------------------------------------------------------------------------


def test_a_mix_shift_raises_one_data_alert_naming_age_and_mileage(
    reference_sample: pd.DataFrame, tmp_path: Path
) -> None:
    monitor, _ = make_monitor(tmp_path / "reports", reference_sample)
    alerts = feed(monitor, events(stream_frame(12_000, MixShift(ONSET))))

    data = of_kind(alerts, DriftKind.DATA)
    assert len(data) == 1
    (alert,) = data
    named = {feature.feature for feature in alert.drifted_features}
    assert {"year", "odometer"} <= named
    assert named.isdisjoint({"make", "body", "state", "transmission"})
    assert all(feature.drifted for feature in alert.drifted_features)
    assert alert.share_drifted == len(named) / len(MONITORED)
    assert alert.severity is (Severity.CRITICAL if alert.share_drifted >= 0.5 else Severity.WARNING)
    assert alert.window_end > ONSET
    assert alert.window_size == WINDOW_EVENTS
    assert alert.report_path is not None and Path(alert.report_path).is_file()
    assert "-data-" in Path(alert.report_path).name
    # The windows after it drift too, within the same episode.
    drift = history(monitor, "drift")
    after = drift[drift["window_end"] > alert.window_end]
    assert len(after) >= 1 and (after["share_drifted"] >= 0.25).all()
    assert (drift[drift["window_end"] < ONSET]["share_drifted"] == 0).all()
    # The MMR is the prediction here: it follows the older cars down, once.
    assert len(of_kind(alerts, DriftKind.PREDICTION)) == 1
    assert of_kind(alerts, DriftKind.PERFORMANCE) == []
    assert sample_value(monitor, "gavel_monitor_alerts_total", kind="data") == 1
    assert sample_value(monitor, "gavel_monitor_alert_active", kind="data") == 1
    assert sample_value(monitor, "gavel_monitor_feature_drifted", feature="year") == 1
    assert sample_value(monitor, "gavel_monitor_feature_drifted", feature="make") == 0


# -- a new champion -------------------------------------------------------------------------

SWITCH = pd.Timestamp("2015-04-16", tz="UTC")
LAGGING_V1 = 150  # listings after the switch still scored by the old version


def test_a_new_version_resets_gates_and_windows(
    reference_sample: pd.DataFrame, tmp_path: Path
) -> None:
    frame = stream_frame(12_000, MixShift(ONSET))
    late = frame.index[frame["listed_at"] >= SWITCH]
    old = set(frame.loc[frame["listed_at"] < SWITCH, "auction_id"])
    old |= set(frame.loc[late[:LAGGING_V1], "auction_id"])
    stream = events(frame, version=lambda row: "1" if row["auction_id"] in old else "2")
    monitor, loader = make_monitor(tmp_path / "reports", reference_sample)
    before = [event for event in stream if event.at < SWITCH]
    after = [event for event in stream if event.at >= SWITCH]

    first = feed(monitor, before)
    assert [alert.model_version for alert in of_kind(first, DriftKind.DATA)] == ["1"]
    assert monitor.gates[DriftKind.DATA].active
    assert monitor.scored_windows.open_size > 0 and monitor.labelled_windows.open_size > 0
    old_detector = monitor.bias_detector

    monitor.use_version("2")
    assert loader.versions == ["1", "2"]
    assert monitor.reference is not None and monitor.reference.version == "2"
    assert not any(gate.active for gate in monitor.gates.values())
    assert monitor.scored_windows.open_size == monitor.labelled_windows.open_size == 0
    assert len(monitor.recent_labelled) == 0
    assert monitor.bias_detector is not None and monitor.bias_detector is not old_detector
    assert monitor.bias_detector.adwin.width == 0
    for kind in DriftKind:
        assert sample_value(monitor, "gavel_monitor_alert_active", kind=kind.value) == 0
    assert sample_value(monitor, "gavel_monitor_model_version") == 2
    assert sample_value(monitor, "gavel_monitor_model_info", model_name=MODEL_NAME, version="2")
    monitor.use_version("2")  # the same version again changes nothing
    assert loader.versions == ["1", "2"]

    second = feed(monitor, after)
    # The old version's listings and sales are not windowed against the new reference.
    assert monitor.counts["other_version"] == LAGGING_V1
    assert monitor.counts["joined_other_version"] > LAGGING_V1  # plus sales of earlier listings
    data = of_kind(second, DriftKind.DATA)
    assert [alert.model_version for alert in data] == ["2"]  # a new episode, a new alert
    assert data[0].window_start >= SWITCH
    performance = history(monitor, "performance")
    assert not performance.empty
    new_windows = performance[performance["window_end"] > SWITCH]
    assert (new_windows["rows"] == PERFORMANCE_WINDOW_EVENTS).all()
    assert loader.versions == ["1", "2"]


def test_the_first_event_chooses_the_version(
    reference_sample: pd.DataFrame, tmp_path: Path
) -> None:
    monitor, loader = make_monitor(tmp_path, reference_sample)
    assert monitor.reference is None and monitor.bias_detector is None
    stream = events(stream_frame(30), version="7")
    feed(monitor, stream)
    assert loader.versions == ["7"]
    assert sample_value(monitor, "gavel_monitor_model_version") == 7
    assert monitor.reference is not None and monitor.bias_detector is not None
    assert monitor.bias_detector.check.reference_mape == monitor.reference.mape


# -- partitions out of order ----------------------------------------------------------------


def spy_windows(monitor: Monitor) -> tuple[list[Window[Any]], list[Window[Any]]]:
    drift_windows: list[Window[Any]] = []
    performance_windows: list[Window[Any]] = []
    evaluate_drift, evaluate_performance = monitor._evaluate_drift, monitor._evaluate_performance

    def on_drift(window: Window[Any]) -> list[DriftAlert]:
        drift_windows.append(window)
        return evaluate_drift(window)

    def on_performance(window: Window[Any]) -> list[DriftAlert]:
        performance_windows.append(window)
        return evaluate_performance(window)

    monitor._evaluate_drift = on_drift  # type: ignore[method-assign]  # a test fake in its place
    monitor._evaluate_performance = on_performance  # type: ignore[method-assign]  # a test fake in its place
    return drift_windows, performance_windows


def in_order(times: list[datetime]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(times))


def interleave(stream: list[Event], lag: dict[int, timedelta]) -> list[Event]:
    """Arrival order when partition p runs ``lag[p]`` behind: each partition stays in order."""
    return sorted(stream, key=lambda event: event.at + lag.get(event.partition, timedelta(0)))


def test_partitions_out_of_order_still_give_event_time_windows(
    reference_sample: pd.DataFrame, tmp_path: Path
) -> None:
    rows = 6_000
    stream = events(stream_frame(rows), partitions=2)
    arrivals = interleave(stream, {0: timedelta(hours=20)})
    scored_times = [event.at for event in arrivals if event.topic == "scored"]
    assert not in_order(scored_times)  # the consumer really sees them out of order
    monitor, _ = make_monitor(
        tmp_path,
        reference_sample,
        partitions=(2, 2),
        window_events=1000,
        performance_window_events=500,
    )
    drift_windows, performance_windows = spy_windows(monitor)
    feed(monitor, arrivals)

    assert len(drift_windows) >= 4 and len(performance_windows) >= 8
    for windows, key in ((drift_windows, "listed_at"), (performance_windows, "sold_at")):
        for window in windows:
            if key == "listed_at":
                times = [row.listed_at for row in window.rows]
            else:
                times = [row.sold_at for row in window.rows]
            assert in_order(times)
            assert (window.start, window.end) == (times[0], times[-1])
        assert in_order([t for w in windows for t in (w.start, w.end)])
    for kind in ("drift", "performance"):
        ends = history(monitor, kind)["window_end"].tolist()
        assert in_order(ends)
    # Nothing was lost to the lag.
    assert monitor.join.counters.joined == rows
    assert monitor.join.counters.expired_predictions == monitor.join.counters.evicted == 0
    windowed = sum(len(w) for w in drift_windows) + monitor.scored_windows.open_size
    assert windowed + len(monitor.scored_buffer) == rows
    # The lagging partition holds the rest back: what is buffered is after the watermark.
    watermark = monitor.join.prediction_watermark.value
    assert watermark is not None
    assert len(monitor.scored_buffer) > 0
    assert all(time > watermark for time, _, _ in monitor.scored_buffer._heap)


# -- hysteresis of the performance windows --------------------------------------------------

BREACH, CALM, BAND = "breach", "calm", "band"
# Relative errors of the sales in a window, alternating: (MAPE, bias) against a reference
# with MAPE 0.10 and bias 0: a breach (0.20, +0.20), calm (0.10, 0), and the band between
# (0.10, +0.03): no breach, but not within half the bias tolerance either.
PATTERNS = {BREACH: (0.2, 0.2), CALM: (0.1, -0.1), BAND: (0.13, -0.07)}
SMALL_WINDOW = 50


@pytest.fixture(scope="module")
def exact_reference() -> pd.DataFrame:
    raw = generate_auctions(400, start="2015-01-01", end="2015-03-01", seed=5)
    signs = np.where(np.arange(len(raw)) % 2 == 0, 1.0, -1.0)
    return raw.assign(prediction=raw["sellingprice"] * (1 + 0.1 * signs))


def run_windows(
    reference: pd.DataFrame, reports: Path, kinds: list[str]
) -> tuple[Monitor, list[DriftAlert]]:
    rows = SMALL_WINDOW * len(kinds)
    raw = generate_auctions(rows, start="2015-03-01", end="2015-03-20", seed=6)
    errors = [PATTERNS[kind][n % 2] for kind in kinds for n in range(SMALL_WINDOW)]
    frame = raw.assign(prediction=raw["sellingprice"] * (1 + np.asarray(errors)))
    monitor, _ = make_monitor(
        reports,
        reference,
        window_events=100_000,  # no drift windows here
        performance_window_events=SMALL_WINDOW,
        recovery_windows=2,
    )
    stream = events(frame)
    # A listing and a sale well after the rest move both watermarks past every sale.
    last = stream[-1].at + timedelta(days=1)
    tail = events(raw.tail(1).assign(auction_id="tail", listed_at=last, prediction=1.0))
    alerts = feed(monitor, [*stream, *tail])
    assert len(history(monitor, "performance")) == len(kinds)
    return monitor, alerts


def test_window_measures_of_the_patterns(exact_reference: pd.DataFrame, tmp_path: Path) -> None:
    monitor, _ = run_windows(exact_reference, tmp_path, [BREACH, CALM, BAND])
    reference = monitor.reference
    assert reference is not None
    assert (reference.mape, reference.bias) == pytest.approx((0.1, 0.0))
    performance = history(monitor, "performance")
    assert performance["mape"].tolist() == pytest.approx([0.2, 0.1, 0.1])
    assert performance["bias"].tolist() == pytest.approx([0.2, 0.0, 0.03])


@pytest.mark.parametrize(
    ("kinds", "alerting_windows"),
    [
        ([BREACH, BREACH, BREACH], [0]),
        ([BREACH, CALM, CALM, BREACH], [0, 3]),  # two calm windows end the episode
        ([BREACH, CALM, BREACH, CALM, BREACH], [0]),  # a breach resets the calm streak
        ([CALM, BAND, BAND, CALM], []),
    ],
)
def test_performance_alerts_once_per_episode(
    exact_reference: pd.DataFrame, tmp_path: Path, kinds: list[str], alerting_windows: list[int]
) -> None:
    monitor, alerts = run_windows(exact_reference, tmp_path, kinds)
    performance = history(monitor, "performance")
    ends = [performance["window_end"][index] for index in alerting_windows]
    assert [alert.window_end for alert in alerts] == ends
    assert all(alert.detector == "window" for alert in alerts)
    assert all(alert.severity is Severity.CRITICAL for alert in alerts)  # bias +0.2 = 5 x 0.04


def test_a_window_in_the_band_interrupts_the_recovery(
    exact_reference: pd.DataFrame, tmp_path: Path
) -> None:
    _, alerts = run_windows(exact_reference, tmp_path, [BREACH, CALM, BAND, CALM, BREACH])
    assert len(alerts) == 1  # calm, band, calm is not two calm windows in a row


# -- the streaming detector -----------------------------------------------------------------


def test_the_streaming_detector_alerts_before_a_window_closes(
    reference_sample: pd.DataFrame, tmp_path: Path
) -> None:
    frame = stream_frame(1_500)
    frame["prediction"] = frame["mmr"] * 1.5  # over-priced by half from the start
    monitor, _ = make_monitor(
        tmp_path / "reports", reference_sample, adwin_min_width=100, window_events=100_000
    )
    alerts = feed(monitor, events(frame))
    (alert,) = of_kind(alerts, DriftKind.PERFORMANCE)
    assert alert.detector == "adwin"
    assert alert.severity is Severity.CRITICAL
    assert alert.window_size == 100  # the sales ADWIN rested on when it fired
    assert alert.report_path is not None and Path(alert.report_path).is_file()
    assert monitor.bias_detector is not None
    assert monitor.bias_detector.estimation > 0.3
    # The windows that close later breach too, but within the same episode.
    assert len(history(monitor, "performance")) == 1


def test_a_streaming_alert_marks_the_episode_active(
    reference_sample: pd.DataFrame, tmp_path: Path
) -> None:
    frame = stream_frame(600)
    frame["prediction"] = frame["mmr"] * 1.5
    monitor, _ = make_monitor(
        tmp_path / "reports", reference_sample, adwin_min_width=100, window_events=100_000
    )
    alerts = feed(monitor, events(frame))
    assert [alert.detector for alert in of_kind(alerts, DriftKind.PERFORMANCE)] == ["adwin"]
    assert history(monitor, "performance").empty  # no window closed yet
    assert monitor.gates[DriftKind.PERFORMANCE].active
    assert sample_value(monitor, "gavel_monitor_alert_active", kind="performance") == 1


# -- checkpoints ----------------------------------------------------------------------------


def alert_keys(alerts: list[DriftAlert]) -> list[tuple[str, str, datetime, datetime, str]]:
    return [(a.alert_id, a.kind.value, a.window_start, a.window_end, a.detector) for a in alerts]


@pytest.fixture(scope="module")
def shock_stream() -> list[Event]:
    frame = stream_frame(8_000)
    shocked = (frame["body"] == "SUV") & (frame["listed_at"] >= ONSET)
    frame.loc[shocked, "sellingprice"] *= 0.75
    return interleave(events(frame, partitions=2), {0: timedelta(hours=5)})


@pytest.mark.parametrize("crash_at", [0.45, 0.6])
def test_a_restored_checkpoint_gives_the_alerts_of_an_uninterrupted_run(
    reference_sample: pd.DataFrame, tmp_path: Path, shock_stream: list[Event], crash_at: float
) -> None:
    """A monitor restored from a checkpoint, fed the records after it (some of them the
    crashed monitor had already processed), raises the same alerts under the same ids."""
    uninterrupted, _ = make_monitor(tmp_path / "a", reference_sample, partitions=(2, 2))
    expected = feed(uninterrupted, shock_stream)
    assert of_kind(expected, DriftKind.PERFORMANCE), "the shock must be noticed"

    checkpointed = int(len(shock_stream) * (crash_at - 0.1))
    crashed_at = int(len(shock_stream) * crash_at)
    first, _ = make_monitor(tmp_path / "b", reference_sample, partitions=(2, 2))
    before = feed(first, shock_stream[:checkpointed])
    blob = encode(Checkpoint({("t", 0): checkpointed}, first.snapshot()))
    lost = feed(first, shock_stream[checkpointed:crashed_at])  # published, then the crash

    second, loader = make_monitor(tmp_path / "c", reference_sample, partitions=(2, 2))
    restored = decode(blob)
    assert restored is not None and restored.positions == {("t", 0): checkpointed}
    second.restore(restored.state)
    assert loader.versions == ["1"]  # the checkpoint's reference, loaded again
    after = feed(second, shock_stream[checkpointed:])

    assert alert_keys(before + after) == alert_keys(expected)
    assert set(alert_keys(lost)) <= set(alert_keys(after))  # re-announced, same ids
    assert second.join.counters == uninterrupted.join.counters
    assert second.gates == uninterrupted.gates
    performance = sample_value(second, "gavel_monitor_alert_active", kind="performance")
    assert performance == (1 if second.gates[DriftKind.PERFORMANCE].active else 0)


def test_two_runs_on_the_same_records_derive_the_same_alert_ids(
    reference_sample: pd.DataFrame, tmp_path: Path, shock_stream: list[Event]
) -> None:
    one, _ = make_monitor(tmp_path / "a", reference_sample, partitions=(2, 2))
    two, _ = make_monitor(tmp_path / "b", reference_sample, partitions=(2, 2))
    first, second = feed(one, shock_stream), feed(two, shock_stream)
    assert first and alert_keys(first) == alert_keys(second)
    assert len({alert.alert_id for alert in first}) == len(first)
