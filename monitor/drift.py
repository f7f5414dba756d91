"""Feature and prediction drift of a window against the champion's reference, with
Evidently's per-column drift tests.

Every window runs Evidently's registered stattests (the functions its ``ValueDrift``
metric calls, with the configured method and threshold) directly on the window's
columns, cleaned as Evidently cleans them. A whole ``Report`` would also render a
plotly figure per column, which costs forty times the tests themselves; the report is
only built for a window that raises an alert (:meth:`DriftDetector.snapshot`), and
gives the same scores and verdicts (a test checks it).

The reference side (:class:`DriftReference`: the Evidently ``Dataset`` and the cleaned
columns) is made once per model version by :class:`monitor.reference.Reference`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.legacy.calculations.stattests.registry import StatTest, get_registered_stattest
from evidently.legacy.core import ColumnType
from evidently.metrics import ValueDrift

from gavel.features import (
    MISSING_TEXT,
    MONITORED_CATEGORICAL,
    MONITORED_NUMERIC,
    TARGET,
    derive_features,
)
from gavel.schemas import LISTING_FIELDS, FeatureDrift
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


def _category(value: Any) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    return "unknown" if text in MISSING_TEXT else text


def _number(value: Any) -> float:
    return np.nan if value is None else float(value)


_POSITION = {name: LISTING_FIELDS.index(name) for name in MONITORED}


def monitored_listings(
    listings: Sequence[Sequence[Any]], predictions: Sequence[float]
) -> pd.DataFrame:
    """What :func:`monitored_frame` makes of validated listings (tuples of their fields in
    ``LISTING_FIELDS`` order) and their predictions, built column by column.

    A window's frame, once per window: through ``derive_features`` it costs ten times
    more (a test checks both agree).

    >>> from gavel.schemas import Listing
    >>> from datetime import datetime, UTC
    >>> listing = Listing(auction_id="a", listed_at=datetime(2015, 1, 5, tzinfo=UTC),
    ...                   year=2012, make=" Ford ", model="Fusion", body="—")
    >>> row = monitored_listings([tuple(listing.__dict__.values())], [9000.0]).iloc[0]
    >>> row["make"], row["body"], float(row["year"])
    ('ford', 'unknown', 2012.0)
    """
    columns: dict[str, Any] = {}
    for name in MONITORED_NUMERIC:
        at = _POSITION[name]
        columns[name] = np.array([_number(listing[at]) for listing in listings], dtype=float)
    for name in MONITORED_CATEGORICAL:
        at = _POSITION[name]
        columns[name] = np.array([_category(listing[at]) for listing in listings], dtype=object)
    columns[PREDICTION] = np.asarray(predictions, dtype=float)
    return pd.DataFrame(columns)


def data_definition(columns: list[str]) -> DataDefinition:
    numeric = [c for c in columns if c not in MONITORED_CATEGORICAL]
    categorical = [c for c in columns if c in MONITORED_CATEGORICAL]
    return DataDefinition(numerical_columns=numeric, categorical_columns=categorical)


def as_dataset(frame: pd.DataFrame) -> Dataset:
    return Dataset.from_pandas(frame, data_definition=data_definition(list(frame.columns)))


def clean_column(column: pd.Series) -> pd.Series:
    """A column as Evidently's drift tests see it: infinities and missing values dropped."""
    return column.replace([-np.inf, np.inf], np.nan).dropna()


@dataclass(frozen=True)
class DriftReference:
    """The reference side of the drift tests, built once per model version."""

    dataset: Dataset  # for the reports of alerting windows
    columns: Mapping[str, pd.Series]  # each monitored column, cleaned, for the stattests

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> DriftReference:
        """``frame``: the monitored columns and the prediction of the reference sample."""
        dataset = as_dataset(frame)
        return cls(dataset, {name: clean_column(frame[name]) for name in frame.columns})


@dataclass
class DriftResult:
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    current: pd.DataFrame = field(repr=False)  # the (sampled) window the tests ran on

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]

    @property
    def share_drifted(self) -> float:
        return len(self.drifted) / len(self.features) if self.features else 0.0


@dataclass(frozen=True)
class ColumnTest:
    """One column's drift test: an Evidently stattest with its threshold."""

    column: str
    kind: ColumnType
    method: str
    threshold: float
    stattest: StatTest

    @classmethod
    def of(cls, column: str, kind: ColumnType, method: str, threshold: float) -> ColumnTest:
        return cls(column, kind, method, threshold, get_registered_stattest(method, kind))

    def run(self, reference: pd.Series, current: pd.Series) -> FeatureDrift | None:
        """The drift of ``current`` (cleaned) from ``reference``; None for a score that
        is not finite (as :func:`parse_value_drift` leaves it out)."""
        for side, values in (("reference", reference), ("window", current)):
            if values.empty:  # as Evidently: the window cannot be tested
                raise ValueError(f"no value in column {self.column!r} of the {side}")
        if self.kind is ColumnType.Numerical and not pd.api.types.is_numeric_dtype(current):
            raise ValueError(f"column {self.column!r} of the window is not numerical")
        result = self.stattest(reference, current, self.kind, self.threshold)
        score = float(result.drift_score)
        if not np.isfinite(score):
            return None
        return FeatureDrift(
            feature=self.column,
            score=score,
            threshold=self.threshold,
            stattest=self.method,
            drifted=bool(result.drifted),
        )


class DriftDetector:
    """Per-column Evidently drift tests with the configured stattests and thresholds."""

    def __init__(self, config: MonitorSettings) -> None:
        self.config = config
        numeric, categorical = ColumnType.Numerical, ColumnType.Categorical
        self.tests = [
            *(
                ColumnTest.of(c, numeric, config.numeric_stattest, config.numeric_threshold)
                for c in MONITORED_NUMERIC
            ),
            *(
                ColumnTest.of(
                    c, categorical, config.categorical_stattest, config.categorical_threshold
                )
                for c in MONITORED_CATEGORICAL
            ),
            ColumnTest.of(
                PREDICTION, numeric, config.numeric_stattest, config.prediction_threshold
            ),
        ]
        self.report = Report(
            [
                ValueDrift(column=test.column, method=test.method, threshold=test.threshold)
                for test in self.tests
            ],
            include_tests=True,
        )

    def run(self, reference: DriftReference, window: pd.DataFrame) -> DriftResult:
        """Each column's drift; raises ValueError for a window that cannot be tested."""
        current = window[[*MONITORED, PREDICTION]]
        if len(current) > self.config.max_window_rows:
            current = current.sample(self.config.max_window_rows, random_state=0)
        results: dict[str, FeatureDrift] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy/numpy notices on degenerate columns
            for test in self.tests:
                drift = test.run(reference.columns[test.column], clean_column(current[test.column]))
                if drift is not None:
                    results[test.column] = drift
        features = [results[c] for c in MONITORED if c in results]
        return DriftResult(features, results.get(PREDICTION), current)

    def snapshot(self, reference: DriftReference, result: DriftResult) -> Snapshot:
        """Evidently's report of the window behind ``result`` (for its HTML)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.report.run(as_dataset(result.current), reference.dataset)


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
