"""The Faust scoring worker: agents, timers and HTTP views wired to the pure scoring logic.

Delivery is at-least-once: a micro-batch's events are acknowledged to Faust (whose
offset commits follow the acknowledgements, every ``worker_commit_interval_s``) only
after the broker acknowledged the batch's outputs. Outputs are keyed like their input,
so a replay after a crash rewrites the same keys; the duplicates are bounded by one
commit interval plus the batches in flight.

Failures stay small: :func:`stream_app.batch.score_batch` isolates every event, the
agent isolates every batch, an output the broker refuses becomes a dead letter, and
only an output that cannot be written at all stops the worker (non-zero exit, nothing
acknowledged, so a restart replays it). SIGTERM drains the in-flight batches, commits
and exits within ``worker_stop_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, cast

import faust
import orjson
from aiohttp import web
from confluent_kafka import KafkaError, Producer
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import generate_latest

from gavel.schemas import DeadLetterReason
from gavel.settings import Settings
from gavel.topics import AUCTIONS_DEADLETTER, AUCTIONS_LISTED, PRICES_SCORED
from shell.kafka import Producing, producer_config
from shell.updates import UpdateFollower
from stream_app import faust_tuning
from stream_app.batch import SCORED, BatchResult, IncomingEvent, Limits, score_batch
from stream_app.faust_batches import batches, channel_queue
from stream_app.health import HealthFacts, assess, stalled_for
from stream_app.metrics import WorkerMetrics
from stream_app.model import CACHE, LoadedModel, ModelHolder, RegistryModelSource
from stream_app.model_cache import ModelCache
from stream_app.outputs import BatchOutputs, OutputPolicy, OutputsFailed, Verdict
from stream_app.predict import INLINE_LISTINGS, admit, parse_predict_request
from stream_app.validation import Invalid

log = logging.getLogger("stream_app")

LAG_INTERVAL_S = 5.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4"  # aiohttp adds the charset itself
EXIT_OUTPUTS_FAILED = 3


#: A coroutine function that Faust runs as a task or a timer.
Task = Callable[[], Awaitable[None]]


def on_start(app: faust.App) -> Callable[[Task], Task]:
    """``@app.task``, with its type: Faust declares ``App.task`` ``@no_type_check``."""
    return cast(Callable[[Task], Task], app.task)


def every(app: faust.App, interval_s: float) -> Callable[[Task], Task]:
    """``@app.timer(interval_s)``, with its type: Faust declares it ``@no_type_check``."""
    timer = cast(Callable[[float], Callable[[Task], Task]], app.timer)
    return timer(interval_s)


class AckableEvent(Protocol):
    """What the agent uses of a Faust event: its message, and acknowledging it."""

    @property
    def message(self) -> Any: ...

    def ack(self) -> bool: ...


def _raw_topic(app: faust.App, name: str) -> faust.TopicT:
    return app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw")


def _incoming(event: AckableEvent) -> IncomingEvent:
    message = event.message
    return IncomingEvent(
        key=message.key,
        value=message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_s=message.timestamp,
    )


def exit_now(why: str, code: int) -> None:
    """Leave at once, without Faust's shutdown (which would commit and could hang)."""
    log.critical("exiting with code %d: %s", code, why)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    sys.stderr.flush()
    os._exit(code)


