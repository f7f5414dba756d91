"""Whether a drift alert should retrain, roll back or be ignored — and why.

>>> from datetime import datetime, UTC
>>> from gavel.schemas import DriftAlert, DriftKind, Severity
>>> from gavel.settings import TrainerSettings
>>> t = datetime(2015, 5, 1, tzinfo=UTC)
>>> alert = DriftAlert(kind=DriftKind.DATA, severity=Severity.WARNING, window_start=t,
...                    window_end=t, window_size=10, model_name="m", model_version="1")
>>> assess(alert, "1", TrainerState(), TrainerSettings(), now=0.0).reason
'data alerts do not retrain (kinds: performance)'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from gavel.schemas import DriftAlert, DriftKind, Severity
from gavel.settings import TrainerSettings

_SEVERITY_RANK = {Severity.WARNING: 1, Severity.CRITICAL: 2}


class Action(StrEnum):
    RETRAIN = "retrain"
    ROLLBACK = "rollback"
    IGNORE = "ignore"


@dataclass(frozen=True)
class AlertDecision:
    action: Action
    reason: str


class PromotionRecord(BaseModel):
    version: str
    previous_version: str | None
    previous_mape: float | None  # the replaced champion's MAPE on the same evaluation rows
    at: float  # wall clock seconds


class TrainerState(BaseModel):
    """What the trainer remembers between alerts (kept in Redis, so restarts keep it)."""

    last_trained_at: float | None = None
    last_data_end: datetime | None = None
    seen_alerts: list[str] = []
    last_promotion: PromotionRecord | None = None

    def remember(self, alert_id: str, keep: int = 500) -> None:
        if alert_id not in self.seen_alerts:
            self.seen_alerts = [*self.seen_alerts, alert_id][-keep:]


def assess(
    alert: DriftAlert,
    champion_version: str | None,
    state: TrainerState,
    config: TrainerSettings,
    now: float,
) -> AlertDecision:
    """The policy, in order: duplicates, stale alerts, rollback, kind, severity, cooldown."""
    if alert.alert_id in state.seen_alerts:
        return AlertDecision(Action.IGNORE, f"duplicate alert {alert.alert_id}")
    if champion_version is None:
        return AlertDecision(Action.IGNORE, "there is no champion to improve on")
    if alert.model_version != champion_version:
        return AlertDecision(
            Action.IGNORE,
            f"late alert: it is about v{alert.model_version}, the champion is now "
            f"v{champion_version}",
        )
    rollback = _rollback_due(alert, state, config, now)
    if rollback is not None:
        return rollback
    if alert.kind not in config.kinds:
        return AlertDecision(
            Action.IGNORE,
            f"{alert.kind.value} alerts do not retrain (kinds: {', '.join(config.kinds)})",
        )
    if _SEVERITY_RANK[alert.severity] < _SEVERITY_RANK[config.min_severity]:
        return AlertDecision(
            Action.IGNORE, f"severity {alert.severity.value} is below {config.min_severity}"
        )
    if state.last_trained_at is not None and now - state.last_trained_at < config.cooldown_s:
        left = config.cooldown_s - (now - state.last_trained_at)
        return AlertDecision(Action.IGNORE, f"cooldown: {left:.0f}s left after the last training")
    return AlertDecision(Action.RETRAIN, f"{alert.severity.value} {alert.kind.value} drift")


def _rollback_due(
    alert: DriftAlert, state: TrainerState, config: TrainerSettings, now: float
) -> AlertDecision | None:
    promotion = state.last_promotion
    if not (
        config.auto_rollback
        and promotion is not None
        and promotion.previous_version is not None
        and promotion.previous_mape is not None
        and alert.kind is DriftKind.PERFORMANCE
        and alert.model_version == promotion.version
        and alert.mape is not None
        and now - promotion.at <= config.rollback_guard_s
    ):
        return None
    limit = promotion.previous_mape * config.rollback_ratio
    if alert.mape <= limit:
        return None
    return AlertDecision(
        Action.ROLLBACK,
        f"MAPE {alert.mape:.1%} since promoting v{promotion.version} is worse than "
        f"{config.rollback_ratio:g}x the replaced v{promotion.previous_version}'s "
        f"{promotion.previous_mape:.1%}",
    )
