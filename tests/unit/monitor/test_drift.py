"""Tests for monitor.drift: per-column Evidently drift of a window against the reference,
and the same scores and verdicts as Evidently's own report."""

from __future__ import annotations

import operator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gavel.features import MONITORED_CATEGORICAL, MONITORED_NUMERIC, TARGET
from gavel.schemas import LISTING_FIELDS, FeatureDrift, Listing
from gavel.settings import MonitorSettings
from monitor import drift
from monitor.drift import (
    MONITORED,
    PREDICTION,
    DriftDetector,
    DriftReference,
    DriftResult,
    monitored_frame,
    monitored_listings,
    parse_value_drift,
)
from producers.sources.scenarios import MixShift
from producers.sources.synthetic import generate_auctions
from tests.unit.monitor.helpers import with_prediction

CATEGORICAL = set(MONITORED_CATEGORICAL)
T_LISTED = datetime(2015, 5, 1, tzinfo=UTC)


def window(*scenarios: Any, n: int = 3000, seed: int = 2) -> pd.DataFrame:
    raw = generate_auctions(
        n, start="2015-03-01", end="2015-05-01", seed=seed, scenarios=list(scenarios)
    )
    return monitored_frame(with_prediction(raw))


@pytest.fixture(scope="module")
def reference(reference_sample: pd.DataFrame) -> DriftReference:
    return DriftReference.from_frame(monitored_frame(reference_sample).drop(columns=[TARGET]))


@pytest.fixture(scope="module")
def detector() -> DriftDetector:
    return DriftDetector(MonitorSettings())


# -- monitored_frame ----------------------------------------------------------------------


def test_monitored_frame_columns_and_normalisation() -> None:
    raw = pd.DataFrame(
        {
            "listed_at": ["2015-03-01T10:00:00+00:00", "2015-03-02T10:00:00+00:00"],
            "year": [2012, "2010"],
            "make": [" Ford ", None],
            "body": ["SUV", "—"],
            "transmission": ["automatic", None],
            "state": ["CA", "tx"],
            "condition": [3.5, None],
            "odometer": [41000, "n/a"],
            "mmr": [12000.0, 9000.0],
            "prediction": [12500.0, "bad"],
            "sellingprice": [11000, 8000],
        },
        index=[10, 20],  # a non-default index must not misalign the price columns
    )
    frame = monitored_frame(raw)
    assert list(frame.columns) == [*MONITORED, PREDICTION, TARGET]
    assert frame["make"].tolist() == ["ford", "unknown"]
    assert frame["body"].tolist() == ["suv", "unknown"]
    assert frame["transmission"].tolist() == ["automatic", "unknown"]
    assert frame["state"].tolist() == ["ca", "tx"]
    assert frame["year"].tolist() == [2012.0, 2010.0]
    assert frame["odometer"].iloc[0] == 41000.0 and np.isnan(frame["odometer"].iloc[1])
    assert np.isnan(frame["condition"].iloc[1])
    assert frame[PREDICTION].iloc[0] == 12500.0 and np.isnan(frame[PREDICTION].iloc[1])
    assert frame[TARGET].tolist() == [11000.0, 8000.0]


def test_monitored_frame_without_prices() -> None:
    raw = generate_auctions(50, seed=3).drop(columns=["sellingprice"])
    assert list(monitored_frame(raw).columns) == list(MONITORED)


# -- DriftDetector ------------------------------------------------------------------------


def test_a_stationary_window_has_no_drift(
    reference: DriftReference, detector: DriftDetector
) -> None:
    result = detector.run(reference, window())
    assert isinstance(result, DriftResult)
    assert [f.feature for f in result.features] == list(MONITORED)
    assert result.drifted == []
    assert result.share_drifted == 0.0
    assert result.prediction is not None
    assert result.prediction.feature == PREDICTION
    assert not result.prediction.drifted
    for feature in result.features:
        assert 0.0 <= feature.score < feature.threshold == 0.1
        expected = "jensenshannon" if feature.feature in CATEGORICAL else "wasserstein"
        assert feature.stattest == expected


def test_a_mix_shift_drifts_age_and_mileage_only(
    reference: DriftReference, detector: DriftDetector
) -> None:
    result = detector.run(reference, window(MixShift("2015-03-01")))
    drifted = {f.feature for f in result.drifted}
    assert {"year", "odometer"} <= drifted
    assert drifted.isdisjoint(MONITORED_CATEGORICAL)
    scores = {f.feature: f.score for f in result.features}
    assert scores["year"] > 0.5 and scores["odometer"] > 0.5
    assert result.share_drifted == len(drifted) / len(MONITORED)
    assert result.share_drifted >= 0.25
    # The MMR (our prediction) follows the older cars' prices down.
    assert result.prediction is not None and result.prediction.drifted


