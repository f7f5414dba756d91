"""A background reader of Gavel's output topics, for the demo's live narration."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson
from confluent_kafka import Consumer

from gavel.kafka import consumer_config
from gavel.settings import Settings
from gavel.topics import AUCTIONS_DEADLETTER, DRIFT_ALERTS, MODELS_UPDATES, PRICES_SCORED


@dataclass
class OutputStats:
    scored_keys: set[str] = field(default_factory=set)
    dead_keys: set[str] = field(default_factory=set)
    dead_reasons: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    first_output_at: float | None = None
    last_output_at: float | None = None

    @property
    def accounted(self) -> int:
        return len(self.scored_keys) + len(self.dead_keys)

    def latency_percentiles(self) -> dict[str, float]:
        if not self.latencies_s:
            return {}
        values = np.asarray(self.latencies_s)
        return {f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)}


class OutputWatcher:
    """Reads prices.scored, the dead letters, drift alerts and model updates as they come.

    ``on_event(topic, value)`` is called for alerts and model updates.
    """

    def __init__(
        self, settings: Settings, on_event: Callable[[str, dict], None] | None = None
    ) -> None:
        self.settings = settings
        self.stats = OutputStats()
        self.on_event = on_event
        self.events: list[tuple[float, str, dict]] = []
        self.scored: list[dict] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="output-watcher", daemon=True)

    def start(self) -> OutputWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.stats.accounted >= count:
                return True
            time.sleep(0.2)
        return self.stats.accounted >= count

    def _run(self) -> None:
        group = f"{self.settings.group('demo-watch')}-{uuid.uuid4().hex[:6]}"
        consumer = Consumer(consumer_config(self.settings, group))
        topics = {self.settings.topic(t): t for t in (PRICES_SCORED, AUCTIONS_DEADLETTER)}
        topics |= {self.settings.topic(t): t for t in (DRIFT_ALERTS, MODELS_UPDATES)}
        consumer.subscribe(list(topics))
        try:
            while not self._stop.is_set():
                for message in consumer.consume(1000, timeout=0.3):
                    if message.error() is None:
                        self._record(topics[message.topic()], message.key(), message.value())
        finally:
            consumer.close()

    def _record(self, topic: str, key: bytes | None, value: bytes) -> None:
        now = time.time()
        stats = self.stats
        try:
            payload = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        with self._lock:
            if topic in (PRICES_SCORED, AUCTIONS_DEADLETTER):
                stats.first_output_at = stats.first_output_at or now
                stats.last_output_at = now
            if topic == PRICES_SCORED:
                stats.scored_keys.add(payload["auction_id"])
                stats.versions[payload["model_version"]] += 1
                self.scored.append(payload)
                if payload.get("ingested_at"):
                    ingested = _epoch(payload["ingested_at"])
                    stats.latencies_s.append(max(_epoch(payload["scored_at"]) - ingested, 0.0))
            elif topic == AUCTIONS_DEADLETTER:
                stats.dead_keys.add(key.decode() if key else f"offset-{payload['offset']}")
                stats.dead_reasons[payload["reason"]] += 1
            else:
                self.events.append((now, topic, payload))
                if self.on_event:
                    self.on_event(topic, payload)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
