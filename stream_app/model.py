"""The serving model: loaded from the registry in the background, swapped between batches.

The holder keeps one :class:`LoadedModel`; the agent reads ``holder.current`` once per
batch, so a swap can never split a batch between two versions.

The registry decides what is served: the holder serves only the version the
``champion`` alias names. A ``models.updates`` event is a hint to look now, never an
order to load the version it names. Each champion served is kept in a local
:class:`~stream_app.model_cache.ModelCache`; a worker that starts while the registry is
down serves that copy (``source="cache"``) until the registry answers again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from sklearn.pipeline import Pipeline

from gavel.schemas import Listing
from gavel.settings import Settings
from shell import registry
from stream_app.model_cache import ModelCache
from stream_app.scorer import MarketColumns, Priced, Scorer, compile_scorer

log = logging.getLogger(__name__)

FAST_FAILING_MLFLOW = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


REGISTRY = "registry"
CACHE = "cache"


@dataclass(frozen=True)
class LoadedModel:
    """A version in service: the registry's pipeline and its compiled scorer.

    The scorer is compiled when the model is made (in the loading thread), once per
    version; ``dataclasses.replace`` hands the same scorer on.
    """

    name: str
    version: str
    pipeline: Pipeline
    loaded_at: float
    source: str = REGISTRY  # or CACHE: served from the local copy, registry not confirmed
    scorer: Scorer | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scorer is None:
            scorer = compile_scorer(self.pipeline, f"{self.name} v{self.version}")
            object.__setattr__(self, "scorer", scorer)  # frozen: set once, here

    def predict(
        self, listings: Sequence[Listing], market: MarketColumns | None = None
    ) -> np.ndarray:
        """Prices for a batch, by the compiled scorer (the pipeline's own prices)."""
        return self.price(listings, market).price

    def price(self, listings: Sequence[Listing], market: MarketColumns | None = None) -> Priced:
        """Prices and intervals for a batch and its market features (absent: missing)."""
        assert self.scorer is not None  # set by __post_init__
        return self.scorer.price(listings, market)

    @property
    def market_inputs(self) -> tuple[str, ...]:
        """The market features this version reads (none for a model without market memory)."""
        assert self.scorer is not None
        return self.scorer.market_inputs

    @property
    def interval_level(self) -> float | None:
        table = getattr(dict(getattr(self.pipeline, "steps", [])).get("model"), "intervals_", None)
        return float(table["level"]) if table else None


class ModelSource(Protocol):
    def champion_version(self) -> str | None: ...

    def load(self, version: str) -> LoadedModel: ...


class RegistryModelSource:
    """Reads the champion alias and loads versions from the MLflow registry."""

    def __init__(self, settings: Settings) -> None:
        # MLflow's client retries a request for minutes by default; the worker would sit
        # that long before falling back to its cache. A few quick tries are enough here:
        # the alias poll asks again soon.
        for name, value in FAST_FAILING_MLFLOW.items():
            os.environ.setdefault(name, value)
        self.model_name = settings.model_name
        self.client = registry.connect(settings)

    def champion_version(self) -> str | None:
        """The champion alias's version; None if there is none; raises if unreachable."""
        current = registry.champion(self.client, self.model_name, strict=True)
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
        self,
        source: ModelSource,
        on_swap: Callable[[LoadedModel], None] | None = None,
        cache: ModelCache | None = None,
        model_name: str = "",
    ) -> None:
        self.source = source
        self.current: LoadedModel | None = None
        self.on_swap = on_swap
        self.cache = cache
        self.model_name = model_name
        self.registry_error: str | None = None
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()

    async def wait_ready(self) -> LoadedModel:
        await self._ready.wait()
        assert self.current is not None
        return self.current

    async def refresh(self, hint: str | None = None, why: str = "poll") -> bool:
        """Serve the version the champion alias names, if it is not the one serving.

        ``hint`` (a version announced on ``models.updates``) only says that the alias may
        have moved; what is loaded is always the alias's version. Loading runs in a
        thread; the swap is a single reference assignment. While the registry does not
        answer, a worker with no model yet serves its cached copy. Returns True when a
        new model was swapped in.
        """
        async with self._lock:
            try:
                version = await asyncio.to_thread(self.source.champion_version)
            except Exception as exc:
                self.registry_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("registry unreachable (%s); %s", why, self.registry_error)
                return await self._serve_cached() if self.current is None else False
            self.registry_error = None
            if hint is not None and hint != version:
                log.info("models.updates named v%s, the champion alias names v%s", hint, version)
            if version is None:
                return False
            if self.current and self.current.version == version:
                if self.current.source == CACHE:  # the registry confirms the cached copy
                    self.current = replace(self.current, source=REGISTRY)
                    log.info("the registry confirms the cached v%s", version)
                return False
            try:
                loaded = await asyncio.to_thread(self.source.load, version)
            except Exception:
                log.exception("could not load v%s (%s); keeping the current", version, why)
                return False
            if self.cache is not None:
                await asyncio.to_thread(self._keep, loaded)
            self._swap(loaded, why)
            return True

    async def _serve_cached(self) -> bool:
        if self.cache is None:
            return False
        loaded = await asyncio.to_thread(self._load_cached)  # compiling takes a moment too
        if loaded is None:
            log.warning("no cached model for %s either; waiting for the registry", self.model_name)
            return False
        self._swap(loaded, "registry unreachable: local cache")
        return True

    def _load_cached(self) -> LoadedModel | None:
        assert self.cache is not None
        cached = self.cache.load(self.model_name)
        if cached is None:
            return None
        version, pipeline = cached  # cached after single_threaded, as it was served
        return LoadedModel(self.model_name, version, pipeline, time.time(), source=CACHE)

    def _keep(self, loaded: LoadedModel) -> None:
        assert self.cache is not None
        try:
            self.cache.save(loaded.name, loaded.version, loaded.pipeline)
        except Exception:
            log.exception("could not cache v%s locally", loaded.version)

    def _swap(self, loaded: LoadedModel, why: str) -> None:
        previous = self.current.version if self.current else None
        self.current = loaded
        self._ready.set()
        log.info(
            "serving %s v%s from the %s (was v%s; trigger: %s)",
            loaded.name,
            loaded.version,
            loaded.source,
            previous,
            why,
        )
        if self.on_swap:
            self.on_swap(loaded)
