"""The serving model: loaded from the registry in the background, swapped between batches.

The holder keeps one :class:`LoadedModel`; the agent reads ``holder.current`` once per
batch, so a swap can never split a batch between two versions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.pipeline import Pipeline

from gavel import registry
from gavel.features import listings_frame
from gavel.schemas import Listing
from gavel.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    pipeline: Pipeline
    loaded_at: float

    def predict(self, listings: Sequence[Listing]) -> np.ndarray:
        """Prices for a batch, in one native pipeline call."""
        return np.asarray(self.pipeline.predict(listings_frame(listings)), dtype=float)


class ModelSource(Protocol):
    def champion_version(self) -> str | None: ...

    def load(self, version: str) -> LoadedModel: ...


class RegistryModelSource:
    """Reads the champion alias and loads versions from the MLflow registry."""

    def __init__(self, settings: Settings) -> None:
        self.model_name = settings.model_name
        self.client = registry.connect(settings)

    def champion_version(self) -> str | None:
        current = registry.champion(self.client, self.model_name)
        return current.version if current else None

    def load(self, version: str) -> LoadedModel:
        started = time.monotonic()
        pipeline = registry.load_pipeline(f"models:/{self.model_name}/{version}")
        single_threaded(pipeline)
        log.info("loaded %s v%s in %.1fs", self.model_name, version, time.monotonic() - started)
        return LoadedModel(self.model_name, version, pipeline, time.time())


def single_threaded(pipeline: Pipeline) -> None:
    """Predict on one thread: micro-batches are small, and OpenMP threads spinning on
    the second core slow down the worker, the broker and everything else there."""
    for estimator in _estimators(pipeline):
        if "n_jobs" in estimator.get_params(deep=False):
            estimator.set_params(n_jobs=1)


def _estimators(estimator: Any) -> Iterator[Any]:
    yield estimator
    for _, step in getattr(estimator, "steps", []):
        yield from _estimators(step)
    for name in ("regressor", "regressor_"):  # TransformedTargetRegressor
        inner = getattr(estimator, name, None)
        if inner is not None:
            yield from _estimators(inner)


class ModelHolder:
    """The model in service, with background loading of new champions."""

    def __init__(
        self, source: ModelSource, on_swap: Callable[[LoadedModel], None] | None = None
    ) -> None:
        self.source = source
        self.current: LoadedModel | None = None
        self.on_swap = on_swap
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()

    async def wait_ready(self) -> LoadedModel:
        await self._ready.wait()
        assert self.current is not None
        return self.current

    async def refresh(self, version: str | None = None, why: str = "poll") -> bool:
        """Load ``version`` (default: the champion alias) if it is not the one serving.

        Loading runs in a thread; the swap is a single reference assignment.
        Returns True when a new version was swapped in.
        """
        async with self._lock:
            try:
                if version is None:
                    version = await asyncio.to_thread(self.source.champion_version)
                if version is None or (self.current and self.current.version == version):
                    return False
                loaded = await asyncio.to_thread(self.source.load, version)
            except Exception:
                log.exception(
                    "could not load model version %s (%s); keeping the current", version, why
                )
                return False
            previous = self.current.version if self.current else None
            self.current = loaded
            self._ready.set()
            log.info("serving %s v%s (was v%s; trigger: %s)", loaded.name, version, previous, why)
            if self.on_swap:
                self.on_swap(loaded)
            return True
