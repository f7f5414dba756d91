"""Tests for trainer.alert_decision: the order of `assess` and the trainer's remembered state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gavel.schemas import DriftAlert, DriftKind, Severity
from gavel.settings import TrainerSettings
from trainer.alert_decision import Action, PromotionRecord, TrainerState, assess

T0 = datetime(2015, 5, 1, tzinfo=UTC)
NOW = 100_000.0


def alert(
    kind: DriftKind = DriftKind.PERFORMANCE,
    severity: Severity = Severity.WARNING,
    version: str = "2",
    mape: float | None = 0.2,
    alert_id: str = "a-1",
) -> DriftAlert:
    return DriftAlert(
        alert_id=alert_id,
        kind=kind,
        severity=severity,
        window_start=T0,
        window_end=T0,
        window_size=1000,
        model_name="m",
        model_version=version,
        mape=mape,
    )


def promoted(
    version: str = "2",
    previous_version: str | None = "1",
    previous_mape: float | None = 0.1,
    at: float = NOW - 60,
) -> TrainerState:
    return TrainerState(
        last_trained_at=at,
        last_promotion=PromotionRecord(
            version=version, previous_version=previous_version, previous_mape=previous_mape, at=at
        ),
    )


def config(**changes: object) -> TrainerSettings:
    return TrainerSettings(**{"cooldown_s": 900.0, **changes})


# --- the order of the checks -------------------------------------------------------------


def test_a_duplicate_is_ignored_before_anything_else() -> None:
    # Everything else about it would roll back, but it was handled already.
    state = promoted()
    state.remember("a-1")
    decision = assess(alert(mape=0.9), None, state, config(auto_rollback=True), NOW)
    assert decision.action is Action.IGNORE
    assert decision.reason == "duplicate alert a-1"


def test_without_a_champion_nothing_happens() -> None:
    decision = assess(alert(mape=0.9), None, promoted(), config(auto_rollback=True), NOW)
    assert decision.action is Action.IGNORE
    assert decision.reason == "there is no champion to improve on"


def test_a_late_alert_about_an_older_version_is_ignored() -> None:
    decision = assess(alert(version="1"), "2", TrainerState(), config(), NOW)
    assert decision.action is Action.IGNORE
    assert decision.reason == "late alert: it is about v1, the champion is now v2"


def test_a_late_alert_is_ignored_even_when_it_would_roll_back() -> None:
    state = promoted(version="1", previous_version="0")
    decision = assess(alert(version="1", mape=0.9), "2", state, config(auto_rollback=True), NOW)
    assert decision.action is Action.IGNORE
    assert decision.reason.startswith("late alert")


def test_a_fresh_alert_with_no_history_retrains() -> None:
    decision = assess(alert(), "2", TrainerState(), config(), NOW)
    assert decision.action is Action.RETRAIN
    assert decision.reason == "warning performance drift"


# --- auto-rollback -----------------------------------------------------------------------


def test_rollback_when_the_new_champion_is_much_worse_than_the_one_it_replaced() -> None:
    decision = assess(alert(mape=0.13), "2", promoted(), config(auto_rollback=True), NOW)
    assert decision.action is Action.ROLLBACK
    assert decision.reason == (
        "MAPE 13.0% since promoting v2 is worse than 1.2x the replaced v1's 10.0%"
    )


def test_rollback_precedes_kind_severity_and_cooldown() -> None:
    # Kinds exclude performance, the severity is below the minimum, and we are in cooldown.
    settings = config(
        auto_rollback=True, kinds=["data"], min_severity="critical", cooldown_s=10_000
    )
    decision = assess(alert(severity=Severity.WARNING, mape=0.5), "2", promoted(), settings, NOW)
    assert decision.action is Action.ROLLBACK


def test_no_rollback_when_auto_rollback_is_disabled() -> None:
    state = promoted(at=NOW - 10_000)  # outside the cooldown, so it retrains instead
    decision = assess(alert(mape=0.5), "2", state, config(auto_rollback=False), NOW)
    assert decision.action is Action.RETRAIN


@pytest.mark.parametrize(
    ("mape", "action"),
    [
        (0.119, Action.RETRAIN),
        (0.12, Action.RETRAIN),  # exactly at the limit: not worse
        (0.1201, Action.ROLLBACK),
    ],
)
def test_rollback_ratio(mape: float, action: Action) -> None:
    state = promoted(at=NOW - 1000)
    settings = config(auto_rollback=True, rollback_ratio=1.2, cooldown_s=0, rollback_guard_s=3600)
    assert assess(alert(mape=mape), "2", state, settings, NOW).action is action


@pytest.mark.parametrize(
    ("age_s", "action"),
    [
        (3599.0, Action.ROLLBACK),
        (3600.0, Action.ROLLBACK),  # the guard is inclusive
        (3601.0, Action.RETRAIN),
    ],
)
def test_rollback_only_within_the_guard_after_the_promotion(age_s: float, action: Action) -> None:
    state = promoted(at=NOW - age_s)
    settings = config(auto_rollback=True, rollback_guard_s=3600, cooldown_s=0)
    assert assess(alert(mape=0.5), "2", state, settings, NOW).action is action


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(promoted(previous_mape=None), id="previous-mape-unknown"),
        pytest.param(promoted(previous_version=None), id="no-previous-version"),
        pytest.param(TrainerState(), id="no-promotion-recorded"),
        pytest.param(promoted(version="7"), id="promotion-of-another-version"),
    ],
)
def test_no_rollback_without_a_comparable_previous_champion(state: TrainerState) -> None:
    settings = config(auto_rollback=True, cooldown_s=0)
    decision = assess(alert(mape=0.9), "2", state, settings, NOW)
    assert decision.action is Action.RETRAIN


def test_no_rollback_for_alerts_without_mape_or_of_other_kinds() -> None:
    settings = config(auto_rollback=True, cooldown_s=0, kinds=["performance", "data"])
    no_mape = assess(alert(mape=None), "2", promoted(), settings, NOW)
    data = assess(alert(kind=DriftKind.DATA, mape=0.9), "2", promoted(), settings, NOW)
    assert no_mape.action is Action.RETRAIN
    assert data.action is Action.RETRAIN
    assert data.reason == "warning data drift"


# --- kind, severity, cooldown ------------------------------------------------------------


@pytest.mark.parametrize("kind", [DriftKind.DATA, DriftKind.PREDICTION])
def test_kinds_not_configured_do_not_retrain(kind: DriftKind) -> None:
    decision = assess(alert(kind=kind), "2", TrainerState(), config(), NOW)
    assert decision.action is Action.IGNORE
    assert decision.reason == f"{kind.value} alerts do not retrain (kinds: performance)"


def test_kinds_are_listed_in_the_reason() -> None:
    settings = config(kinds=["performance", "prediction"])
    decision = assess(alert(kind=DriftKind.DATA), "2", TrainerState(), settings, NOW)
    assert decision.reason == "data alerts do not retrain (kinds: performance, prediction)"


def test_the_kind_check_comes_before_the_severity_check() -> None:
    settings = config(min_severity="critical")
    decision = assess(alert(kind=DriftKind.DATA), "2", TrainerState(), settings, NOW)
    assert "do not retrain" in decision.reason


@pytest.mark.parametrize(
    ("severity", "minimum", "action"),
    [
        (Severity.WARNING, "warning", Action.RETRAIN),
        (Severity.CRITICAL, "warning", Action.RETRAIN),
        (Severity.WARNING, "critical", Action.IGNORE),
        (Severity.CRITICAL, "critical", Action.RETRAIN),
    ],
)
def test_min_severity(severity: Severity, minimum: str, action: Action) -> None:
    settings = config(min_severity=minimum)
    decision = assess(alert(severity=severity), "2", TrainerState(), settings, NOW)
    assert decision.action is action
    if action is Action.IGNORE:
        assert decision.reason == "severity warning is below critical"
    else:
        assert decision.reason == f"{severity.value} performance drift"


def test_the_severity_check_comes_before_the_cooldown() -> None:
    state = TrainerState(last_trained_at=NOW - 1)
    decision = assess(alert(), "2", state, config(min_severity="critical"), NOW)
    assert decision.reason.startswith("severity")


def test_cooldown_says_how_long_is_left() -> None:
    state = TrainerState(last_trained_at=NOW - 300)
    decision = assess(alert(), "2", state, config(cooldown_s=900), NOW)
    assert decision.action is Action.IGNORE
    assert decision.reason == "cooldown: 600s left after the last training"


@pytest.mark.parametrize(
    ("since_s", "action"),
    [(0.0, Action.IGNORE), (899.0, Action.IGNORE), (900.0, Action.RETRAIN), (5000, Action.RETRAIN)],
)
def test_cooldown_boundary(since_s: float, action: Action) -> None:
    state = TrainerState(last_trained_at=NOW - since_s)
    assert assess(alert(), "2", state, config(cooldown_s=900), NOW).action is action


def test_zero_cooldown_never_waits() -> None:
    state = TrainerState(last_trained_at=NOW)
    assert assess(alert(), "2", state, config(cooldown_s=0), NOW).action is Action.RETRAIN


def test_a_critical_alert_retrains_with_its_severity_in_the_reason() -> None:
    decision = assess(alert(severity=Severity.CRITICAL), "2", TrainerState(), config(), NOW)
    assert decision.action is Action.RETRAIN
    assert decision.reason == "critical performance drift"


def test_assess_does_not_change_the_state() -> None:
    state = promoted()
    before = state.model_copy(deep=True)
    assess(alert(mape=0.9), "2", state, config(auto_rollback=True), NOW)
    assess(alert(), "2", state, config(), NOW)
    assert state == before


# --- TrainerState --------------------------------------------------------------------------


def test_remember_is_idempotent() -> None:
    state = TrainerState()
    state.remember("a")
    state.remember("b")
    state.remember("a")
    assert state.seen_alerts == ["a", "b"]


def test_remember_keeps_only_the_latest() -> None:
    state = TrainerState()
    for i in range(10):
        state.remember(f"a{i}", keep=3)
    assert state.seen_alerts == ["a7", "a8", "a9"]


def test_remember_caps_at_500_by_default() -> None:
    state = TrainerState()
    for i in range(520):
        state.remember(str(i))
    assert len(state.seen_alerts) == 500
    assert state.seen_alerts[0] == "20" and state.seen_alerts[-1] == "519"


def test_states_do_not_share_the_default_list() -> None:
    first, second = TrainerState(), TrainerState()
    first.remember("a")
    first.seen_alerts.append("b")
    assert second.seen_alerts == []
    assert TrainerState().seen_alerts == []


def test_a_remembered_alert_is_a_duplicate() -> None:
    state = TrainerState()
    state.remember("a-1")
    assert assess(alert(), "2", state, config(), NOW).reason == "duplicate alert a-1"


def test_state_json_round_trip() -> None:
    state = TrainerState(
        last_trained_at=1_700_000_000.25,
        last_data_end=datetime(2015, 3, 1, 12, 30, tzinfo=UTC),
        seen_alerts=["a", "b"],
        last_promotion=PromotionRecord(
            version="3", previous_version="2", previous_mape=0.113, at=1_700_000_001.5
        ),
    )
    restored = TrainerState.model_validate_json(state.model_dump_json())
    assert restored == state
    assert restored.last_data_end == datetime(2015, 3, 1, 12, 30, tzinfo=UTC)
    assert restored.last_data_end.tzinfo is not None


def test_empty_state_json_round_trip() -> None:
    state = TrainerState()
    assert TrainerState.model_validate_json(state.model_dump_json()) == state
    promotion = PromotionRecord(version="1", previous_version=None, previous_mape=None, at=0.0)
    with_first = TrainerState(last_promotion=promotion)
    assert TrainerState.model_validate_json(with_first.model_dump_json()) == with_first
