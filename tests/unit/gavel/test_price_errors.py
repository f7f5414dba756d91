"""Tests for gavel.price_errors with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gavel.price_errors import (
    absolute_percentage_errors,
    bias,
    mae,
    mape,
    prefixed,
    price_metrics,
    r2,
)

ACTUAL = [100.0, 200.0]
PREDICTED = [120.0, 220.0]


def test_known_values() -> None:
    assert mape(ACTUAL, PREDICTED) == pytest.approx(0.15)
    assert mae(ACTUAL, PREDICTED) == pytest.approx(20.0)
    assert bias(ACTUAL, PREDICTED) == pytest.approx(0.15)
    # SSE 800, SST 5000.
    assert r2(ACTUAL, PREDICTED) == pytest.approx(0.84)


def test_docstring_example_and_symmetric_bias() -> None:
    assert mape([100.0, 200.0], [110.0, 180.0]) == pytest.approx(0.1)
    assert bias([100.0, 200.0], [110.0, 180.0]) == pytest.approx(0.0)
    assert bias([100.0], [50.0]) == pytest.approx(-0.5)


def test_perfect_predictions() -> None:
    y = np.array([1000.0, 5000.0, 12000.0])
    assert mape(y, y) == 0.0
    assert mae(y, y) == 0.0
    assert r2(y, y) == 1.0


def test_absolute_percentage_errors() -> None:
    errors = absolute_percentage_errors([100.0, 200.0, 50.0], [90.0, 250.0, 50.0])
    np.testing.assert_allclose(errors, [0.1, 0.25, 0.0])


def test_ignores_non_finite_and_non_positive_actuals() -> None:
    actual = [100.0, np.nan, np.inf, 0.0, -5.0, 200.0, 300.0, 400.0]
    predicted = [120.0, 1.0, 1.0, 1.0, 1.0, 220.0, np.nan, -np.inf]
    assert mape(actual, predicted) == pytest.approx(0.15)
    assert mae(actual, predicted) == pytest.approx(20.0)
    assert bias(actual, predicted) == pytest.approx(0.15)
    assert r2(actual, predicted) == pytest.approx(0.84)
    assert price_metrics(actual, predicted)["rows"] == 2.0


@pytest.mark.parametrize("metric", [mape, mae, bias, r2])
@pytest.mark.parametrize(
    ("actual", "predicted"),
    [([], []), ([0.0, -1.0], [1.0, 1.0]), ([np.nan], [1.0]), ([100.0], [np.nan])],
)
def test_nan_when_nothing_to_compare(metric, actual: list[float], predicted: list[float]) -> None:
    assert math.isnan(metric(actual, predicted))


def test_r2_needs_two_rows_and_spread() -> None:
    assert math.isnan(r2([100.0], [100.0]))
    assert math.isnan(r2([100.0, 100.0], [90.0, 110.0]))
    assert r2([100.0, 300.0], [200.0, 200.0]) == pytest.approx(0.0)


def test_price_metrics() -> None:
    metrics = price_metrics([100.0, 200.0, 400.0], [110.0, 200.0, 300.0])
    assert set(metrics) == {"mape", "median_ape", "mae", "r2", "bias", "rows"}
    assert metrics["mape"] == pytest.approx((0.1 + 0.0 + 0.25) / 3)
    assert metrics["median_ape"] == pytest.approx(0.1)
    assert metrics["mae"] == pytest.approx(110.0 / 3)
    assert metrics["bias"] == pytest.approx((0.1 - 0.25) / 3)
    assert metrics["rows"] == 3.0
    assert all(isinstance(value, float) for value in metrics.values())


def test_price_metrics_empty() -> None:
    metrics = price_metrics([], [])
    assert metrics["rows"] == 0.0
    assert all(math.isnan(metrics[name]) for name in ("mape", "median_ape", "mae", "r2", "bias"))


def test_prefixed() -> None:
    assert prefixed({"mape": 0.1, "rows": 3.0}, "test") == {"test_mape": 0.1, "test_rows": 3.0}
    assert prefixed({}, "x") == {}
