"""Tests for monitor.alerting: one alert per episode."""

from __future__ import annotations

from monitor.alerting import EpisodeGate


def test_one_alert_per_episode() -> None:
    gate = EpisodeGate(recovery_windows=3)
    assert [gate.breach() for _ in range(5)] == [True, False, False, False, False]
    assert gate.active


def test_calm_before_any_breach_does_nothing() -> None:
    gate = EpisodeGate(recovery_windows=1)
    assert [gate.calm() for _ in range(3)] == [False, False, False]
    assert (gate.active, gate.calm_streak) == (False, 0)


def test_episode_ends_after_recovery_windows_calm_windows() -> None:
    gate = EpisodeGate(recovery_windows=3)
    gate.breach()
    assert [gate.calm(), gate.calm()] == [False, False]
    assert gate.active and gate.calm_streak == 2
    assert gate.calm() is True
    assert (gate.active, gate.calm_streak) == (False, 0)
    assert gate.calm() is False  # already over
    assert gate.breach() is True  # a new episode alerts again


def test_a_breach_resets_the_calm_streak() -> None:
    gate = EpisodeGate(recovery_windows=2)
    assert gate.breach()
    assert not gate.calm()
    assert not gate.breach()  # still the same episode, no alert
    assert gate.calm_streak == 0
    assert not gate.calm()  # one calm window since the breach: not over yet
    assert gate.active
    assert gate.calm()
    assert not gate.active


def test_one_recovery_window() -> None:
    gate = EpisodeGate(recovery_windows=1)
    events = [gate.breach(), gate.calm(), gate.breach(), gate.breach(), gate.calm()]
    assert events == [True, True, True, False, True]


def test_reset_ends_the_episode() -> None:
    gate = EpisodeGate(recovery_windows=5)
    gate.breach()
    gate.calm()
    gate.reset()
    assert (gate.active, gate.calm_streak) == (False, 0)
    assert gate.breach() is True  # alerts again after a reset
