"""Performance once sale prices arrive: window MAPE, MAE and bias against the reference,
and a streaming river detector for quick reaction between windows.

A window breaches when its MAPE exceeds the reference MAPE by ``mape_tolerance``
(relative) or its bias moves more than ``bias_tolerance`` from the reference bias.
A market shock in one segment shows first in the bias: the model keeps pricing the
segment as before, so it over-prices systematically.

>>> check = PerformanceCheck(reference_mape=0.17, reference_bias=0.0,
...                          mape_tolerance=0.25, bias_tolerance=0.04)
>>> check.breach(mape=0.18, bias=0.01) is None
True
>>> check.breach(mape=0.18, bias=0.07).severity
<Severity.WARNING: 'warning'>
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from river.drift import ADWIN

from gavel.schemas import Severity


@dataclass(frozen=True)
class Breach:
    severity: Severity
    reason: str


@dataclass(frozen=True)
class PerformanceCheck:
    reference_mape: float
    reference_bias: float
    mape_tolerance: float
    bias_tolerance: float

    def breach(self, mape: float, bias: float) -> Breach | None:
        if not (math.isfinite(mape) and math.isfinite(bias)):
            return None
        ratio = mape / self.reference_mape if self.reference_mape > 0 else math.inf
        shift = bias - self.reference_bias
        mape_excess = (ratio - 1.0) / self.mape_tolerance
        bias_excess = abs(shift) / self.bias_tolerance
        worst = max(mape_excess, bias_excess)
        if worst <= 1.0:
            return None
        severity = Severity.CRITICAL if worst > 2.0 else Severity.WARNING
        return Breach(
            severity,
            f"MAPE {mape:.1%} vs reference {self.reference_mape:.1%}, "
            f"bias {bias:+.1%} vs reference {self.reference_bias:+.1%}",
        )

    def calm(self, mape: float, bias: float) -> bool:
        """Back within half the tolerances: the episode may end."""
        ratio = mape / self.reference_mape if self.reference_mape > 0 else math.inf
        return (ratio - 1.0) <= self.mape_tolerance / 2 and abs(
            bias - self.reference_bias
        ) <= self.bias_tolerance / 2


class StreamingBiasDetector:
    """ADWIN over each sale's relative error ((predicted - actual) / actual).

    ADWIN drops the part of its window that no longer matches the recent mean, so its
    estimate follows a shift within a few hundred sales. A breach needs the estimate to
    rest on ``min_width`` sales, which keeps noise from raising alerts.
    """

    def __init__(self, check: PerformanceCheck, delta: float, min_width: int) -> None:
        self.check = check
        self.min_width = min_width
        self.adwin = ADWIN(delta=delta)  # type: ignore[no-untyped-call]  # river: ADWIN is unannotated

    def update(self, relative_error: float) -> Breach | None:
        if not math.isfinite(relative_error):
            return None
        self.adwin.update(relative_error)  # type: ignore[no-untyped-call]  # river: ADWIN is unannotated
        if self.adwin.width < self.min_width:
            return None
        shift = self.adwin.estimation - self.check.reference_bias
        if abs(shift) <= self.check.bias_tolerance:
            return None
        severity = (
            Severity.CRITICAL if abs(shift) > 2 * self.check.bias_tolerance else Severity.WARNING
        )
        return Breach(
            severity,
            f"streaming bias {self.adwin.estimation:+.1%} over the last {int(self.adwin.width)} "
            f"sales vs reference {self.check.reference_bias:+.1%} (ADWIN)",
        )

    @property
    def estimation(self) -> float:
        return float(self.adwin.estimation)