def test_verdicts_follow_the_configured_thresholds(reference: DriftReference) -> None:
    lenient = DriftDetector(
        MonitorSettings(numeric_threshold=5.0, prediction_threshold=5.0, categorical_threshold=0.9)
    )
    result = lenient.run(reference, window(MixShift("2015-03-01")))
    assert result.drifted == []
    assert result.prediction is not None and not result.prediction.drifted
    thresholds = {f.feature: f.threshold for f in result.features}
    assert {thresholds[c] for c in MONITORED_NUMERIC} == {5.0}
    assert {thresholds[c] for c in MONITORED_CATEGORICAL} == {0.9}


def test_large_windows_are_sampled_to_max_window_rows(
    reference: DriftReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real = drift.clean_column

    def spy(column: pd.Series) -> pd.Series:
        sizes.append(len(column))
        return real(column)

    monkeypatch.setattr(drift, "clean_column", spy)
    current = window(n=1000)
    sampled = DriftDetector(MonitorSettings(max_window_rows=300))
    first = sampled.run(reference, current)
    second = sampled.run(reference, current)
    assert sizes == [300] * 2 * (len(MONITORED) + 1)  # every column of both runs
    assert len(first.current) == 300
    assert [f.score for f in first.features] == [f.score for f in second.features]  # seeded
    whole = DriftDetector(MonitorSettings(max_window_rows=5000)).run(reference, current)
    assert sizes[-1] == len(whole.current) == 1000


def test_extra_window_columns_are_ignored(
    reference: DriftReference, detector: DriftDetector
) -> None:
    current = window(n=500).assign(sellingprice=1.0, other="x")
    result = detector.run(reference, current)
    assert [f.feature for f in result.features] == list(MONITORED)


# -- parse_value_drift --------------------------------------------------------------------


def metric(
    column: str, value: float, method: str = "wasserstein", threshold: float = 0.1
) -> dict[str, Any]:
    return {
        "id": f"id-{column}",
        "config": {"column": column, "method": method, "threshold": threshold},
        "value": value,
    }


def test_parse_value_drift_reads_scores_and_verdicts() -> None:
    snapshot = {
        "metrics": [
            metric("year", 0.4),
            metric("odometer", 0.02),
            metric("make", 0.3, "jensenshannon", 0.2),
            metric("state", float("nan"), "jensenshannon"),
            metric("condition", 0.5),
        ],
        "tests": [
            {"metric_config": {"params": {"column": "year"}}, "status": "FAIL"},
            {"metric_config": {"params": {"column": "odometer"}}, "status": "SUCCESS"},
            {"metric_config": {"params": {"column": "make"}}, "status": "TestStatus.FAIL"},
            {"metric_config": {"params": {"column": "state"}}, "status": "FAIL"},
        ],
    }
    results = parse_value_drift(snapshot)
    assert results == {
        "year": FeatureDrift(
            feature="year", score=0.4, threshold=0.1, stattest="wasserstein", drifted=True
        ),
        "odometer": FeatureDrift(
            feature="odometer", score=0.02, threshold=0.1, stattest="wasserstein", drifted=False
        ),
        "make": FeatureDrift(
            feature="make", score=0.3, threshold=0.2, stattest="jensenshannon", drifted=True
        ),
        # No test for the column: Evidently's verdict is unknown, so not drifted.
        "condition": FeatureDrift(
            feature="condition", score=0.5, threshold=0.1, stattest="wasserstein", drifted=False
        ),
    }  # "state" had no finite score and is left out


def test_parse_value_drift_without_tests() -> None:
    results = parse_value_drift({"metrics": [metric("year", 0.9)]})
    assert results["year"].drifted is False
    assert parse_value_drift({"metrics": [], "tests": []}) == {}


def test_parse_value_drift_reads_a_real_snapshot(
    reference: DriftReference, detector: DriftDetector
) -> None:
    result = detector.run(reference, window(MixShift("2015-03-01"), n=1000))
    parsed = parse_value_drift(detector.snapshot(reference, result).dict())
    assert set(parsed) == {*MONITORED, PREDICTION}
    assert parsed["year"].drifted and not parsed["make"].drifted


# -- the same as Evidently's report -----------------------------------------------------


def evidently_verdicts(
    detector: DriftDetector, reference: DriftReference, result: DriftResult
) -> dict[str, FeatureDrift]:
    return parse_value_drift(detector.snapshot(reference, result).dict())


def fast_verdicts(result: DriftResult) -> dict[str, FeatureDrift]:
    features = {f.feature: f for f in result.features}
    return {**features, PREDICTION: result.prediction} if result.prediction else features


def assert_same(got: FeatureDrift, expected: FeatureDrift) -> None:
    assert got.score == pytest.approx(expected.score, rel=1e-12, abs=1e-15), got.feature
    assert got.model_dump(exclude={"score"}) == expected.model_dump(exclude={"score"})


@pytest.mark.parametrize(
    ("name", "scenarios", "n", "settings"),
    [
        ("stationary", [], 2000, {}),
        ("mix shift", [MixShift("2015-03-01")], 2000, {}),
        ("small window", [MixShift("2015-04-01")], 120, {}),
        ("sampled", [MixShift("2015-03-15")], 3000, {"max_window_rows": 700}),
        ("other thresholds", [MixShift("2015-03-01")], 1500, {"numeric_threshold": 0.3,
         "categorical_threshold": 0.02, "prediction_threshold": 0.25}),
        ("other stattests", [MixShift("2015-03-01")], 1500, {"numeric_stattest": "ks",
         "numeric_threshold": 0.05, "categorical_stattest": "psi"}),
    ],
)  # fmt: skip
def test_scores_and_verdicts_are_those_of_evidentlys_report(
    reference: DriftReference, name: str, scenarios: list[Any], n: int, settings: dict[str, Any]
) -> None:
    detector = DriftDetector(MonitorSettings(**settings))
    result = detector.run(reference, window(*scenarios, n=n))
    expected = evidently_verdicts(detector, reference, result)
    got = fast_verdicts(result)
    assert set(got) == set(expected) == {*MONITORED, PREDICTION}
    for column, drift_of in expected.items():
        assert_same(got[column], drift_of)
    if name != "stationary":
        assert any(f.drifted for f in got.values())  # both sides of the verdict are covered


def test_a_window_with_missing_and_infinite_values_scores_as_evidently(
    reference: DriftReference, detector: DriftDetector
) -> None:
    current = window(n=800)
    current.loc[current.index[::3], "condition"] = np.nan
    current.loc[current.index[::7], "mmr"] = np.inf
    current.loc[current.index[::5], PREDICTION] = -np.inf
    result = detector.run(reference, current)
    expected = evidently_verdicts(detector, reference, result)
    assert set(expected) == {*MONITORED, PREDICTION}
    for column, drift_of in expected.items():
        assert_same(fast_verdicts(result)[column], drift_of)


def test_a_window_without_values_in_a_column_fails_as_evidentlys_report_does(
    reference: DriftReference, detector: DriftDetector
) -> None:
    current = window(n=300).assign(condition=np.nan)
    with pytest.raises(ValueError, match="condition"):
        detector.run(reference, current)
    with pytest.raises(ValueError, match="condition"):
        detector.report.run(drift.as_dataset(current[[*MONITORED, PREDICTION]]), reference.dataset)


# -- monitored_listings: a window's frame without derive_features --------------------------

listing_values = operator.attrgetter(*LISTING_FIELDS)


def both_frames(listings: list[Listing], predictions: list[float]) -> tuple[Any, Any]:
    raw = pd.DataFrame([listing.model_dump() for listing in listings]).assign(
        prediction=predictions
    )
    slow = monitored_frame(raw)[[*MONITORED, PREDICTION]]
    return monitored_listings([listing_values(x) for x in listings], predictions), slow


def test_monitored_listings_is_monitored_frame_of_generated_auctions() -> None:
    frame = generate_auctions(3000, seed=4)
    frame.loc[frame.index[::7], "condition"] = np.nan
    frame.loc[frame.index[::5], "body"] = "\u2014"
    frame.loc[frame.index[1::5], "make"] = "  Ford  "
    listings = [
        Listing.model_validate({k: v for k, v in row.items() if v == v})  # NaN: unknown
        for row in frame[list(LISTING_FIELDS)].to_dict("records")
    ]
    fast, slow = both_frames(listings, frame["mmr"].fillna(1.0).tolist())
    assert slow["condition"].isna().any() and (slow["body"] == "unknown").any()  # covered
    pd.testing.assert_frame_equal(fast, slow)


TEXT = st.one_of(
    st.none(),
    st.sampled_from(
        ["", " ", "\u2014", "\u2013", "-", "None", "NULL", " nan ", "unknown", "SUV ", "Ford"]
    ),
    st.text(max_size=12),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "year": st.integers(1950, 2015),
                "make": st.text(min_size=1, max_size=12).filter(str.strip),
                "body": TEXT,
                "transmission": st.sampled_from([None, "automatic", "manual"]),
                "state": st.none() | st.text(min_size=2, max_size=2),
                "condition": st.none() | st.floats(1, 5),
                "odometer": st.none() | st.floats(0, 1_000_000),
                "mmr": st.none() | st.floats(1, 1_000_000),
            }
        ),
        min_size=1,
        max_size=20,
    ),
    st.data(),
)
def test_monitored_listings_is_monitored_frame_of_any_listing(
    fields: list[dict[str, Any]], data: st.DataObject
) -> None:
    listings = []
    for values in fields:
        try:
            listings.append(Listing(auction_id="a", listed_at=T_LISTED, model="m", **values))
        except ValidationError:
            continue
    assume(listings)
    predictions = [data.draw(st.floats(1, 1e6)) for _ in listings]
    fast, slow = both_frames(listings, predictions)
    pd.testing.assert_frame_equal(fast, slow)