class ScoringWorker:
    """The worker's state and decisions, apart from Faust's wiring in :func:`create_app`."""

    def __init__(
        self,
        settings: Settings,
        holder: ModelHolder | None = None,
        producer: Producing | None = None,
        on_fatal: Any = None,
    ) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.facts = HealthFacts(stall_after_s=settings.worker_stall_after_s)
        self.limits = Limits(
            max_listing_bytes=settings.worker_max_listing_bytes,
            deadletter_payload_bytes=settings.worker_deadletter_payload_bytes,
        )
        self.scored_topic = settings.topic(PRICES_SCORED)
        self.dead_topic = settings.topic(AUCTIONS_DEADLETTER)
        self.holder = holder or ModelHolder(
            RegistryModelSource(settings),
            on_swap=self.on_swap,
            cache=ModelCache(settings.worker_model_cache_dir),
            model_name=settings.model_name,
        )
        self.outputs = BatchOutputs(
            producer or Producer(self.producer_config()),
            OutputPolicy(
                dead_topic=self.dead_topic,
                retries=settings.worker_output_retries,
                deadletter_payload_bytes=settings.worker_deadletter_payload_bytes,
            ),
            on_fatal=on_fatal or self.on_fatal,
            on_error=self.on_output_error,
            on_success=self.on_output_success,
        )
        self.listed_topic = settings.topic(AUCTIONS_LISTED)
        self.partitions: list[int] | None = None  # of auctions.listed; None before the first
        self.acking: set[asyncio.Future[None]] = set()  # keeps the acknowledging tasks alive
        self.stopping = False
        self.started_at = time.time()

    def producer_config(self) -> dict[str, Any]:
        timeout_ms = int(self.settings.worker_output_timeout_s * 1000)
        return producer_config(self.settings, **{"linger.ms": 2, "message.timeout.ms": timeout_ms})

    # -- model --------------------------------------------------------------------------

    def on_swap(self, model: LoadedModel) -> None:
        # The model and the libraries are long-lived: move them out of the collector's
        # generations, so that full collections stop pausing the stream.
        gc.collect()
        gc.freeze()
        self.metrics.model_swaps.inc()
        self.metrics.model_info.info({"model_name": model.name, "version": model.version})
        if model.version.isdigit():
            self.metrics.model_version.set(int(model.version))

    # -- outputs ------------------------------------------------------------------------

    def on_output_error(self, verdict: Verdict, error: KafkaError) -> None:
        self.facts.last_output_error_at = time.monotonic()
        self.metrics.output_errors.labels(verdict=verdict.value).inc()

    def on_output_success(self) -> None:
        self.facts.last_output_success_at = time.monotonic()

    def on_fatal(self, why: str) -> None:
        self.facts.fatal = why
        self.metrics.fatal_output_failures.inc()
        exit_now(why, EXIT_OUTPUTS_FAILED)

    # -- scoring ------------------------------------------------------------------------

    def score(self, incoming: list[IncomingEvent]) -> BatchResult:
        """Score one batch; even a failure outside the per-event isolation costs only
        this batch, which is dead-lettered whole rather than lost."""
        model = self.holder.current  # read between batches: a swap never splits a batch
        started = time.perf_counter()
        try:
            if model is None:
                raise RuntimeError("no model loaded")
            result = score_batch(incoming, model, self.limits)
        except Exception as exc:
            log.exception("batch of %d could not be processed", len(incoming))
            result = BatchResult()
            invalid = Invalid(DeadLetterReason.SCORING_FAILED, f"{type(exc).__name__}: {exc}")
            for event in incoming:
                result.reject(event, invalid, self.limits)
        self.metrics.events_in.inc(len(incoming))
        self.metrics.batch_size.observe(len(incoming))
        self.metrics.scoring_latency.observe(time.perf_counter() - started)
        for latency in result.latencies_s:
            self.metrics.event_latency.observe(latency)
        self.facts.last_progress_at = time.monotonic()
        return result

    def publish(self, result: BatchResult) -> asyncio.Future[Counter[str]]:
        pairs = [(self.scored_topic, o) for o in result.scored]
        pairs += [(self.dead_topic, o) for o in result.dead_letters]
        return self.outputs.send(pairs)

    def count_delivered(self, outcomes: Counter[str]) -> None:
        """Outputs counted once on the broker, by what they finally were."""
        for outcome, count in outcomes.items():
            if outcome == SCORED:
                self.metrics.events_scored.inc(count)
            else:
                self.metrics.events_deadlettered.labels(reason=outcome).inc(count)

    async def run_agent(self, batches: AsyncIterator[Sequence[AckableEvent]]) -> None:
        """Take micro-batches, score them, acknowledge each once its outputs are written."""
        model = await self.holder.wait_ready()
        log.info("scoring %s with %s v%s", self.settings.topic(AUCTIONS_LISTED), *model_id(model))
        in_flight = asyncio.Semaphore(self.settings.worker_batches_in_flight)

        async def ack_when_delivered(
            delivered: asyncio.Future[Counter[str]], events: Sequence[AckableEvent]
        ) -> None:
            try:
                self.count_delivered(await delivered)
                for event in events:
                    event.ack()
            except OutputsFailed:
                pass  # never acknowledged: replayed after the restart that follows
            finally:
                in_flight.release()

        self.facts.agent_running = True
        try:
            # Events are acknowledged only once their outputs are on the broker, while the
            # next batches are already being scored.
            async for events in batches:
                if self.stopping:
                    continue  # not acknowledged: the next owner of the partition scores them
                await in_flight.acquire()
                delivered = self.publish(self.score([_incoming(event) for event in events]))
                pending = asyncio.ensure_future(ack_when_delivered(delivered, events))
                self.acking.add(pending)
                pending.add_done_callback(self.acking.discard)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.facts.last_agent_crash_at = time.monotonic()
            self.metrics.agent_crashes.inc()
            log.exception("scoring agent crashed; Faust restarts it")
            raise
        finally:
            self.facts.agent_running = False

    async def drain(self, timeout_s: float) -> int:
        """Stop taking batches and wait for the in-flight ones to be acknowledged."""
        self.stopping = True
        pending = list(self.acking)
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout_s)
            if late:
                log.warning("%d batches still in flight after %.1fs", len(late), timeout_s)
        return len(pending)

    # -- health -------------------------------------------------------------------------

    def health(self) -> tuple[dict[str, Any], int]:
        now = time.monotonic()
        self.facts.model_loaded = self.holder.current is not None
        verdict = assess(self.facts, now)
        self.metrics.healthy.set(1 if verdict.ok else 0)
        model = self.holder.current
        body = {
            "status": verdict.status,
            "problems": verdict.problems,
            "model_name": self.settings.model_name,
            "model_version": model.version if model else None,
            "model_source": model.source if model else None,
            "warnings": self.warnings(),
            "partitions": self.partitions,
            "consumer_lag": self.facts.lag,
            "uptime_s": round(time.time() - self.started_at, 1),
            "events_scored": self.metrics.events_scored._value.get(),
        }
        return body, 200 if verdict.ok else 503

    def warnings(self) -> list[str]:
        """What an operator should know that does not stop the worker from scoring."""
        model = self.holder.current
        notes = []
        if self.holder.registry_error is not None:
            notes.append(f"registry unreachable: {self.holder.registry_error}")
        if model is not None and model.source == CACHE:
            notes.append(f"serving v{model.version} from the local cache, not confirmed")
        if self.partitions == []:
            notes.append(
                f"no partition of {self.listed_topic} assigned: more workers than partitions, "
                "or the group is rebalancing"
            )
        return notes

    def on_assigned(self, topic_partitions: Iterable[tuple[str, int]]) -> None:
        """Record this worker's share of ``auctions.listed`` after a rebalance."""
        mine = sorted(p for topic, p in topic_partitions if topic == self.listed_topic)
        if mine != self.partitions:
            log.info("assigned partitions %s of %s", mine, self.listed_topic)
        self.partitions = mine
        self.metrics.partitions.set(len(mine))

    def record_lag(self, lag: int) -> None:
        if lag == 0 or self.facts.last_progress_at is None:
            self.facts.last_progress_at = time.monotonic()
        self.facts.lag = lag
        self.metrics.consumer_lag.set(lag)
        self.metrics.stalled.set(0 if stalled_for(self.facts, time.monotonic()) is None else 1)


