"""Tests for monitor.performance: the window check and the streaming bias detector."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gavel.schemas import Severity
from monitor.performance import Breach, PerformanceCheck, StreamingBiasDetector

CHECK = PerformanceCheck(
    reference_mape=0.20, reference_bias=0.05, mape_tolerance=0.25, bias_tolerance=0.04
)


# -- PerformanceCheck ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mape", "bias"),
    [
        (0.20, 0.05),  # the reference itself
        (0.24, 0.05),  # MAPE ratio 1.20 < 1.25
        (0.10, 0.05),  # better than the reference is no breach
        (0.20, 0.09),  # bias shift exactly at the tolerance
        (0.20, 0.011),  # bias shift -0.039
    ],
)
def test_within_tolerance_is_no_breach(mape: float, bias: float) -> None:
    assert CHECK.breach(mape, bias) is None


@pytest.mark.parametrize(
    ("mape", "bias", "severity"),
    [
        (0.26, 0.05, Severity.WARNING),  # MAPE ratio 1.30: 1.2 x the tolerance
        (0.30, 0.05, Severity.WARNING),  # ratio 1.50: exactly 2 x the tolerance
        (0.31, 0.05, Severity.CRITICAL),  # ratio 1.55: 2.2 x
        (0.20, 0.10, Severity.WARNING),  # bias +0.05 over the reference
        (0.20, -0.01, Severity.WARNING),  # bias -0.06: direction does not matter
        (0.20, 0.14, Severity.CRITICAL),  # bias +0.09 > 2 x 0.04
        (0.20, -0.04, Severity.CRITICAL),
        (0.26, 0.14, Severity.CRITICAL),  # the worse of the two decides
    ],
)
def test_breach_and_severity(mape: float, bias: float, severity: Severity) -> None:
    breach = CHECK.breach(mape, bias)
    assert isinstance(breach, Breach)
    assert breach.severity is severity


def test_breach_reason_names_both_measures() -> None:
    breach = CHECK.breach(0.26, 0.10)
    assert breach is not None
    assert breach.reason == "MAPE 26.0% vs reference 20.0%, bias +10.0% vs reference +5.0%"


@pytest.mark.parametrize(
    ("mape", "bias"),
    [(math.nan, 0.05), (0.2, math.nan), (math.inf, 0.05), (0.9, -math.inf), (math.nan, math.nan)],
)
def test_non_finite_measures_are_no_breach(mape: float, bias: float) -> None:
    assert CHECK.breach(mape, bias) is None


def test_a_zero_reference_mape_makes_any_error_critical() -> None:
    perfect = PerformanceCheck(0.0, 0.0, 0.25, 0.04)
    breach = perfect.breach(0.01, 0.0)
    assert breach is not None and breach.severity is Severity.CRITICAL
    assert not perfect.calm(0.01, 0.0)


@pytest.mark.parametrize(
    ("mape", "bias", "calm"),
    [
        (0.20, 0.05, True),
        (0.22, 0.069, True),  # ratio 1.10 <= 1.125, shift 0.019 <= 0.02
        (0.22, 0.031, True),
        (0.10, 0.05, True),
        (0.23, 0.05, False),  # ratio 1.15 > 1.125: no breach, but not calm either
        (0.20, 0.075, False),  # shift 0.025 > 0.02
        (0.20, 0.025, False),
        (math.nan, 0.05, False),
    ],
)
def test_calm_needs_half_the_tolerances(mape: float, bias: float, calm: bool) -> None:
    assert CHECK.calm(mape, bias) is calm


def test_the_band_between_calm_and_breach() -> None:
    assert CHECK.breach(0.23, 0.075) is None
    assert not CHECK.calm(0.23, 0.075)


# -- StreamingBiasDetector ----------------------------------------------------------------

REFERENCE_BIAS = CHECK.reference_bias


def detector(min_width: int = 500) -> StreamingBiasDetector:
    return StreamingBiasDetector(CHECK, delta=0.002, min_width=min_width)


def first_breach(det: StreamingBiasDetector, errors: np.ndarray) -> tuple[int, Breach] | None:
    for index, error in enumerate(errors):
        breach = det.update(float(error))
        if breach is not None:
            return index, breach
    return None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_breach_on_a_stationary_noisy_stream(seed: int) -> None:
    rng = np.random.default_rng(seed)
    det = detector()
    errors = rng.normal(REFERENCE_BIAS, 0.2, 20_000)
    assert first_breach(det, errors) is None
    assert det.adwin.width == 20_000  # ADWIN dropped nothing
    assert det.estimation == pytest.approx(errors.mean(), abs=1e-9)
    assert det.estimation == pytest.approx(REFERENCE_BIAS, abs=0.01)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_bias_shift_breaches_within_a_thousand_sales(seed: int) -> None:
    rng = np.random.default_rng(seed)
    det = detector()
    assert first_breach(det, rng.normal(REFERENCE_BIAS, 0.2, 5_000)) is None
    found = first_breach(det, rng.normal(REFERENCE_BIAS + 0.08, 0.2, 3_000))
    assert found is not None
    index, breach = found
    assert index < 1_000
    assert det.adwin.width < 5_000 + index  # ADWIN dropped the stale part of its window
    assert det.estimation - REFERENCE_BIAS > CHECK.bias_tolerance
    assert breach.severity in {Severity.WARNING, Severity.CRITICAL}
    assert "ADWIN" in breach.reason
    assert f"over the last {int(det.adwin.width)} sales" in breach.reason


def test_a_large_shift_is_critical_and_a_drop_counts_too() -> None:
    rng = np.random.default_rng(5)
    up = detector(min_width=100)
    found = first_breach(up, rng.normal(REFERENCE_BIAS + 0.2, 0.05, 500))
    assert found is not None and found[1].severity is Severity.CRITICAL
    down = detector(min_width=100)
    found = first_breach(down, rng.normal(REFERENCE_BIAS - 0.06, 0.02, 500))
    assert found is not None and found[1].severity is Severity.WARNING


def test_a_breach_needs_min_width_sales() -> None:
    rng = np.random.default_rng(3)
    errors = rng.normal(REFERENCE_BIAS + 0.3, 0.05, 2_000)  # shifted from the start
    found = first_breach(detector(min_width=500), errors)
    assert found is not None
    assert found[0] == 499  # the 500th sale, not before
    assert first_breach(detector(min_width=10_000), errors) is None


def test_non_finite_errors_are_ignored() -> None:
    det = detector(min_width=1)
    for value in (math.nan, math.inf, -math.inf):
        assert det.update(value) is None
    assert det.adwin.width == 0
    assert det.update(REFERENCE_BIAS) is None
    assert det.adwin.width == 1
    assert det.estimation == pytest.approx(REFERENCE_BIAS)
