"""What ``GET /health`` says: the worker's condition from the facts it tracks. Pure logic.

The worker is ``ok`` only while it can do its job: a model is loaded, the scoring agent
runs and has not crashed lately, outputs reach the broker, and a lag, if any, is being
worked off. Anything else is ``degraded`` (or ``waiting_for_champion``), with the
problems named, and the HTTP status is 503 so that orchestrators notice.

>>> facts = HealthFacts(model_loaded=True, agent_running=True, lag=0)
>>> assess(facts, now=100.0).status
'ok'
>>> stalled = HealthFacts(model_loaded=True, agent_running=True, lag=500, last_progress_at=10.0)
>>> assess(stalled, now=100.0).problems
['stalled: lag 500 without progress for 90s']
"""

from __future__ import annotations

from dataclasses import dataclass, field

RECENT_CRASH_S = 60.0


@dataclass
class HealthFacts:
    """What the worker knows about itself; times are ``time.monotonic()`` seconds."""

    model_loaded: bool = False
    agent_running: bool = False
    last_agent_crash_at: float | None = None
    last_output_error_at: float | None = None
    last_output_success_at: float | None = None
    fatal: str | None = None
    lag: int = 0
    last_progress_at: float | None = None
    stall_after_s: float = 30.0


@dataclass(frozen=True)
class Health:
    status: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def outputs_failing(facts: HealthFacts) -> bool:
    """Errors since the last confirmed output."""
    if facts.last_output_error_at is None:
        return False
    return (
        facts.last_output_success_at is None
        or facts.last_output_error_at > facts.last_output_success_at
    )


def stalled_for(facts: HealthFacts, now: float) -> float | None:
    """Seconds the worker has had a lag without progress, once past the threshold."""
    if facts.lag <= 0 or facts.last_progress_at is None:
        return None
    idle = now - facts.last_progress_at
    return idle if idle > facts.stall_after_s else None


def assess(facts: HealthFacts, now: float) -> Health:
    problems: list[str] = []
    if facts.fatal is not None:
        problems.append(f"outputs failed: {facts.fatal}")
    if not facts.agent_running:
        problems.append("scoring agent not running")
    if facts.last_agent_crash_at is not None and now - facts.last_agent_crash_at < RECENT_CRASH_S:
        problems.append(f"scoring agent crashed {now - facts.last_agent_crash_at:.0f}s ago")
    if outputs_failing(facts):
        problems.append("outputs failing: no delivery confirmed since the last error")
    idle = stalled_for(facts, now)
    if idle is not None:
        problems.append(f"stalled: lag {facts.lag} without progress for {idle:.0f}s")
    if not facts.model_loaded:
        return Health("waiting_for_champion", problems)
    return Health("degraded" if problems else "ok", problems)