def model_id(model: LoadedModel) -> tuple[str, str]:
    return model.name, model.version


def instance_id(settings: Settings) -> str | None:
    """The static group member id, with ``{hostname}`` filled in.

    >>> import socket
    >>> instance_id(Settings(worker_instance_id="w-{hostname}")) == f"w-{socket.gethostname()}"
    True
    """
    if settings.worker_instance_id is None:
        return None
    return settings.worker_instance_id.replace("{hostname}", socket.gethostname())


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust's TLS and SASL credentials, from the same settings as every other client."""
    protocol = settings.kafka_security_protocol
    context = None
    if protocol.uses_tls:
        cafile = str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
        context = ssl.create_default_context(cafile=cafile)
        context.check_hostname = settings.kafka_ssl_check_hostname
    if protocol.uses_sasl:
        assert settings.kafka_sasl_password is not None  # the settings check this
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism.value,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_settings(settings: Settings) -> dict[str, Any]:
    """Faust's own configuration, all of it from Gavel's settings."""
    brokers = ";".join(f"kafka://{host}" for host in settings.kafka_bootstrap.split(","))
    return {
        # Faust would let unprefixed variables (BROKER_URL, WEB_PORT, ...) override what
        # is passed here; an empty environment makes Gavel's settings the only source.
        "env": {},
        "broker": brokers,
        "broker_credentials": faust_credentials(settings),
        "store": "memory://",
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_partitions": settings.topic_partitions,
        "consumer_auto_offset_reset": "earliest",
        "web_port": settings.worker_web_port,
        "web_bind": settings.bind_host,
        "web_host": settings.host,
        "stream_buffer_maxsize": 16384,
        # Larger fetches (aiokafka's 500 records and 1 MB by default): +20-45% listings/s
        # over a backlog in alternating runs (bench/bench_stream.py --parts variants).
        "broker_max_poll_records": 2000,
        "consumer_max_fetch_size": 4 * 1024**2,
        # A dead worker is noticed after the session timeout (Faust's default is 60 s);
        # with a static instance id a restarted one takes its partitions straight back.
        "broker_session_timeout": settings.worker_session_timeout_s,
        "broker_heartbeat_interval": settings.worker_heartbeat_s,
        "consumer_group_instance_id": instance_id(settings),
        "broker_commit_interval": settings.worker_commit_interval_s,
        # Faust would wait on shutdown for events it buffered but never handed out: that
        # hung SIGTERM. The worker drains its own in-flight batches instead.
        "stream_wait_empty": False,
    }


