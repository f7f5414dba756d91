"""Kafka plumbing shared by the services: topic creation and client configs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypedDict, Unpack

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported without __all__

from gavel.settings import Settings
from gavel.topics import TOPICS

log = logging.getLogger(__name__)


def client_config(settings: Settings) -> dict[str, Any]:
    """What every librdkafka client needs: the brokers, TLS and SASL from the settings.

    >>> client_config(Settings(kafka_bootstrap="b:9092"))
    {'bootstrap.servers': 'b:9092', 'security.protocol': 'PLAINTEXT'}
    """
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": protocol.value,
    }
    if protocol.uses_tls:
        if settings.kafka_ssl_ca_file is not None:
            config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.kafka_ssl_check_hostname else "none"
        )
    if protocol.uses_sasl:
        assert settings.kafka_sasl_password is not None  # the settings check this
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism.value
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return config


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, int]:
    """Create missing Gavel topics; returns each topic's partition count.

    Existing topics are left as they are (Kafka cannot shrink partitions).
    """
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [
        NewTopic(
            settings.topic(spec.name),
            num_partitions=spec.partitions(settings.topic_partitions),
            replication_factor=settings.topic_replication,
        )
        for spec in TOPICS
        if settings.topic(spec.name) not in existing
    ]
    if missing:
        for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                log.debug("created topic %s", name)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    names = [settings.topic(spec.name) for spec in TOPICS]
    deadline = time.monotonic() + timeout_s
    while True:  # new topics take a moment to appear in the metadata
        metadata = admin.list_topics(timeout=timeout_s).topics
        if all(name in metadata and metadata[name].partitions for name in names):
            counts = {name: len(metadata[name].partitions) for name in names}
            _warn_if_fewer_partitions(settings, counts)
            return counts
        if time.monotonic() > deadline:
            absent = [name for name in names if name not in metadata]
            raise KafkaException(f"topics {absent} did not appear within {timeout_s}s")
        time.sleep(0.2)


def _warn_if_fewer_partitions(settings: Settings, counts: dict[str, int]) -> None:
    """Say so when existing data topics have fewer partitions than the settings ask for:
    workers beyond the partition count of auctions.listed would sit idle."""
    for spec in TOPICS:
        name = settings.topic(spec.name)
        wanted = spec.partitions(settings.topic_partitions)
        if counts[name] < wanted:
            log.warning(
                "%s has %d partitions, GAVEL_TOPIC_PARTITIONS asks for %d: Kafka does not "
                "re-partition an existing topic. Use a new GAVEL_NAMESPACE, or raise it with "
                "kafka-topics.sh --alter --partitions %d (then restart the monitor).",
                name,
                counts[name],
                wanted,
                wanted,
            )


def delete_topics_with_prefix(
    settings: Settings, prefix: str, timeout_s: float = 60.0
) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a test or benchmark namespace)."""
    if not prefix:
        raise ValueError("an empty prefix would delete every topic")
    admin = admin_client(settings)
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=timeout_s).values():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as exc:
                # Metadata lists a topic for a moment after its deletion: already gone.
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
    return topics


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """An idempotent producer: retries cannot duplicate or reorder within a partition.

    It hashes keys like the Java client and aiokafka (murmur2), so an auction id lands
    on the same partition number in every topic, whichever service wrote it.
    """
    config: dict[str, Any] = {
        **client_config(settings),
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        **client_config(settings),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    config.update(overrides)
    return config


#: A delivery report: ``(error or None, message)``.
DeliveryCallback = Callable[[KafkaError | None, Any], None]


class ProduceOptions(TypedDict, total=False):
    """The options of ``Producer.produce`` that Gavel passes through :func:`produce_waiting`."""

    on_delivery: DeliveryCallback
    timestamp: int  # milliseconds since the epoch


class Producing(Protocol):
    """What :func:`produce_waiting` needs of a producer (confluent-kafka's, or a fake)."""

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        *,
        on_delivery: DeliveryCallback = ...,
        timestamp: int = ...,
    ) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...


#: How long a full local queue lasts before it is worth a warning.
FULL_QUEUE_WARNING_S = 5.0


def produce_waiting(
    producer: Producing,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    *,
    poll_s: float = 0.05,
    **kwargs: Unpack[ProduceOptions],
) -> None:
    """Produce one message, serving deliveries while the local queue is full.

    confluent-kafka raises ``BufferError`` instead of blocking when its queue is full;
    polling lets delivery reports drain it. A queue full for long means the broker is
    away: that is logged every :data:`FULL_QUEUE_WARNING_S`. Other errors (a
    ``KafkaException`` for a message refused before it was queued) are the caller's.
    """
    full_since: float | None = None
    while True:
        try:
            producer.produce(topic, value, key, **kwargs)
            return
        except BufferError:
            now = time.monotonic()
            full_since = full_since or now
            if now - full_since > FULL_QUEUE_WARNING_S:
                log.warning("producer queue full for %.0fs: is the broker up?", now - full_since)
                full_since = now
            producer.poll(poll_s)
