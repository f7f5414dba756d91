"""Prometheus metrics of the scoring worker (served at GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info


class WorkerMetrics:
    """One registry per worker, so tests and multiple apps in a process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "gavel_worker_events_in", "Listings consumed from auctions.listed.", registry=r
        )
        self.events_scored = Counter(
            "gavel_worker_events_scored", "Listings priced and sent to prices.scored.", registry=r
        )
        self.events_deadlettered = Counter(
            "gavel_worker_events_deadlettered",
            "Listings sent to auctions.deadletter, by reason.",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "gavel_worker_batch_size",
            "Events per micro-batch.",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000),
            registry=r,
        )
        self.scoring_latency = Histogram(
            "gavel_worker_scoring_latency_seconds",
            "Time to validate and price one micro-batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.event_latency = Histogram(
            "gavel_worker_event_latency_seconds",
            "From a listing's Kafka timestamp to its score being produced.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "gavel_worker_consumer_lag",
            "Messages on auctions.listed not yet read by this worker.",
            registry=r,
        )
        self.partitions = Gauge(
            "gavel_worker_partitions",
            "Partitions of auctions.listed assigned to this worker (0: idle).",
            registry=r,
        )
        self.model_swaps = Counter(
            "gavel_worker_model_swaps", "Model versions swapped in without a restart.", registry=r
        )
        self.model_info = Info("gavel_worker_model", "The model version serving.", registry=r)
        self.model_version = Gauge(
            "gavel_worker_model_version", "Numeric version of the serving model.", registry=r
        )
        self.output_errors = Counter(
            "gavel_worker_output_errors",
            "Outputs the broker refused, by what the worker did: retry, replace (dead "
            "letter) or fatal (exit).",
            ["verdict"],
            registry=r,
        )
        self.fatal_output_failures = Counter(
            "gavel_worker_fatal_output_failures",
            "Times the worker gave up on writing outputs (it then exits non-zero).",
            registry=r,
        )
        self.agent_crashes = Counter(
            "gavel_worker_agent_crashes",
            "Times the scoring agent died and was restarted.",
            registry=r,
        )
        self.stalled = Gauge(
            "gavel_worker_stalled",
            "1 while the consumer lag stays without progress past worker_stall_after_s.",
            registry=r,
        )
        self.healthy = Gauge("gavel_worker_healthy", "1 when /health says ok, else 0.", registry=r)
