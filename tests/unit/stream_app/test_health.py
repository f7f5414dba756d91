"""What /health concludes from the worker's facts."""

from __future__ import annotations

from stream_app.health import HealthFacts, assess, outputs_failing


def healthy(**changes: object) -> HealthFacts:
    facts = HealthFacts(model_loaded=True, agent_running=True, last_progress_at=95.0)
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


def test_a_working_worker_is_ok() -> None:
    verdict = assess(healthy(lag=300), now=100.0)
    assert verdict.status == "ok" and verdict.ok and verdict.problems == []


def test_no_model_means_waiting() -> None:
    assert assess(healthy(model_loaded=False), now=100.0).status == "waiting_for_champion"


def test_a_stopped_or_recently_crashed_agent_degrades() -> None:
    assert assess(healthy(agent_running=False), now=100.0).status == "degraded"
    crashed = assess(healthy(last_agent_crash_at=90.0), now=100.0)
    assert crashed.status == "degraded" and "crashed 10s ago" in crashed.problems[0]
    assert assess(healthy(last_agent_crash_at=10.0), now=100.0).ok  # long ago


def test_outputs_failing_until_a_delivery_succeeds_again() -> None:
    failing = healthy(last_output_error_at=99.0, last_output_success_at=98.0)
    assert outputs_failing(failing)
    assert assess(failing, now=100.0).status == "degraded"
    recovered = healthy(last_output_error_at=99.0, last_output_success_at=99.5)
    assert not outputs_failing(recovered) and assess(recovered, now=100.0).ok
    assert outputs_failing(healthy(last_output_error_at=1.0))


def test_lag_without_progress_degrades_only_past_the_threshold() -> None:
    assert assess(healthy(lag=10, last_progress_at=80.0), now=100.0).ok
    stalled = assess(healthy(lag=10, last_progress_at=60.0), now=100.0)
    assert stalled.status == "degraded" and stalled.problems[0].startswith("stalled")
    assert assess(healthy(lag=0, last_progress_at=0.0), now=100.0).ok


def test_a_fatal_output_failure_is_named() -> None:
    verdict = assess(healthy(fatal="broker gone"), now=100.0)
    assert verdict.status == "degraded" and "broker gone" in verdict.problems[0]
