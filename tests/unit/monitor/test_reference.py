"""Tests for monitor.reference: reference statistics, built once per model version."""

from __future__ import annotations

import pandas as pd
import pytest

from gavel.features import TARGET
from gavel.price_errors import bias, mape
from gavel.settings import Settings
from monitor.drift import MONITORED, PREDICTION
from monitor.reference import Reference, ReferenceCache, build_reference


def test_build_reference_on_the_whole_sample(reference_sample: pd.DataFrame) -> None:
    reference = build_reference("gavel-price", "3", reference_sample, rows=10_000)
    assert (reference.model_name, reference.version) == ("gavel-price", "3")
    assert reference.rows == len(reference_sample) == 5000
    assert list(reference.frame.columns) == [*MONITORED, PREDICTION, TARGET]
    actual, predicted = reference_sample["sellingprice"], reference_sample["prediction"]
    assert reference.mape == pytest.approx(mape(actual, predicted), rel=1e-12)
    assert reference.bias == pytest.approx(bias(actual, predicted), rel=1e-12)
    assert 0.1 < reference.mape < 0.3  # the MMR as a price model: a sane reference
    # The Evidently side has no target: windows of scored listings have none.
    assert list(reference.drift.dataset.as_dataframe().columns) == [*MONITORED, PREDICTION]
    assert list(reference.drift.columns) == [*MONITORED, PREDICTION]


def test_build_reference_samples_down_to_rows(reference_sample: pd.DataFrame) -> None:
    reference = build_reference("m", "1", reference_sample, rows=400)
    assert reference.rows == 400
    assert len(reference.drift.dataset.as_dataframe()) == 400
    chosen = reference_sample.sample(400, random_state=0)
    assert reference.mape == pytest.approx(mape(chosen["sellingprice"], chosen["prediction"]))
    assert reference.bias == pytest.approx(bias(chosen["sellingprice"], chosen["prediction"]))
    assert reference.frame[TARGET].tolist() == chosen["sellingprice"].tolist()
    whole = mape(reference_sample["sellingprice"], reference_sample["prediction"])
    assert reference.mape != whole  # really a subset
    again = build_reference("m", "1", reference_sample, rows=400)
    assert again.mape == reference.mape  # the sample is seeded


def test_reference_error_comes_from_held_out_rows_only(reference_sample: pd.DataFrame) -> None:
    sample = reference_sample.head(1000).copy()
    sample["held_out"] = [i % 2 == 0 for i in range(len(sample))]
    # In-sample predictions look perfect; they must not flatter the reference MAPE.
    seen = ~sample["held_out"]
    sample.loc[seen, "prediction"] = sample.loc[seen, "sellingprice"]
    reference = build_reference("m", "2", sample, rows=5000)
    held_out = sample[sample["held_out"]]
    assert reference.rows == 1000  # drift is measured against every row
    assert reference.mape == pytest.approx(mape(held_out["sellingprice"], held_out["prediction"]))
    assert reference.bias == pytest.approx(bias(held_out["sellingprice"], held_out["prediction"]))
    assert "held_out" not in reference.frame.columns


def test_reference_repr_leaves_the_frames_out(reference_sample: pd.DataFrame) -> None:
    text = repr(build_reference("m", "7", reference_sample.head(200), rows=5000))
    assert text.startswith("Reference(model_name='m', version='7', mape=")
    assert "DataFrame" not in text and "Dataset" not in text


class CountingLoader:
    def __init__(self, sample: pd.DataFrame) -> None:
        self.sample = sample
        self.calls: list[str] = []

    def __call__(self, version: str) -> pd.DataFrame:
        self.calls.append(version)
        return self.sample


@pytest.fixture
def loader(reference_sample: pd.DataFrame) -> CountingLoader:
    return CountingLoader(reference_sample.head(600))


def settings() -> Settings:
    return Settings().replace(model_name="gavel-test", monitor={"max_window_rows": 250})


def test_cache_loads_each_version_once(loader: CountingLoader) -> None:
    cache = ReferenceCache(settings(), load_sample=loader)
    first = cache.get("1")
    assert isinstance(first, Reference)
    assert (first.model_name, first.version, first.rows) == ("gavel-test", "1", 250)
    assert cache.get("1") is first
    assert cache.get("1") is first
    assert loader.calls == ["1"]
    second = cache.get("2")
    assert second.version == "2" and second is not first
    assert loader.calls == ["1", "2"]


def test_cache_evicts_the_least_recently_used_beyond_capacity(loader: CountingLoader) -> None:
    cache = ReferenceCache(settings(), load_sample=loader, capacity=2)
    one = cache.get("1")
    cache.get("2")
    assert cache.get("1") is one  # "1" is now the most recent
    cache.get("3")  # evicts "2"
    assert len(loader.calls) == 3
    assert cache.get("1") is one
    assert len(loader.calls) == 3
    cache.get("2")  # reloaded, evicting "3"
    assert len(loader.calls) == 4
    cache.get("3")
    assert loader.calls == ["1", "2", "3", "2", "3"]


def test_cache_with_a_loader_needs_no_registry(loader: CountingLoader) -> None:
    cache = ReferenceCache(settings(), load_sample=loader)
    assert cache.champion_version() is None
    assert loader.calls == []
