"""Hysteresis: one alert per drift episode and kind, never a storm.

>>> gate = EpisodeGate(recovery_windows=2)
>>> [gate.breach(), gate.breach(), gate.calm(), gate.calm(), gate.breach()]
[True, False, False, True, True]
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EpisodeGate:
    """Fires on the first breach of an episode; the episode ends after
    ``recovery_windows`` calm windows in a row."""

    recovery_windows: int
    active: bool = False
    calm_streak: int = 0

    def breach(self) -> bool:
        """Record a breach; True when it starts a new episode (alert now)."""
        self.calm_streak = 0
        if self.active:
            return False
        self.active = True
        return True

    def calm(self) -> bool:
        """Record a calm window; True when it ends the episode."""
        if not self.active:
            return False
        self.calm_streak += 1
        if self.calm_streak >= self.recovery_windows:
            self.active = False
            self.calm_streak = 0
            return True
        return False

    def hold(self) -> None:
        """Record a window that is neither a breach nor calm: recovery starts over."""
        self.calm_streak = 0

    def reset(self) -> None:
        self.active = False
        self.calm_streak = 0