def create_app(settings: Settings, worker: ScoringWorker | None = None) -> faust.App:
    """A Faust app that prices ``auctions.listed`` with the registry's champion."""
    faust_tuning.apply()
    app = faust.App(settings.group("worker"), **faust_settings(settings))
    scorer = worker or ScoringWorker(settings)
    _wire_stream(app, scorer, settings)
    _wire_shutdown(app, scorer, settings)
    _wire_http(app, scorer, settings)
    return app


def _wire_stream(app: faust.App, scorer: ScoringWorker, settings: Settings) -> None:
    """The scoring agent, and the tasks and timers that keep its model and lag current."""
    holder = scorer.holder
    listed = _raw_topic(app, settings.topic(AUCTIONS_LISTED))

    @app.agent(listed, name="score_listings")
    async def score_listings(stream: faust.StreamT[bytes]) -> None:
        size, within = settings.worker_batch_size, settings.worker_batch_within_s
        # Straight off the channel's queue: Stream.noack_take's per-event machinery cost
        # about 10% of the worker's CPU (measured: 225-241 against 247-252 us per event).
        await scorer.run_agent(batches(channel_queue(stream), size, within))

    @app.on_partitions_assigned.connect
    async def record_assignment(sender: faust.App, /, *args: Any, **kwargs: Any) -> None:
        assigned: set[TP] = args[0] if args else kwargs.get("assigned", set())
        scorer.on_assigned((tp.topic, tp.partition) for tp in assigned)

    @on_start(app)
    async def serve_delivery_reports() -> None:
        await scorer.outputs.serve()

    @on_start(app)
    async def lighten() -> None:
        # Faust's built-in Monitor sensor books every event for its /stats page, which
        # Gavel does not use (its own metrics are at /metrics): about 6% of the worker.
        with contextlib.suppress(KeyError):
            app.sensors.remove(app.monitor)

    @on_start(app)
    async def load_champion() -> None:
        if not await holder.refresh(why="startup"):
            log.warning(
                "no champion for %s yet; listings wait in Kafka until one is promoted",
                settings.model_name,
            )

    @every(app, settings.worker_poll_alias_s)
    async def poll_champion_alias() -> None:
        await holder.refresh(why="alias poll")

    @on_start(app)
    async def follow_model_updates() -> None:
        loop = asyncio.get_running_loop()

        def on_champion(version: str) -> None:
            asyncio.run_coroutine_threadsafe(holder.refresh(version, why="models.updates"), loop)

        UpdateFollower(settings, "worker").start(on_champion)

    @every(app, LAG_INTERVAL_S)
    async def measure_lag() -> None:
        with contextlib.suppress(Exception):  # the broker may be away; health says so
            scorer.record_lag(await consumer_lag(app, listed.get_topic_name()))


