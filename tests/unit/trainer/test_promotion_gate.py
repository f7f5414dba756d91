"""Tests for trainer.promotion_gate.decide_promotion."""

from __future__ import annotations

import math

import pytest

from trainer.promotion_gate import decide_promotion


def test_no_champion_promotes() -> None:
    decision = decide_promotion(0.3, None)
    assert decision.promote is True
    assert decision.reason == "no champion yet"


@pytest.mark.parametrize("champion", [math.nan, math.inf])
def test_champion_without_finite_mape_counts_as_absent(champion: float) -> None:
    decision = decide_promotion(0.3, champion, margin=0.05)
    assert decision.promote is True
    assert decision.reason == "no champion yet"


@pytest.mark.parametrize("challenger", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("champion", [None, 0.12])
def test_non_finite_challenger_never_promotes(challenger: float, champion: float | None) -> None:
    decision = decide_promotion(challenger, champion)
    assert decision.promote is False
    assert decision.reason == "challenger MAPE is not finite"


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "promote"),
    [
        (0.10, 0.12, 0.05, True),
        (0.113, 0.12, 0.05, True),
        (0.115, 0.12, 0.05, False),
        (0.119, 0.12, 0.05, False),
        (0.13, 0.12, 0.0, False),
        (0.12, 0.12, 0.0, False),  # a tie keeps the champion
        (0.1199, 0.12, 0.0, True),
        (0.05, 0.12, 0.5, True),
        (0.07, 0.12, 0.5, False),
    ],
)
def test_margin(challenger: float, champion: float, margin: float, promote: bool) -> None:
    assert decide_promotion(challenger, champion, margin).promote is promote


def test_reasons_quote_the_numbers() -> None:
    better = decide_promotion(0.10, 0.12, margin=0.05)
    assert better.reason == ("challenger MAPE 10.00% beats champion MAPE 12.00% by more than 5%")
    worse = decide_promotion(0.119, 0.12, margin=0.05)
    assert worse.reason == (
        "challenger MAPE 11.90% is not 5% better than champion MAPE 12.00% (needs < 11.40%)"
    )


def test_default_margin_is_zero() -> None:
    assert decide_promotion(0.1199, 0.12).promote is True
    assert decide_promotion(0.12, 0.12).promote is False
