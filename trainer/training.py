"""Fit, evaluate, log and register: the training run shared by `gavel train` and the trainer
service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import mlflow
import pandas as pd
from rich.progress import Progress, TaskID
from sklearn.pipeline import Pipeline
from xgboost.callback import TrainingCallback

from gavel.features import TARGET
from gavel.price_errors import prefixed, price_metrics
from gavel.schemas import LISTING_FIELDS
from gavel.settings import Settings
from shell import registry
from trainer.pipeline import (
    XGB_DEFAULTS,
    FittedModel,
    continue_xgboost,
    fit_baseline,
    fit_xgboost,
)
from trainer.promotion_gate import PromotionDecision, decide_promotion
from trainer.split import TimeSplit

log = logging.getLogger(__name__)

REFERENCE_ROWS = 5000


@dataclass
class TrainingResult:
    run_id: str
    model_name: str
    version: str
    metrics: dict[str, float]
    decision: PromotionDecision
    champion_version: str | None
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.decision.promote


class _BoostingProgress(TrainingCallback):
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress, self.task = progress, task

    def __deepcopy__(self, memo: dict[int, Any]) -> _BoostingProgress:
        return self  # sklearn clones estimators; the progress display must stay shared

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        self.progress.advance(self.task)
        return False


class _Checkpoint(TrainingCallback):
    """Calls ``check`` after every boosting round; whatever it raises aborts the fit."""

    def __init__(self, check: Callable[[], None]) -> None:
        self.check = check

    def __deepcopy__(self, memo: dict[int, Any]) -> _Checkpoint:
        return self  # sklearn clones estimators; the check must stay the caller's

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        self.check()
        return False


def _no_check() -> None:
    return None


@contextmanager
def _stage(progress: Progress | None, description: str, total: float = 1) -> Iterator[TaskID]:
    task = progress.add_task(description, total=total) if progress else TaskID(0)
    yield task
    if progress:
        progress.update(task, completed=total)


def features_and_target(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return frame.loc[:, list(LISTING_FIELDS)], frame[TARGET].astype(float)


def fit_candidates(
    split: TimeSplit,
    progress: Progress | None = None,
    xgb_params: dict[str, Any] | None = None,
    base: Pipeline | None = None,
    checkpoint: Callable[[], None] = _no_check,
) -> tuple[FittedModel, FittedModel]:
    """The XGBoost model and the Ridge baseline, fitted on the split's training part.

    With a ``base`` (the champion's pipeline), its boosting is also continued on the
    training part, and whichever XGBoost does better on the validation part is the model.
    ``checkpoint`` is called between steps and after every boosting round; an exception
    it raises (a lost lease, a stop) aborts the fit.
    """
    x_train, y_train = features_and_target(split.train)
    x_validation, y_validation = features_and_target(split.validation)
    with _stage(progress, "fitting Ridge baseline"):
        baseline = fit_baseline(x_train, y_train)
    rounds = int({**XGB_DEFAULTS, **(xgb_params or {})}["n_estimators"])
    with _stage(progress, "fitting XGBoost (boosting rounds)", total=rounds) as task:
        callbacks: list[TrainingCallback] = [_Checkpoint(checkpoint)]
        if progress:
            callbacks.append(_BoostingProgress(progress, task))
        main = fit_xgboost(x_train, y_train, x_validation, y_validation, xgb_params, callbacks)
    checkpoint()
    if base is not None:
        with _stage(progress, "continuing the champion's boosting"):
            continued = continue_xgboost(base, x_train, y_train, x_validation, y_validation)
        checkpoint()
        if continued is not None:
            main = better_on(split.validation, main, continued)
    return main, baseline


def better_on(frame: pd.DataFrame, *candidates: FittedModel) -> FittedModel:
    """The candidate with the lowest MAPE on ``frame``; ties go to the first."""
    scored = [(evaluate(candidate, frame)[0]["mape"], i) for i, candidate in enumerate(candidates)]
    best = candidates[min(scored)[1]]
    log.info(
        "candidates on validation: %s; keeping %s",
        ", ".join(f"{c.name} {m:.2%}" for c, (m, _) in zip(candidates, scored, strict=True)),
        best.name,
    )
    return best


def evaluate(fitted: FittedModel, frame: pd.DataFrame) -> tuple[dict[str, float], pd.Series]:
    features, target = features_and_target(frame)
    predictions = pd.Series(fitted.pipeline.predict(features), index=frame.index)
    return price_metrics(target, predictions), predictions


def mmr_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """The industry estimate's own error, on the rows that have one."""
    with_mmr = frame.loc[frame["mmr"].notna()]
    return price_metrics(with_mmr[TARGET], with_mmr["mmr"])


def reference_sample(
    frame: pd.DataFrame,
    predictions: pd.Series,
    rows: int = REFERENCE_ROWS,
    seed: int = 0,
    seen: tuple[pd.DataFrame, pd.Series] | None = None,
) -> pd.DataFrame:
    """Listings with the model's predictions and the prices, for drift monitoring.

    ``frame`` holds held-out rows; ``seen`` optionally adds rows the model trained on, up
    to ``rows`` in all, so that a model trained on a few days still gets a reference as
    wide as its training window. Column ``held_out`` tells them apart: the monitor's
    reference MAPE comes from held-out rows only.
    """
    columns = [*LISTING_FIELDS, TARGET]
    reference = frame.loc[:, columns].assign(prediction=predictions, held_out=True)
    if len(reference) > rows:
        reference = reference.sample(rows, random_state=seed)
    if seen is not None and len(reference) < rows:
        seen_frame, seen_predictions = seen
        extra = seen_frame.loc[:, columns].assign(prediction=seen_predictions, held_out=False)
        if len(extra) > rows - len(reference):
            extra = extra.sample(rows - len(reference), random_state=seed)
        reference = pd.concat([reference, extra])
    return reference.sort_values("listed_at", kind="stable").reset_index(drop=True)


def champion_metrics_on(
    client: mlflow.MlflowClient,
    model_name: str,
    frame: pd.DataFrame,
    pipeline: Pipeline | None = None,
) -> tuple[str | None, dict[str, float]]:
    """The current champion's metrics on ``frame`` (the same rows as the challenger's).

    ``pipeline`` is the champion's, when the caller already loaded it.
    """
    current = registry.champion(client, model_name, strict=True)  # down is not absent
    if current is None:
        return None, {}
    try:
        pipeline = pipeline or registry.load_pipeline(current.uri)
    except Exception as exc:  # a champion that no longer loads must not block a new one
        log.warning("champion v%s could not be loaded (%s); treating as absent", current, exc)
        return current.version, {}
    features, target = features_and_target(frame)
    return current.version, price_metrics(target, pipeline.predict(features))


def train_and_register(
    split: TimeSplit,
    settings: Settings,
    *,
    source: str,
    margin: float = 0.0,
    run_tags: dict[str, str] | None = None,
    xgb_params: dict[str, Any] | None = None,
    progress: Progress | None = None,
    alert_id: str | None = None,
    base: Pipeline | None = None,
    checkpoint: Callable[[], None] = _no_check,
) -> TrainingResult:
    """Train on ``split``, log everything to MLflow, register a version and gate promotion.

    The challenger is compared with the current champion on the split's test rows. With
    ``base`` (the champion's pipeline, already loaded), continuing its boosting is one
    more candidate (see :func:`fit_candidates`). ``checkpoint`` is called during the fit
    and once more before anything is logged or registered: what it raises aborts the run
    with nothing registered.
    """
    client = registry.connect(settings)
    mlflow.set_experiment(settings.experiment_name)
    main, baseline = fit_candidates(split, progress, xgb_params, base, checkpoint)
    with _stage(progress, "evaluating on the test period"):
        metrics, test_predictions = _test_metrics(main, baseline, split)
        champion_version, champion = champion_metrics_on(
            client, settings.model_name, split.test, base
        )
        metrics |= prefixed(champion, "champion_test")
    decision = decide_promotion(metrics["test_mape"], champion.get("mape"), margin)
    checkpoint()
    with _stage(progress, "logging to MLflow and registering"):
        run_id, version = _log_and_register(
            main, baseline, split, settings, metrics, test_predictions, decision, source, margin,
            run_tags,
        )  # fmt: skip
    try:
        checkpoint()  # the lease may have been lost while logging: then never promote
    except BaseException:
        reason = "abandoned: the training was aborted while it registered"
        registry.mark_rejected(client, settings.model_name, version, reason)
        raise
    if decision.promote:
        registry.promote(client, settings.model_name, version, decision.reason, alert_id)
        champion_version = version
    else:
        registry.mark_rejected(client, settings.model_name, version, decision.reason)
    return TrainingResult(
        run_id=run_id,
        model_name=settings.model_name,
        version=version,
        metrics=metrics,
        decision=decision,
        champion_version=champion_version,
        split=split.describe(),
    )


def _test_metrics(
    main: FittedModel, baseline: FittedModel, split: TimeSplit
) -> tuple[dict[str, float], pd.Series]:
    """The challenger's, the baseline's and MMR's metrics; the challenger's test prices."""
    test_metrics, test_predictions = evaluate(main, split.test)
    validation_metrics, _ = evaluate(main, split.validation)
    baseline_metrics, _ = evaluate(baseline, split.test)
    with_mmr = split.test["mmr"].notna()
    model_on_mmr_rows, _ = evaluate(main, split.test.loc[with_mmr])
    metrics = {
        **prefixed(test_metrics, "test"),
        **prefixed(validation_metrics, "validation"),
        **prefixed(baseline_metrics, "baseline"),
        **prefixed(mmr_metrics(split.test), "test_mmr"),
        "test_mape_on_mmr_rows": model_on_mmr_rows["mape"],
    }
    return metrics, test_predictions


def _log_and_register(
    main: FittedModel,
    baseline: FittedModel,
    split: TimeSplit,
    settings: Settings,
    metrics: dict[str, float],
    test_predictions: pd.Series,
    decision: PromotionDecision,
    source: str,
    margin: float,
    run_tags: dict[str, str] | None,
) -> tuple[str, str]:
    """One MLflow run with the candidates' parameters, the metrics and the monitor's
    reference sample; the model registered as a new version. Returns (run id, version)."""
    description = split.describe()
    with mlflow.start_run(run_name=f"train-until-{split.train_until:%Y-%m-%d}") as run:
        mlflow.set_tags(
            {
                "source": source,
                "decision": decision.reason,
                "model_kind": main.name,
                **(run_tags or {}),
            }
        )
        mlflow.log_params(
            {
                **{f"xgb_{k}": v for k, v in main.params.items()},
                **{f"baseline_{k}": v for k, v in baseline.params.items()},
                "train_until": f"{split.train_until:%Y-%m-%d}",
                "test_until": f"{split.test_until:%Y-%m-%d}",
                "promotion_margin": margin,
                **{k: str(v) for k, v in description.items()},
            }
        )
        mlflow.log_metrics(metrics)
        window = pd.concat([split.train, split.validation])
        seen = (window, evaluate(main, window)[1])
        registry.log_reference_sample(reference_sample(split.test, test_predictions, seen=seen))
        example = features_and_target(split.test.head(5))[0]
        version = registry.log_model_version(
            main.pipeline,
            example,
            settings.model_name,
            tags={
                "test_mape": f"{metrics['test_mape']:.4f}",
                "mmr_mape": f"{metrics['test_mmr_mape']:.4f}",
                "train_until": f"{split.train_until:%Y-%m-%d}",
                "source": source,
            },
        )
        mlflow.set_tag("promoted", str(decision.promote).lower())
    return run.info.run_id, str(version.version)
