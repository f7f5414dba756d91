"""The MLflow model registry: logging candidates, moving aliases, reading the champion.

The champion is the version with alias ``champion`` (stages are deprecated); the one
it replaced keeps alias ``previous``. Version tags record each promotion, so the
history is visible in the MLflow UI and in ``gavel trainer status``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline

from gavel.schemas import utc_now
from gavel.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous"
REFERENCE_ARTIFACT = "reference/reference.parquet"
MODEL_ARTIFACT = "model"
TAG_PREFIX = "gavel."
PIP_REQUIREMENTS = ["scikit-learn", "xgboost", "pandas", "numpy", "cloudpickle"]


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str
    reference_mape: float | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def connect(settings: Settings) -> MlflowClient:
    """A registry client; MLflow basic-auth credentials come from the settings.

    MLflow reads them from ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` on every request,
    so they are put there (the process's own environment, never a log).
    """
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    password = settings.mlflow_tracking_password
    if settings.mlflow_tracking_username and password is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.mlflow_tracking_username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password.get_secret_value()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def log_model_version(
    pipeline: Pipeline,
    example: pd.DataFrame,
    model_name: str,
    tags: dict[str, str] | None = None,
) -> ModelVersion:
    """Log the pipeline in the active run and register it as a new version."""
    with warnings.catch_warnings(), _quiet("mlflow"):
        warnings.simplefilter("ignore")  # pickle-safety and integer-schema notices
        signature = infer_signature(example, pipeline.predict(example))
        info = mlflow.sklearn.log_model(
            pipeline,
            name=MODEL_ARTIFACT,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            signature=signature,
            pip_requirements=PIP_REQUIREMENTS,  # skips slow requirement inference
            registered_model_name=model_name,
        )
    client = MlflowClient()
    version = client.get_model_version(model_name, str(info.registered_model_version))
    for key, value in (tags or {}).items():
        client.set_model_version_tag(model_name, version.version, TAG_PREFIX + key, value)
    return version


def log_reference_sample(reference: pd.DataFrame) -> None:
    """The monitor's reference: features, predictions and prices of held-out rows."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(REFERENCE_ARTIFACT).name
        reference.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))


class RegistryUnavailable(RuntimeError):
    """The registry did not answer (down, unreachable or failing), so nothing is known."""


# The error codes with which a reachable registry says a model or alias does not exist.
_ABSENT = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def champion(client: MlflowClient, model_name: str, strict: bool = False) -> VersionInfo | None:
    """The version with alias ``champion``; None when there is none.

    With ``strict``, None means the registry answered that there is no champion, and a
    registry that does not answer raises :class:`RegistryUnavailable` (without it, that
    also gives None).
    """
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except Exception as exc:
        if not strict and isinstance(exc, MlflowException):
            return None
        if _absent(exc):
            return None
        if strict:
            raise RegistryUnavailable(f"MLflow registry: {exc}") from exc
        raise
    if not strict:
        return _info(client, version)
    try:
        return _info(client, version)
    except Exception as exc:
        raise RegistryUnavailable(f"MLflow registry: {exc}") from exc


def refused_credentials(exc: BaseException) -> bool:
    """Whether the registry answered that we may not in (HTTP 401 or 403)."""
    if not isinstance(exc, MlflowException):
        return False
    if exc.error_code in {"UNAUTHENTICATED", "PERMISSION_DENIED"}:
        return True
    return any(f"error code {code}" in str(exc) for code in (401, 403))


def _absent(exc: Exception) -> bool:
    """Whether ``exc`` is the registry answering that something does not exist."""
    return isinstance(exc, MlflowException) and exc.error_code in _ABSENT


def _info(client: MlflowClient, version: ModelVersion) -> VersionInfo:
    run = client.get_run(version.run_id) if version.run_id else None
    reference_mape = run.data.metrics.get("test_mape") if run else None
    return VersionInfo(version.name, str(version.version), version.run_id or "", reference_mape)


def version_info(client: MlflowClient, model_name: str, version: str) -> VersionInfo:
    return _info(client, client.get_model_version(model_name, version))


def promote(
    client: MlflowClient,
    model_name: str,
    version: str,
    reason: str,
    alert_id: str | None = None,
) -> str | None:
    """Move ``champion`` to ``version``; the old champion becomes ``previous``.

    Returns the replaced version, if any.
    """
    old = champion(client, model_name, strict=True)
    now = utc_now().isoformat()
    if old is not None and old.version != version:
        client.set_registered_model_alias(model_name, PREVIOUS, old.version)
        _tag(client, model_name, old.version, role="previous", demoted_at=now, replaced_by=version)
    client.set_registered_model_alias(model_name, CHAMPION, version)
    _tag(
        client,
        model_name,
        version,
        role="champion",
        promoted_at=now,
        promotion_reason=reason,
        replaced_version=old.version if old else "none",
        trigger_alert=alert_id or "none",
    )
    log.info("%s v%s is champion (%s)", model_name, version, reason)
    return old.version if old and old.version != version else None


def mark_rejected(client: MlflowClient, model_name: str, version: str, reason: str) -> None:
    _tag(client, model_name, version, role="rejected", rejection_reason=reason)


def _tag(client: MlflowClient, model_name: str, version: str, **tags: Any) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, TAG_PREFIX + key, str(value))


def load_pipeline(model_uri: str) -> Pipeline:
    """The native sklearn pipeline (batch predict on the hot path, no pyfunc wrapper)."""
    return mlflow.sklearn.load_model(model_uri)


def load_reference_sample(client: MlflowClient, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, REFERENCE_ARTIFACT, tmp)
        return pd.read_parquet(path)


def model_versions(client: MlflowClient, model_name: str) -> list[dict[str, Any]]:
    """Every version with its aliases, test MAPE and promotion tags, newest first."""
    try:
        registered = client.get_registered_model(model_name)
    except MlflowException as exc:
        if _absent(exc):
            return []
        raise  # refused or failing: not the same as "no versions"
    aliases: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for version in client.search_model_versions(f"name='{model_name}'"):
        run = client.get_run(version.run_id) if version.run_id else None
        metrics = run.data.metrics if run else {}
        tags = {k.removeprefix(TAG_PREFIX): v for k, v in version.tags.items()}
        rows.append(
            {
                **tags,  # first: the tags test_mape and mmr_mape are text, the metrics win
                "version": str(version.version),
                "aliases": ",".join(sorted(aliases.get(str(version.version), []))),
                "created": pd.Timestamp(version.creation_timestamp, unit="ms", tz="UTC"),
                "test_mape": _number(metrics.get("test_mape", tags.get("test_mape"))),
                "mmr_mape": _number(metrics.get("test_mmr_mape", tags.get("mmr_mape"))),
            }
        )
    return sorted(rows, key=lambda row: int(row["version"]), reverse=True)


def _number(value: Any) -> float | None:
    """A metric as a float, whether MLflow gave a number or a tag's text; None if neither.

    >>> _number("0.1234"), _number(0.5), _number(None), _number("n/a")
    (0.1234, 0.5, None, None)
    """
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class RollbackError(RuntimeError):
    """There is nothing to roll back to."""


def rollback(client: MlflowClient, model_name: str, reason: str) -> tuple[str, str]:
    """Make ``previous`` the champion again; returns (new champion, rolled-back version).

    The rolled-back version keeps alias ``previous``, so a second rollback undoes the first.
    """
    current = champion(client, model_name, strict=True)
    try:
        previous = client.get_model_version_by_alias(model_name, PREVIOUS)
    except Exception as exc:
        if not _absent(exc):
            raise RegistryUnavailable(f"MLflow registry: {exc}") from exc
        raise RollbackError(f"{model_name} has no version with alias '{PREVIOUS}'") from None
    if current is None:
        raise RollbackError(f"{model_name} has no champion")
    restored = str(previous.version)
    client.set_registered_model_alias(model_name, CHAMPION, restored)
    client.set_registered_model_alias(model_name, PREVIOUS, current.version)
    now = utc_now().isoformat()
    _tag(
        client,
        model_name,
        current.version,
        role="rolled_back",
        demoted_at=now,
        rollback_reason=reason,
    )
    _tag(
        client,
        model_name,
        restored,
        role="champion",
        promoted_at=now,
        promotion_reason=f"rollback: {reason}",
    )
    log.info("%s rolled back from v%s to v%s (%s)", model_name, current.version, restored, reason)
    return restored, current.version
