"""Evidently HTML reports for alerting windows, under ``reports/``."""

from __future__ import annotations

import logging
import warnings
from datetime import datetime
from pathlib import Path

import pandas as pd
from evidently import DataDefinition, Dataset, Regression, Report
from evidently.core.report import Snapshot
from evidently.presets import RegressionPreset

from gavel.features import MONITORED_CATEGORICAL, TARGET
from gavel.schemas import DriftKind
from monitor.drift import PREDICTION

log = logging.getLogger(__name__)


class ReportWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, kind: DriftKind, alert_id: str, at: datetime) -> Path:
        return self.directory / f"{at:%Y%m%dT%H%M%S}-{kind.value}-{alert_id[:8]}.html"

    def save_snapshot(self, snapshot: Snapshot, path: Path) -> Path | None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            snapshot.save_html(str(path))
        except Exception:  # a report must never take the monitor down
            log.exception("could not write report %s", path)
            return None
        return path

    def performance(self, window: pd.DataFrame, reference: pd.DataFrame, path: Path) -> Path | None:
        """Regression quality of the window next to the reference sample."""
        columns = [PREDICTION, TARGET]
        definition = DataDefinition(
            numerical_columns=columns,
            categorical_columns=[c for c in window.columns if c in MONITORED_CATEGORICAL],
            regression=[Regression(target=TARGET, prediction=PREDICTION)],
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                snapshot = Report([RegressionPreset()]).run(
                    Dataset.from_pandas(window, data_definition=definition),
                    Dataset.from_pandas(reference[window.columns], data_definition=definition),
                )
        except Exception:
            log.exception("could not build the performance report")
            return None
        return self.save_snapshot(snapshot, path)
