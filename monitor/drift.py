"""Feature and prediction drift of a window against the champion's reference, with
Evidently's per-column drift tests.

The reference side (an Evidently ``Dataset`` built from the reference sample) is made
once per model version by :class:`monitor.reference.Reference`; a window only builds
its own side. The snapshot of an alerting window is kept to write its HTML report.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import ValueDrift

from gavel.features import MONITORED_CATEGORICAL, MONITORED_NUMERIC, TARGET, derive_features
from gavel.schemas import FeatureDrift
from gavel.settings import MonitorSettings

log = logging.getLogger(__name__)

PREDICTION = "prediction"
MONITORED: tuple[str, ...] = MONITORED_NUMERIC + MONITORED_CATEGORICAL


def monitored_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Normalised monitored features (and prediction/target when present) from raw listings."""
    features = derive_features(raw)[list(MONITORED)]
    for column in MONITORED_CATEGORICAL:
        features[column] = features[column].fillna("unknown").astype(str)
    for column in (PREDICTION, TARGET):
        if column in raw:
            features[column] = pd.to_numeric(raw[column], errors="coerce").to_numpy()
    return features


def data_definition(columns: list[str]) -> DataDefinition:
    numeric = [c for c in columns if c not in MONITORED_CATEGORICAL]
    categorical = [c for c in columns if c in MONITORED_CATEGORICAL]
    return DataDefinition(numerical_columns=numeric, categorical_columns=categorical)


def as_dataset(frame: pd.DataFrame) -> Dataset:
    return Dataset.from_pandas(frame, data_definition=data_definition(list(frame.columns)))


@dataclass
class DriftResult:
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    snapshot: Snapshot | None = field(default=None, repr=False)

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]

    @property
    def share_drifted(self) -> float:
        return len(self.drifted) / len(self.features) if self.features else 0.0


class DriftDetector:
    """Per-column Evidently drift tests with the configured stattests and thresholds."""

    def __init__(self, config: MonitorSettings) -> None:
        self.config = config
        metrics: list[ValueDrift] = [
            ValueDrift(
                column=column,
                method=config.numeric_stattest,
                threshold=config.numeric_threshold,
            )
            for column in MONITORED_NUMERIC
        ]
        metrics += [
            ValueDrift(
                column=column,
                method=config.categorical_stattest,
                threshold=config.categorical_threshold,
            )
            for column in MONITORED_CATEGORICAL
        ]
        metrics.append(
            ValueDrift(
                column=PREDICTION,
                method=config.numeric_stattest,
                threshold=config.prediction_threshold,
            )
        )
        self.report = Report(metrics, include_tests=True)

    def run(self, reference: Dataset, window: pd.DataFrame) -> DriftResult:
        columns = [*MONITORED, PREDICTION]
        current = window[columns]
        if len(current) > self.config.max_window_rows:
            current = current.sample(self.config.max_window_rows, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy/numpy notices on degenerate columns
            snapshot = self.report.run(as_dataset(current), reference)
        results = parse_value_drift(snapshot.dict())
        features = [results[c] for c in MONITORED if c in results]
        return DriftResult(features, results.get(PREDICTION), snapshot)


def parse_value_drift(snapshot: dict[str, Any]) -> dict[str, FeatureDrift]:
    """Per-column score, threshold, method and Evidently's own drift verdict."""
    verdicts = {
        test["metric_config"]["params"]["column"]: str(test["status"]).endswith("FAIL")
        for test in snapshot.get("tests", [])
    }
    results: dict[str, FeatureDrift] = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        column = config["column"]
        score = float(metric["value"])
        if not np.isfinite(score):
            continue
        results[column] = FeatureDrift(
            feature=column,
            score=score,
            threshold=float(config["threshold"]),
            stattest=str(config["method"]),
            drifted=verdicts.get(column, False),
        )
    return results
