"""The demo's live narration of typed events."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from gavel.schemas import (
    DriftAlert,
    DriftKind,
    FeatureDrift,
    ModelAction,
    ModelUpdate,
    Severity,
)
from gavel.topics import DRIFT_ALERTS, MODELS_UPDATES
from shell.demo.runner import LiveNarration, Narrator


def test_alerts_and_updates_are_narrated_and_marked() -> None:
    console = Console(record=True, width=200)
    narration = LiveNarration(Narrator(console))
    window = datetime(2015, 5, 1, tzinfo=UTC)
    alert = DriftAlert(
        kind=DriftKind.PERFORMANCE,
        severity=Severity.CRITICAL,
        window_start=window,
        window_end=window,
        window_size=1000,
        model_name="m",
        model_version="1",
        mape=0.31,
        reference_mape=0.17,
        drifted_features=[
            FeatureDrift(feature="body", score=0.3, threshold=0.1, stattest="js", drifted=True)
        ],
    )
    narration(DRIFT_ALERTS, alert)
    update = ModelUpdate(
        action=ModelAction.PROMOTED,
        model_name="m",
        version="2",
        metrics={"test_mape": 0.18, "champion_test_mape": 0.3},
    )
    narration(MODELS_UPDATES, update)
    text = console.export_text()
    assert "performance (critical, window) on v1, window MAPE 31.0%, features: body" in text
    assert "reference MAPE 17.0%" in text
    assert "model promoted: v2 — challenger 18.0% vs champion 30.0%" in text
    assert set(narration.marks) == {"performance alert", "promoted"}
