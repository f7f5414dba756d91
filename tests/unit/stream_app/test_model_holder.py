"""The serving model follows the champion alias only, and falls back to its local cache
while the registry is unreachable."""

from __future__ import annotations

import asyncio
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from stream_app.model import CACHE, REGISTRY, LoadedModel, ModelHolder, single_threaded
from stream_app.model_cache import ModelCache
from tests.unit.stream_app import pipelines


class Registry:
    """A stand-in registry: an alias, versions to load, and an outage switch."""

    def __init__(self, alias: str | None) -> None:
        self.alias = alias
        self.down = False
        self.loads: list[str] = []

    def champion_version(self) -> str | None:
        if self.down:
            raise ConnectionError("registry down")
        return self.alias

    def load(self, version: str) -> LoadedModel:
        if self.down:
            raise ConnectionError("registry down")
        self.loads.append(version)
        return LoadedModel("price", version, {"pipeline": version}, time.time())  # type: ignore[arg-type]  # a test fake in its place


def holder_for(registry: Registry, tmp_path: Path) -> ModelHolder:
    return ModelHolder(registry, cache=ModelCache(tmp_path), model_name="price")


def test_an_update_naming_another_version_loads_the_alias_version_only(tmp_path: Path) -> None:
    registry = Registry(alias="2")
    holder = holder_for(registry, tmp_path)
    assert asyncio.run(holder.refresh("5", why="models.updates"))
    assert holder.current is not None and holder.current.version == "2"
    assert registry.loads == ["2"], "the rejected v5 named by the update is never loaded"


def test_a_worker_started_during_an_outage_serves_its_cached_champion(tmp_path: Path) -> None:
    registry = Registry(alias="3")
    asyncio.run(holder_for(registry, tmp_path).refresh(why="startup"))  # caches v3

    registry.down = True
    holder = holder_for(registry, tmp_path)
    assert asyncio.run(holder.refresh(why="startup"))
    assert holder.current is not None
    assert (holder.current.version, holder.current.source) == ("3", CACHE)
    assert holder.registry_error and "registry down" in holder.registry_error

    registry.down = False  # the registry is back and still names v3: no reload needed
    assert not asyncio.run(holder.refresh(why="alias poll"))
    assert (holder.current.version, holder.current.source) == ("3", REGISTRY)
    assert holder.registry_error is None
    assert registry.loads == ["3"]


def test_the_cache_is_replaced_by_a_newer_champion_once_the_registry_is_back(
    tmp_path: Path,
) -> None:
    registry = Registry(alias="3")
    asyncio.run(holder_for(registry, tmp_path).refresh())
    registry.down = True
    holder = holder_for(registry, tmp_path)
    asyncio.run(holder.refresh())
    registry.down, registry.alias = False, "4"
    assert asyncio.run(holder.refresh())
    assert holder.current is not None
    assert (holder.current.version, holder.current.source) == ("4", REGISTRY)
    assert ModelCache(tmp_path).load("price") == ("4", {"pipeline": "4"})


def test_an_outage_while_serving_keeps_the_model(tmp_path: Path) -> None:
    registry = Registry(alias="1")
    holder = holder_for(registry, tmp_path)
    asyncio.run(holder.refresh())
    registry.down = True
    assert not asyncio.run(holder.refresh())
    assert holder.current is not None and holder.current.source == REGISTRY


def test_without_cache_or_registry_the_worker_waits(tmp_path: Path) -> None:
    registry = Registry(alias="1")
    registry.down = True
    holder = holder_for(registry, tmp_path)
    assert not asyncio.run(holder.refresh())
    assert holder.current is None


@pytest.mark.parametrize("content", [b"", b"not a pickle"])
def test_an_unreadable_cache_is_ignored(tmp_path: Path, content: bytes) -> None:
    cache = ModelCache(tmp_path)
    cache.path("price").write_bytes(content)
    assert cache.load("price") is None


class RealRegistry(Registry):
    """Versions that are real champion pipelines, as MLflow hands them over."""

    def load(self, version: str) -> LoadedModel:
        if self.down:
            raise ConnectionError("registry down")
        self.loads.append(version)
        pipeline = pickle.loads(pickle.dumps(pipelines.fresh()))  # what a load returns: a copy
        single_threaded(pipeline)
        return LoadedModel("price", version, pipeline, time.time())


def test_a_champion_is_compiled_when_loaded_and_when_read_from_the_cache(tmp_path: Path) -> None:
    registry = RealRegistry(alias="3")
    first = holder_for(registry, tmp_path)
    asyncio.run(first.refresh(why="startup"))
    assert first.current is not None and first.current.scorer is not None
    assert first.current.scorer.compiled

    registry.down = True  # a new worker starts during an outage: the cached copy
    holder = holder_for(registry, tmp_path)
    assert asyncio.run(holder.refresh(why="startup"))
    cached = holder.current
    assert cached is not None and cached.source == CACHE
    assert cached.scorer is not None and cached.scorer.compiled
    listings = pipelines.listings(100, seed=6)
    np.testing.assert_array_equal(cached.predict(listings), first.current.predict(listings))

    registry.down = False  # the registry confirms the copy: same scorer, not compiled again
    asyncio.run(holder.refresh())
    assert holder.current is not None and holder.current.source == REGISTRY
    assert holder.current.scorer is cached.scorer