def _wire_shutdown(app: faust.App, scorer: ScoringWorker, settings: Settings) -> None:
    """SIGTERM: drain the batches in flight and commit, within the stop budget."""

    @app.on_before_shutdown.connect
    async def drain_and_commit(sender: faust.App, /, *args: Any, **kwargs: Any) -> None:
        # Runs once Faust paused the partitions; its consumer commits again after this.
        budget = settings.worker_stop_timeout_s
        watchdog = threading.Timer(budget + 1.5, exit_now, ("shutdown overran", 0))
        watchdog.daemon = True
        watchdog.start()
        started = time.monotonic()
        batches = await scorer.drain(budget * 0.75)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(app.consumer.commit(), budget * 0.2)
        log.info(
            "drained %d batches in flight and committed in %.2fs",
            batches,
            time.monotonic() - started,
        )


def _wire_http(app: faust.App, scorer: ScoringWorker, settings: Settings) -> None:
    """``GET /health``, ``GET /metrics`` and ``POST /predict``."""
    holder = scorer.holder

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            body, status = scorer.health()
            return self.json(body, status=status)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            scorer.health()  # refreshes the healthy gauge
            exposition = generate_latest(scorer.metrics.registry).decode()
            return self.text(exposition, content_type=PROMETHEUS_TEXT)

    predicting = asyncio.Semaphore(settings.worker_predict_concurrency)

    @app.page("/predict")
    class Predict(View):
        async def post(self, request: Request) -> Response:
            http = cast(web.Request, request)  # what Faust's aiohttp driver hands its views
            limit = settings.worker_predict_max_bytes
            refusal = admit(http.content_type, http.content_length, limit)
            if refusal is not None:
                return self.json({"detail": refusal.detail}, status=refusal.status)
            if predicting.locked():  # a bound, not a queue: the stream comes first
                busy = {"detail": "too many predictions at once; retry shortly"}
                return self.json(busy, status=429, headers={"Retry-After": "1"})
            async with predicting:
                body = await http.content.read(limit + 1)
                if len(body) > limit:
                    return self.json({"detail": f"body exceeds {limit} bytes"}, status=413)
                return await self.price(body)

        async def price(self, body: bytes) -> Response:
            listings, errors = parse_predict_request(body)
            if errors:
                return self.json({"detail": errors}, status=422)
            model = holder.current
            if model is None:
                return self.json({"detail": "no champion model loaded yet"}, status=503)
            if len(listings) <= INLINE_LISTINGS:
                # Compiled, a few listings cost less than the hop to a thread and back.
                prices = model.predict(listings)
            else:
                prices = await asyncio.to_thread(model.predict, listings)
            priced: dict[str, Any] = {
                "model_name": model.name,
                "model_version": model.version,
                "predictions": [
                    {"auction_id": listing.auction_id, "predicted_price": round(float(p), 2)}
                    for listing, p in zip(listings, prices, strict=True)
                ],
            }
            return self.bytes(orjson.dumps(priced), content_type="application/json")


async def consumer_lag(app: faust.App, topic: str) -> int:
    """Messages on ``topic``'s assigned partitions that this worker has not read yet."""
    partitions = [tp for tp in app.consumer.assignment() if tp.topic == topic]
    if not partitions:
        return 0
    highwaters = await app.consumer.highwaters(*partitions)
    lag = 0
    for tp in partitions:
        position = await app.consumer.position(tp)
        lag += max(highwaters.get(tp, 0) - (position or 0), 0)
    return lag


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker in the foreground until SIGINT/SIGTERM."""
    from faust import Worker

    app = create_app(settings)
    worker = Worker(app, loglevel=loglevel, quiet=True)
    # aiokafka logs every request at DEBUG; formatting them costs ~8% of the worker.
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLogger().level))
    worker.execute_from_commandline()
