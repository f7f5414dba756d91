"""Promotion policy: when a challenger may replace the champion.

>>> decide_promotion(challenger_mape=0.10, champion_mape=0.12, margin=0.05).promote
True
>>> decide_promotion(challenger_mape=0.119, champion_mape=0.12, margin=0.05).reason
'challenger MAPE 11.90% is not 5% better than champion MAPE 12.00% (needs < 11.40%)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def decide_promotion(
    challenger_mape: float, champion_mape: float | None, margin: float = 0.0
) -> PromotionDecision:
    """Promote when there is no champion, or the challenger's MAPE beats the champion's
    on the same rows by at least ``margin`` (relative, 0.05 = 5% better)."""
    if not math.isfinite(challenger_mape):
        return PromotionDecision(False, "challenger MAPE is not finite")
    if champion_mape is None or not math.isfinite(champion_mape):
        return PromotionDecision(True, "no champion yet")
    needed = champion_mape * (1.0 - margin)
    if challenger_mape < needed:
        return PromotionDecision(
            True,
            f"challenger MAPE {challenger_mape:.2%} beats champion MAPE {champion_mape:.2%} "
            f"by more than {margin:.0%}",
        )
    return PromotionDecision(
        False,
        f"challenger MAPE {challenger_mape:.2%} is not {margin:.0%} better than champion MAPE "
        f"{champion_mape:.2%} (needs < {needed:.2%})",
    )
