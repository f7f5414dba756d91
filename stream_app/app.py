"""The Faust scoring worker: agents, timers and HTTP views wired to the pure scoring logic.

Delivery is at-least-once: a micro-batch's events are acknowledged to Faust (whose
offset commits follow the acknowledgements) only after the broker acknowledged the
batch's outputs. Outputs are keyed like their input, so a replay after a crash
rewrites the same keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import Any

import faust
import orjson
from faust.types import EventT
from faust.web import Request, Response, View
from prometheus_client import generate_latest

from gavel.schemas import DeadLetterReason
from gavel.settings import Settings
from gavel.topics import AUCTIONS_DEADLETTER, AUCTIONS_LISTED, PRICES_SCORED
from gavel.updates import UpdateFollower
from stream_app import faust_tuning
from stream_app.batch import BatchResult, IncomingEvent, dead_letter, score_batch
from stream_app.metrics import WorkerMetrics
from stream_app.model import LoadedModel, ModelHolder, RegistryModelSource
from stream_app.outputs import BatchOutputs
from stream_app.predict import parse_predict_request
from stream_app.validation import Invalid

log = logging.getLogger("stream_app")

BATCHES_IN_FLIGHT = 4
LAG_INTERVAL_S = 5.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4"  # aiohttp adds the charset itself


def _raw_topic(app: faust.App, name: str) -> faust.TopicT:
    return app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw")


def _incoming(event: EventT) -> IncomingEvent:
    message = event.message
    return IncomingEvent(
        key=message.key,
        value=message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_s=message.timestamp,
    )


def create_app(settings: Settings) -> faust.App:
    """A Faust app that prices ``auctions.listed`` with the registry's champion."""
    faust_tuning.apply()
    app = faust.App(
        settings.group("worker"),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        web_port=settings.worker_web_port,
        web_bind=settings.bind_host,
        web_host=settings.host,
        stream_buffer_maxsize=16384,
    )
    listed = _raw_topic(app, settings.topic(AUCTIONS_LISTED))
    scored_topic = settings.topic(PRICES_SCORED)
    dead_topic = settings.topic(AUCTIONS_DEADLETTER)
    outputs = BatchOutputs(settings)
    acking: set[asyncio.Future[None]] = set()  # keeps the acknowledging tasks alive
    metrics = WorkerMetrics()
    started_at = time.time()

    def on_swap(model: LoadedModel) -> None:
        # The model and the libraries are long-lived: move them out of the collector's
        # generations, so that full collections stop pausing the stream.
        gc.collect()
        gc.freeze()
        metrics.model_swaps.inc()
        metrics.model_info.info({"model_name": model.name, "version": model.version})
        if model.version.isdigit():
            metrics.model_version.set(int(model.version))

    holder = ModelHolder(RegistryModelSource(settings), on_swap=on_swap)
    app.gavel_holder = holder  # type: ignore[attr-defined]
    app.gavel_metrics = metrics  # type: ignore[attr-defined]

    def publish(result: BatchResult) -> asyncio.Future[None]:
        pairs = [(scored_topic, o) for o in result.scored]
        pairs += [(dead_topic, o) for o in result.dead_letters]
        return outputs.send(pairs)

    def record(result: BatchResult, batch_size: int, seconds: float) -> None:
        metrics.events_in.inc(batch_size)
        metrics.batch_size.observe(batch_size)
        metrics.scoring_latency.observe(seconds)
        metrics.events_scored.inc(len(result.scored))
        for reason, count in result.reasons.items():
            metrics.events_deadlettered.labels(reason=reason).inc(count)
        for latency in result.latencies_s:
            metrics.event_latency.observe(latency)

    def process(events: list[EventT]) -> asyncio.Future[None]:
        incoming = [_incoming(event) for event in events]
        model = holder.current  # read between batches: a swap never splits a batch
        started = time.perf_counter()
        try:
            assert model is not None
            result = score_batch(incoming, model)
        except Exception as exc:  # never let a batch vanish: dead-letter it whole
            log.exception("batch of %d could not be processed", len(incoming))
            invalid = Invalid(DeadLetterReason.SCORING_FAILED, f"{type(exc).__name__}: {exc}")
            result = BatchResult(dead_letters=[dead_letter(e, invalid) for e in incoming])
            result.reasons[invalid.reason.value] += len(incoming)
        record(result, len(incoming), time.perf_counter() - started)
        return publish(result)

    @app.agent(listed, name="score_listings")
    async def score_listings(stream: faust.StreamT) -> None:
        model = await holder.wait_ready()
        log.info("scoring %s with %s v%s", listed.get_topic_name(), model.name, model.version)
        in_flight = asyncio.Semaphore(BATCHES_IN_FLIGHT)

        async def ack_when_delivered(delivered: asyncio.Future[None], events: list) -> None:
            try:
                await delivered
                for event in events:
                    await stream.ack(event)
            finally:
                in_flight.release()

        # noack_take: events are acknowledged only once their outputs are on the broker,
        # while the next batch is already being scored.
        async for events in stream.noack_take(
            settings.worker_batch_size, within=settings.worker_batch_within_s
        ):
            await in_flight.acquire()
            pending = asyncio.ensure_future(ack_when_delivered(process(events), events))
            acking.add(pending)
            pending.add_done_callback(acking.discard)

    @app.task
    async def serve_delivery_reports() -> None:
        await outputs.serve()

    @app.task
    async def lighten() -> None:
        # Faust's built-in Monitor sensor books every event for its /stats page, which
        # Gavel does not use (its own metrics are at /metrics): about 6% of the worker.
        with contextlib.suppress(KeyError):
            app.sensors.remove(app.monitor)

    @app.task
    async def load_champion() -> None:
        if not await holder.refresh(why="startup"):
            log.warning(
                "no champion for %s yet; listings wait in Kafka until one is promoted",
                settings.model_name,
            )

    @app.timer(settings.worker_poll_alias_s)
    async def poll_champion_alias() -> None:
        await holder.refresh(why="alias poll")

    @app.task
    async def follow_model_updates() -> None:
        loop = asyncio.get_running_loop()

        def on_champion(version: str) -> None:
            asyncio.run_coroutine_threadsafe(holder.refresh(version, why="models.updates"), loop)

        UpdateFollower(settings, "worker", on_champion).start()

    @app.timer(LAG_INTERVAL_S)
    async def measure_lag() -> None:
        metrics.consumer_lag.set(await consumer_lag(app, listed.get_topic_name()))

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            model = holder.current
            body = {
                "status": "ok" if model else "waiting_for_champion",
                "model_name": settings.model_name,
                "model_version": model.version if model else None,
                "consumer_lag": metrics.consumer_lag._value.get(),
                "uptime_s": round(time.time() - started_at, 1),
                "events_scored": metrics.events_scored._value.get(),
            }
            return self.json(body, status=200 if model else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            exposition = generate_latest(metrics.registry).decode()
            return self.text(exposition, content_type=PROMETHEUS_TEXT)

    @app.page("/predict")
    class Predict(View):
        async def post(self, request: Request) -> Response:
            listings, errors = parse_predict_request(await request.read())
            if errors:
                return self.json({"detail": errors}, status=422)
            model = holder.current
            if model is None:
                return self.json({"detail": "no champion model loaded yet"}, status=503)
            prices = await asyncio.to_thread(model.predict, listings)
            body: dict[str, Any] = {
                "model_name": model.name,
                "model_version": model.version,
                "predictions": [
                    {"auction_id": listing.auction_id, "predicted_price": round(float(p), 2)}
                    for listing, p in zip(listings, prices, strict=True)
                ],
            }
            return self.bytes(orjson.dumps(body), content_type="application/json")

    return app


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
