"""Which failures mean "a dependency is down, wait and retry", and the wait between tries.

An alert is decided only once Redis, MLflow and Kafka have answered. A failure that
:func:`dependency_of` names (a connection refused, a timeout, the registry not
answering, a partial read of the window, the training lease lost) leaves the alert
undecided and uncommitted: the trainer waits with exponential backoff and tries again.
Any other exception is a bug or a bad input and is not retried.

>>> import redis
>>> dependency_of(redis.ConnectionError("Connection refused"))
'redis'
>>> dependency_of(KeyError("x")) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
import requests
from confluent_kafka import KafkaException
from mlflow.exceptions import MlflowException
from tenacity import RetryCallState, wait_exponential_jitter
from tenacity.wait import wait_base

from shell.registry import RegistryUnavailable
from trainer.lease import LeaseLost
from trainer.window import IncompleteRead

REDIS, MLFLOW, KAFKA, LEASE = "redis", "mlflow", "kafka", "lease"

# MLflow wraps a failed HTTP request in an MlflowException; these say the server did
# not answer (as opposed to answering with an error about the request).
_UNREACHABLE_MLFLOW = (
    "Max retries exceeded",
    "Connection refused",
    "Connection aborted",
    "Read timed out",
    "NewConnectionError",
    "RemoteDisconnected",
)


def dependency_of(exc: BaseException) -> str | None:
    """The dependency whose failure ``exc`` is (retry later), or None (do not retry)."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return REDIS
    if isinstance(exc, RegistryUnavailable | requests.ConnectionError | requests.Timeout):
        return MLFLOW
    if isinstance(exc, MlflowException):
        text = str(exc)
        return MLFLOW if any(sign in text for sign in _UNREACHABLE_MLFLOW) else None
    if isinstance(exc, IncompleteRead | KafkaException):
        return KAFKA
    if isinstance(exc, LeaseLost):
        return LEASE
    return None


def backoff(initial_s: float, max_s: float) -> wait_base:
    """Exponential backoff with jitter: ``initial_s``, then doubling, capped at ``max_s``."""
    return wait_exponential_jitter(initial=initial_s, max=max_s, jitter=initial_s)


@dataclass
class Waits:
    """How long an alert has waited for each dependency, and how often it retried."""

    seconds: dict[str, float] = field(default_factory=dict)
    retries: int = 0

    def add(self, dependency: str, seconds: float) -> None:
        self.seconds[dependency] = round(self.seconds.get(dependency, 0.0) + seconds, 1)
        self.retries += 1

    def __bool__(self) -> bool:
        return self.retries > 0


def failed_dependency(state: RetryCallState) -> str:
    """The dependency named by a retry state's last failure ("unknown" if none)."""
    exc = state.outcome.exception() if state.outcome else None
    return (dependency_of(exc) if exc else None) or "unknown"
