"""The worker's decisions apart from Faust: scoring a batch, counting outputs, health."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson

from gavel.settings import Settings
from stream_app.app import ScoringWorker, faust_settings
from stream_app.batch import IncomingEvent
from stream_app.model import ModelHolder
from tests.unit.stream_app.test_outputs import FakeProducer


class Broken:
    name, version, source = "broken", "3", "registry"

    def predict(self, listings: Any) -> Any:
        raise MemoryError("no room")


class NoSource:
    def champion_version(self) -> str | None:
        return None

    def load(self, version: str) -> Any:
        raise AssertionError


def worker_with(model: Any) -> ScoringWorker:
    holder = ModelHolder(NoSource())
    holder.current = model
    return ScoringWorker(Settings(), holder=holder, producer=FakeProducer(), on_fatal=print)


def listing(auction_id: str) -> bytes:
    return orjson.dumps(
        {
            "auction_id": auction_id,
            "listed_at": "2015-01-05T10:00:00Z",
            "year": 2012,
            "make": "Ford",
            "model": "Fusion",
        }
    )


def test_a_model_that_fails_on_every_row_dead_letters_each_event_with_a_reason() -> None:
    worker = worker_with(Broken())
    events = [
        IncomingEvent(b"a", listing("a"), "listed", 0, 0),
        IncomingEvent(None, b"{", "l", 0, 1),
    ]
    result = worker.score(events)
    assert result.scored == []
    assert result.reasons == Counter(scoring_failed=1, not_json=1)


def test_without_a_model_a_batch_is_dead_lettered_not_lost() -> None:
    worker = worker_with(None)
    result = worker.score([IncomingEvent(b"a", listing("a"), "listed", 0, 0)])
    assert result.reasons == Counter(scoring_failed=1)


def test_outputs_are_counted_once_delivered_by_what_they_became() -> None:
    worker = worker_with(Broken())

    async def scenario() -> Counter[str]:
        return await worker.publish(worker.score([IncomingEvent(b"a", b"[]", "l", 0, 0)]))

    outcomes = asyncio.run(scenario())
    worker.count_delivered(outcomes)
    metric = worker.metrics.events_deadlettered.labels(reason="schema")._value.get()
    assert outcomes == Counter(schema=1) and metric == 1


def test_health_follows_the_facts() -> None:
    worker = worker_with(Broken())
    body, status = worker.health()
    assert (status, body["status"]) == (503, "degraded")  # the agent is not running yet
    worker.facts.agent_running = True
    body, status = worker.health()
    assert (status, body["status"], body["model_version"]) == (200, "ok", "3")
    assert worker.metrics.healthy._value.get() == 1


def test_faust_gets_the_reliability_settings() -> None:
    settings = Settings(worker_instance_id="w-1", worker_session_timeout_s=8)
    conf = faust_settings(settings)
    assert conf["consumer_group_instance_id"] == "w-1"
    assert conf["broker_session_timeout"] == 8
    assert conf["stream_wait_empty"] is False


def test_health_names_the_partitions_owned_and_warns_when_idle() -> None:
    worker = worker_with(Broken())
    listed = worker.listed_topic
    body, _ = worker.health()
    assert body["partitions"] is None  # not assigned yet
    worker.on_assigned([(listed, 3), ("other", 0), (listed, 1)])
    body, _ = worker.health()
    assert body["partitions"] == [1, 3]
    assert not [w for w in body["warnings"] if "no partition" in w]
    worker.on_assigned([("other", 0)])
    body, _ = worker.health()
    assert body["partitions"] == []
    assert [w for w in body["warnings"] if "no partition" in w]
    assert worker.metrics.partitions._value.get() == 0
