"""Topics and a produce/consume round trip through the real broker."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer

from gavel.settings import Settings
from gavel.topics import AUCTIONS_LISTED, TOPICS
from shell.kafka import (
    admin_client,
    consumer_config,
    delete_topics_with_prefix,
    ensure_topics,
    producer_config,
)
from tests.conftest import SESSION_PREFIX

pytestmark = pytest.mark.integration


def test_ensure_topics_creates_every_topic_with_configured_partitions(isolated: Settings) -> None:
    partitions = ensure_topics(isolated)  # second call: idempotent
    assert set(partitions) == {isolated.topic(spec.name) for spec in TOPICS}
    for spec in TOPICS:
        expected = isolated.topic_partitions if spec.keyed_data else 1
        assert partitions[isolated.topic(spec.name)] == expected


def test_asking_for_more_partitions_than_a_topic_has_says_what_to_do(
    isolated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    more = isolated.replace(topic_partitions=isolated.topic_partitions + 2)
    with caplog.at_level("WARNING", logger="shell.kafka"):
        partitions = ensure_topics(more)
    listed = isolated.topic(AUCTIONS_LISTED)
    assert partitions[listed] == isolated.topic_partitions  # never re-partitioned behind one's back
    warned = [r.getMessage() for r in caplog.records if listed in r.getMessage()]
    assert warned and "--partitions" in warned[0] and "GAVEL_NAMESPACE" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="shell.kafka"):
        ensure_topics(isolated)
    assert not caplog.records


def test_produce_then_consume_keeps_keys_and_partitioning(isolated: Settings) -> None:
    topic = isolated.topic(AUCTIONS_LISTED)
    producer = Producer(producer_config(isolated))
    sent = {f"auction-{i}".encode(): f'{{"n": {i}}}'.encode() for i in range(200)}
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    consumer = Consumer(consumer_config(isolated, isolated.group("kafka-test")))
    consumer.subscribe([topic])
    received: dict[bytes, tuple[bytes, int]] = {}
    try:
        for _ in range(60):
            for message in consumer.consume(500, timeout=1.0):
                assert message.error() is None
                received[message.key()] = (message.value(), message.partition())
            if len(received) == len(sent):
                break
    finally:
        consumer.close()
    assert {key: value for key, (value, _) in received.items()} == sent
    # One key always lands on one partition, and the keys spread over several.
    assert len({partition for _, partition in received.values()}) > 1


def test_delete_topics_with_prefix_drops_one_namespace_only(stack: Settings) -> None:
    first = stack.replace(namespace=f"{SESSION_PREFIX}del-{uuid.uuid4().hex[:6]}.")
    second = stack.replace(namespace=f"{SESSION_PREFIX}keep-{uuid.uuid4().hex[:6]}.")
    ensure_topics(first)
    ensure_topics(second)
    deleted = delete_topics_with_prefix(stack, first.namespace)
    assert sorted(deleted) == sorted(first.topic(spec.name) for spec in TOPICS)
    remaining = admin_client(stack).list_topics(timeout=10).topics
    assert not [t for t in remaining if t.startswith(first.namespace)]
    assert {second.topic(spec.name) for spec in TOPICS} <= set(remaining)
    with pytest.raises(ValueError, match="every topic"):
        delete_topics_with_prefix(stack, "")


def test_an_update_follower_reports_champion_changes_by_poll_and_by_thread(
    isolated: Settings,
) -> None:
    import threading

    from gavel.schemas import ModelAction, ModelUpdate
    from gavel.topics import MODELS_UPDATES
    from shell.updates import UpdateFollower

    producer = Producer(producer_config(isolated))

    def announce(action: ModelAction, version: str) -> None:
        update = ModelUpdate(
            action=action, model_name=isolated.model_name, version=version,
            champion_version=version,
        )  # fmt: skip
        producer.produce(isolated.topic(MODELS_UPDATES), value=update.to_json_bytes())
        producer.flush(10)

    polled = UpdateFollower(isolated, "test")
    seen_by_thread: list[str] = []
    got_one = threading.Event()
    threaded = UpdateFollower(isolated, "test").start(
        lambda version: (seen_by_thread.append(version), got_one.set())
    )
    seen: list[str] = []
    try:
        # The followers read from "now on": announce until both have joined and seen one.
        for _ in range(60):
            announce(ModelAction.REJECTED, "6")  # not a champion change
            announce(ModelAction.PROMOTED, "7")
            seen += polled.poll(1.0)
            if seen and got_one.wait(0.5):
                break
    finally:
        polled.close()
        threaded.close()
    assert seen and set(seen) == {"7"}
    assert seen_by_thread and set(seen_by_thread) == {"7"}
