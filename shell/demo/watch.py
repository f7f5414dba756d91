"""A background reader of Gavel's output topics and the monitor's metrics, for the demo's
live narration and its after-the-fact analysis. Every record is parsed with its topic's
contract; one that does not parse is counted in ``OutputStats.skipped``."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np
from confluent_kafka import Consumer
from pydantic import BaseModel

from gavel.records import Skipped, parse_record
from gavel.schemas import DeadLetter, ScoredPrice
from gavel.settings import Settings
from gavel.topics import AUCTIONS_DEADLETTER, DRIFT_ALERTS, MODELS_UPDATES, PRICES_SCORED, spec
from shell.kafka import consumer_config

SCRAPE_EVERY_S = 2.0
SCRAPED = (
    "gavel_monitor_window_mape",
    "gavel_monitor_window_bias",
    "gavel_monitor_streaming_bias",
    "gavel_monitor_share_drifted",
    "gavel_monitor_reference_mape",
)


@dataclass
class OutputStats:
    scored_keys: set[str] = field(default_factory=set)
    dead_keys: set[str] = field(default_factory=set)
    dead_reasons: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # "<topic>: <reason>"
    versions: Counter[str] = field(default_factory=Counter)
    latencies_s: list[tuple[float, float]] = field(default_factory=list)  # (ingested, latency)
    first_output_at: float | None = None
    last_output_at: float | None = None

    @property
    def accounted(self) -> int:
        return len(self.scored_keys) + len(self.dead_keys)

    def latency_percentiles(self, warmup_s: float = 0.0) -> dict[str, float]:
        """p50/p95/p99 of listed → scored, leaving out listings ingested in the first
        ``warmup_s`` (consumer groups settling, first predictions warming up)."""
        steady, _ = self._split_warmup(warmup_s)
        if not len(steady):
            return {}
        return {f"p{q}": float(np.percentile(steady, q)) for q in (50, 95, 99)}

    def warmup_max_s(self, warmup_s: float) -> float | None:
        _, warming = self._split_warmup(warmup_s)
        return float(warming.max()) if len(warming) else None

    def _split_warmup(self, warmup_s: float) -> tuple[np.ndarray, np.ndarray]:
        if not self.latencies_s:
            return np.empty(0), np.empty(0)
        values = np.asarray(self.latencies_s)
        warming = values[:, 0] < values[:, 0].min() + warmup_s
        return values[~warming, 1], values[warming, 1]


class OutputWatcher:
    """Reads prices.scored, dead letters, drift alerts and model updates as they come, and
    scrapes the monitor's metrics every few seconds.

    ``on_event(topic, value)`` is called for alerts, model updates and the first score of
    each new model version (topic ``"swap"``).
    """

    def __init__(
        self,
        settings: Settings,
        on_event: Callable[[str, BaseModel], None] | None = None,
        monitor_metrics_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.stats = OutputStats()
        self.on_event = on_event
        self.monitor_metrics_url = monitor_metrics_url
        self.events: list[tuple[float, str, BaseModel]] = []
        self.scored: list[ScoredPrice] = []
        self.scrapes: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read, name="output-watcher", daemon=True),
            threading.Thread(target=self._scrape, name="metrics-watcher", daemon=True),
        ]

    def start(self) -> OutputWatcher:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.stats.accounted < count:
            time.sleep(0.2)
        return self.stats.accounted >= count

    def _read(self) -> None:
        group = f"{self.settings.group('demo-watch')}-{uuid.uuid4().hex[:6]}"
        consumer = Consumer(consumer_config(self.settings, group))
        names = (PRICES_SCORED, AUCTIONS_DEADLETTER, DRIFT_ALERTS, MODELS_UPDATES)
        topics = {self.settings.topic(name): name for name in names}
        consumer.subscribe(list(topics))
        try:
            while not self._stop.is_set():
                for message in consumer.consume(1000, timeout=0.3):
                    topic = message.topic()
                    if message.error() is None and topic is not None:
                        self._record(topics[topic], message.key(), message.value())
        finally:
            consumer.close()

    def _scrape(self) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        while self.monitor_metrics_url and not self._stop.wait(SCRAPE_EVERY_S):
            try:
                text = httpx.get(self.monitor_metrics_url, timeout=2).text
            except httpx.HTTPError:
                continue
            row = {"at": time.time()}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name in SCRAPED:
                        row[sample.name] = sample.value
                    elif sample.name == "gavel_monitor_feature_drift_score":
                        row[f"drift:{sample.labels['feature']}"] = sample.value
            self.scrapes.append(row)

    def _record(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        now = time.time()
        event = parse_record(value, spec(topic).value)
        stats = self.stats
        new_version = False
        with self._lock:
            if isinstance(event, Skipped):
                stats.skipped[f"{topic}: {event.reason.value}"] += 1
                return
            if topic in (PRICES_SCORED, AUCTIONS_DEADLETTER):
                stats.first_output_at = stats.first_output_at or now
                stats.last_output_at = now
            if isinstance(event, ScoredPrice):
                stats.scored_keys.add(event.auction_id)
                new_version = event.model_version not in stats.versions
                stats.versions[event.model_version] += 1
                self.scored.append(event)
                if event.ingested_at is not None:
                    ingested = event.ingested_at.timestamp()
                    latency = event.scored_at.timestamp() - ingested
                    stats.latencies_s.append((ingested, max(latency, 0.0)))
            elif isinstance(event, DeadLetter):
                stats.dead_keys.add(key.decode() if key else f"offset-{event.offset}")
                stats.dead_reasons[event.reason.value] += 1
            else:
                self.events.append((now, topic, event))
        if self.on_event is None:
            return
        if topic in (DRIFT_ALERTS, MODELS_UPDATES):
            self.on_event(topic, event)
        elif new_version and len(stats.versions) > 1:
            self.events.append((now, "swap", event))
            self.on_event("swap", event)
