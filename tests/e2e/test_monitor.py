"""The monitor as a real process behind a real worker: quiet on a stationary market,
a performance alert soon after a market shock, a data alert naming the shifted features."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pandas as pd
import pytest
from confluent_kafka import Producer

from gavel.schemas import Listing, ScoredPrice
from gavel.settings import Settings
from gavel.topics import AUCTIONS_SOLD, DRIFT_ALERTS, PRICES_SCORED
from monitor.checkpoint import checkpoint_key, decode
from producers.replay import ReplayOptions, replay
from producers.sources.scenarios import parse_scenario
from producers.sources.synthetic import generate_auctions
from producers.timeline import LISTING, build_timeline, listing_payloads, sale_payloads, select
from shell import registry
from shell.kafka import delete_topics_with_prefix, ensure_topics, producer_config
from shell.stack.process import ManagedProcess
from stream_app.batch import IncomingEvent, score_batch
from stream_app.model import LoadedModel
from tests.conftest import fresh_namespace
from tests.e2e.conftest import SMALL_XGB, worker_health_url
from tests.helpers import consume, end_offsets, free_port, http_ok, scrape, service, wait_for
from tests.integration.trainer_fixtures import trained, trainer_settings
from trainer.service import TrainerStore
from trainer.split import time_split
from trainer.training import train_and_register

pytestmark = pytest.mark.e2e

ROWS, SEED = 60_000, 7
STREAM_FROM, ONSET = "2015-04-01", pd.Timestamp("2015-05-01", tz="UTC")
SALE_DELAY = timedelta(hours=2)


def auctions(*scenarios: str) -> pd.DataFrame:
    return generate_auctions(
        ROWS,
        start="2015-01-01",
        end="2015-07-01",
        seed=SEED,
        scenarios=[parse_scenario(text) for text in scenarios],
    )


@pytest.fixture(scope="module")
def model_name(stack: Settings) -> str:
    """One champion for the module, trained on the months before the streams."""
    name = f"gavel-test-monitor-{uuid.uuid4().hex[:6]}"
    settings = stack.replace(model_name=name, experiment_name="gavel-tests")
    split = time_split(auctions(), "2015-03-01", test_days=30)
    train_and_register(split, settings, source="e2e-monitor", xgb_params=SMALL_XGB)
    return name


@dataclass
class Pipeline:
    settings: Settings
    metrics_url: str

    def processed(self) -> float:
        samples = scrape(self.metrics_url)
        return sum(v for (name, _), v in samples.items() if name.endswith("processed_total"))

    def alerts(self) -> list[dict]:
        expected = end_offsets(self.settings, DRIFT_ALERTS)
        records = consume(self.settings, DRIFT_ALERTS, until=lambda r: len(r) >= expected)
        return [record.json() for record in records]


@pytest.fixture
def pipeline(stack: Settings, model_name: str, tmp_path: Path) -> Iterator[Pipeline]:
    """A worker and a monitor in a fresh namespace."""
    settings = stack.replace(
        namespace=fresh_namespace(),
        model_name=model_name,
        worker_web_port=free_port(),
        monitor_metrics_port=free_port(),
        reports_dir=tmp_path / "reports",
    )
    ensure_topics(settings)
    metrics_url = f"http://{settings.host}:{settings.monitor_metrics_port}/metrics"
    with (
        service("worker", ["worker"], settings, tmp_path, http_ok(worker_health_url(settings))),
        service("monitor", ["monitor"], settings, tmp_path, http_ok(metrics_url)),
    ):
        yield Pipeline(settings, metrics_url)


def stream(pipeline: Pipeline, frame: pd.DataFrame) -> None:
    stats = replay(frame, pipeline.settings, ReplayOptions(sale_delay=SALE_DELAY))
    assert stats.failed == 0
    wait_for(lambda: pipeline.processed() >= stats.sent, 240, "the monitor to read everything")


def test_a_stationary_market_raises_no_alert(pipeline: Pipeline) -> None:
    frame = select(auctions(), STREAM_FROM)
    assert 2 * len(frame) >= 50_000  # listings plus sales
    stream(pipeline, frame)
    assert pipeline.alerts() == []
    samples = scrape(pipeline.metrics_url)
    assert samples[("gavel_monitor_windows_total", (("kind", "performance"),))] >= 20
    assert samples[("gavel_monitor_join_backlog", ())] < 1000


PERFORMANCE_BOUND_SALES = 2000  # two performance windows of labelled sales


def test_a_market_shock_raises_a_performance_alert_within_two_windows(pipeline: Pipeline) -> None:
    frame = select(
        auctions("market_shock:start=2015-05-01,segment=body=SUV,change=-0.2"), STREAM_FROM
    )
    stream(pipeline, frame)
    alerts = pipeline.alerts()
    assert alerts, "the shock must be noticed"
    assert {alert["kind"] for alert in alerts} == {"performance"}, "features did not move"
    first = alerts[0]
    detected_at = pd.Timestamp(first["window_end"])
    sold = frame["listed_at"] + SALE_DELAY
    sales_since_onset = int(((sold >= ONSET) & (sold <= detected_at)).sum())
    print(f"market shock: alert after {sales_since_onset} sales since onset ({first['detector']})")
    assert detected_at >= ONSET, "no alert before the shock"
    assert sales_since_onset <= PERFORMANCE_BOUND_SALES
    assert first["reference_mape"] > 0 and first["model_version"]
    assert first["report_path"] and Path(first["report_path"]).exists()
    assert len(alerts) == 1, "one alert per episode"


SHIFTED = {"year", "odometer", "condition", "mmr"}


def test_a_mix_shift_raises_a_data_alert_naming_the_shifted_features(pipeline: Pipeline) -> None:
    frame = select(auctions("mix_shift:start=2015-05-01"), STREAM_FROM)
    stream(pipeline, frame)
    data_alerts = [alert for alert in pipeline.alerts() if alert["kind"] == "data"]
    assert len(data_alerts) == 1
    alert = data_alerts[0]
    named = {feature["feature"] for feature in alert["drifted_features"]}
    assert {"year", "odometer"} <= named <= SHIFTED
    for feature in alert["drifted_features"]:
        assert feature["score"] > feature["threshold"] and feature["stattest"]
    assert alert["share_drifted"] >= 0.25
    assert pd.Timestamp(alert["window_end"]) >= ONSET
    listed = frame["listed_at"]
    since_onset = int(((listed >= ONSET) & (listed <= pd.Timestamp(alert["window_end"]))).sum())
    print(f"mix shift: data alert after {since_onset} listings since onset")
    assert since_onset <= 2 * pipeline.settings.monitor.window_events
    assert Path(alert["report_path"]).exists()


# -- a monitor killed mid-stream ------------------------------------------------------------

SHOCK = "market_shock:start=2015-05-01,segment=body=SUV,change=-0.2"


@dataclass(frozen=True)
class Outgoing:
    """One record for prices.scored or auctions.sold, produced to a fixed partition."""

    topic: str
    key: bytes
    value: bytes | None

    def partition(self, partitions: int) -> int:
        return zlib.crc32(self.key) % partitions


@pytest.fixture(scope="module")
def shock_records(stack: Settings, model_name: str) -> list[Outgoing]:
    """A market-shock stream as the worker scores it (with the module's champion) and its
    sales, in event-time order: identical bytes for every monitor that reads it."""
    frame = select(auctions(SHOCK), STREAM_FROM).reset_index(drop=True)
    client = registry.connect(stack)
    champion = registry.champion(client, model_name)
    assert champion is not None
    model = LoadedModel(model_name, champion.version, registry.load_pipeline(champion.uri), 0.0)
    listings = [payload.encode() for payload in listing_payloads(frame)]
    scored: list[bytes] = []
    for start in range(0, len(frame), 2000):
        chunk = [
            IncomingEvent(None, listings[i], "test", 0, i)
            for i in range(start, min(start + 2000, len(frame)))
        ]
        result = score_batch(chunk, model)
        assert not result.dead_letters
        scored += [output.value for output in result.scored]
    sales = sale_payloads(frame, SALE_DELAY)
    timeline = build_timeline(frame, SALE_DELAY)
    keys = [auction_id.encode() for auction_id in frame["auction_id"]]
    return [
        Outgoing(PRICES_SCORED, keys[row], scored[row])
        if kind == LISTING
        else Outgoing(AUCTIONS_SOLD, keys[row], sales[row].encode())
        for kind, row in zip(timeline.kind_codes, timeline.rows, strict=True)
    ]


def produce(settings: Settings, records: list[Outgoing]) -> None:
    producer = Producer(producer_config(settings))
    for record in records:
        while True:
            try:
                producer.produce(
                    settings.topic(record.topic),
                    record.value,
                    record.key,
                    partition=record.partition(settings.topic_partitions),
                )
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def metric(url: str, name: str, **labels: str) -> float | None:
    """One sample of a running service, None while it does not answer."""
    try:
        return scrape(url).get((name, tuple(sorted(labels.items()))))
    except httpx.HTTPError:
        return None


def read_records(url: str) -> float:
    """Records the monitor read since it started: processed plus skipped."""
    try:
        samples = scrape(url)
    except httpx.HTTPError:
        return -1
    return sum(
        value
        for (name, _), value in samples.items()
        if name in {"gavel_monitor_events_processed_total", "gavel_monitor_skipped_total"}
    )


def await_service(
    process: ManagedProcess, check: Callable[[], bool], timeout_s: float, what: str
) -> None:
    """Wait for ``check``; fail with the service's log if it dies or takes too long."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if process.pid() is None:
            raise AssertionError(f"{process.name} exited waiting for {what}:\n{log(process)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s on {what}:\n{log(process)}")
        time.sleep(0.1)


def log(process: ManagedProcess) -> str:
    return process.log_tail(60)


def read_at_least(url: str, records: int) -> Callable[[], bool]:
    return lambda: read_records(url) >= records


def record_span(records: list[Outgoing], start: str, end: str) -> tuple[int, int]:
    """Positions of the first sales at or after ``start`` and ``end``."""
    sold = [
        (i, pd.Timestamp(orjson.loads(r.value or b"")["sold_at"]))
        for i, r in enumerate(records)
        if r.topic == AUCTIONS_SOLD
    ]
    first = next(i for i, at in sold if at >= pd.Timestamp(start))
    last = next(i for i, at in sold if at >= pd.Timestamp(end))
    return first, last


def checkpointed(url: str, records: int) -> Callable[[], bool]:
    return lambda: (metric(url, "gavel_monitor_checkpoint_position") or 0) >= records


@pytest.fixture
def namespaces(stack: Settings) -> Iterator[list[str]]:
    """Namespaces a test makes; their topics are dropped right after it."""
    made: list[str] = []
    yield made
    for namespace in made:
        delete_topics_with_prefix(stack, namespace)


def monitor_settings(
    stack: Settings, model_name: str, tmp_path: Path, name: str, namespaces: list[str]
) -> Settings:
    settings = stack.replace(
        namespace=fresh_namespace(),
        model_name=model_name,
        monitor_metrics_port=free_port(),
        reports_dir=tmp_path / name / "reports",
        # A short lease: a monitor restarted after a kill -9 waits for the old one's to expire.
        monitor={"checkpoint_interval_s": 3.0, "lease_ttl_s": 3.0},
    )
    namespaces.append(settings.namespace)
    ensure_topics(settings)
    return settings


def metrics_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.monitor_metrics_port}/metrics"


AlertKey = tuple[str, str, str, str, str, str, int]


def distinct_alerts(settings: Settings) -> tuple[list[AlertKey], int]:
    """The alerts on drift.alerts, each id once in order of first appearance, and the
    number of records (re-announcements included)."""
    expected = end_offsets(settings, DRIFT_ALERTS)
    records = consume(settings, DRIFT_ALERTS, until=lambda r: len(r) >= expected)
    assert len(records) == expected
    seen: dict[str, AlertKey] = {}
    for record in records:
        a = record.json()
        key = (a["alert_id"], a["kind"], a["severity"], a["window_start"], a["window_end"],
               a["detector"], a["window_size"])  # fmt: skip
        assert seen.setdefault(a["alert_id"], key) == key, "one id, one alert"
    return list(seen.values()), len(records)


CHECKPOINT_AFTER_SALES = 700  # sales since the onset: inside the window that raises the alert


def test_a_monitor_killed_mid_shock_raises_the_same_alerts_with_the_same_ids(
    stack: Settings,
    model_name: str,
    shock_records: list[Outgoing],
    tmp_path: Path,
    namespaces: list[str],
) -> None:
    """Two monitors read the same records side by side: one uninterrupted; the other
    checkpoints while the window that raises the alert is open, is killed with -9 right
    after publishing the alert (before any later checkpoint) and restarted, so that it
    announces the alert a second time, under the same id. A trainer reading the killed
    monitor's alerts trains exactly once and recognises the re-announcement."""
    total = len(shock_records)
    calm = monitor_settings(stack, model_name, tmp_path, "uninterrupted", namespaces)
    crashed = monitor_settings(stack, model_name, tmp_path, "killed", namespaces)
    # Before the kill, no periodic checkpoint: the only one is written by a clean stop at
    # the cut, so the alert published before the kill is certainly not in a checkpoint.
    # Each process before the kill has a port of its own: the next one need not wait for
    # the last one's exit (its interpreter takes seconds to finish after the checkpoint).
    unchecked = crashed.replace(monitor={"checkpoint_interval_s": 3600.0})
    before = unchecked.replace(monitor_metrics_port=free_port())
    until_kill = unchecked.replace(monitor_metrics_port=free_port())
    trainer = trainer_settings(
        crashed.replace(experiment_name="gavel-tests"),
        # Days of sales that hold enough weekday auctions wherever the stream is cut.
        train_days=5,
        eval_days=2,
        # Never promote (no challenger is 100% better): the champion stays v1 for the
        # monitors and the module's later tests, and a re-announcement taken for a new
        # alert would not be ignored as late but trained on (new labels come, see below).
        margin=1.0,
    )
    store = TrainerStore(trainer)
    checkpoint = checkpoint_key(crashed)  # the monitor's key, in the trainer store's Redis
    calm_url, url = metrics_url(calm), metrics_url(crashed)
    before_url, kill_url = metrics_url(before), metrics_url(until_kill)
    onset, _ = record_span(shock_records, str(ONSET), str(ONSET))
    cut = nth_sale_after(shock_records, onset, CHECKPOINT_AFTER_SALES)
    produce(calm, shock_records)
    produce(crashed, shock_records[:cut])
    # Started together, each waited on when needed: their start-ups overlap.
    with (
        service("monitor", ["monitor"], calm, tmp_path / "a") as uninterrupted,
        service("trainer", ["trainer", "run"], trainer, tmp_path / "t") as training,
        service("monitor", ["monitor"], before, tmp_path / "b") as stopped,
    ):
        await_service(stopped, read_at_least(before_url, cut), 240, "the records before the cut")
        signal_group(stopped, signal.SIGTERM)  # a clean stop writes a last checkpoint
        wait_for(lambda: bool(store.client.exists(checkpoint)), 30, "the clean stop's checkpoint")
        with service(
            "monitor", ["monitor"], until_kill, tmp_path / "c", http_ok(kill_url)
        ) as killed:
            await_service(killed, lambda: restored_at(kill_url) > 0, 120, "the first restore")
            sent = cut
            while end_offsets(crashed, DRIFT_ALERTS) == 0:  # more records, until the alert
                chunk = shock_records[sent : sent + 300]
                assert chunk, "the whole stream and no alert"
                produce(crashed, chunk)
                sent += len(chunk)
                # This process counts what it read since the restore at the cut.
                await_service(killed, read_at_least(kill_url, sent - cut), 60, "the next records")
            covered = metric(kill_url, "gavel_monitor_checkpoint_position") or 0
            signal_group(killed, signal.SIGKILL)
            wait_for(lambda: killed.pid() is None, 10, "the monitor to die")
        alerts_at_kill = end_offsets(crashed, DRIFT_ALERTS)
        with service("monitor", ["monitor"], crashed, tmp_path / "d", http_ok(url)) as restarted:
            await_service(restarted, lambda: restored_at(url) > 0, 120, "the restore")
            restored = restored_at(url)
            # The trainer trains on the records up to the kill; the rest comes after, so a
            # trainer that took the re-announcement for a new alert would find new labels.
            wait_for(
                alive_and(training, lambda: bool(trained(store))),
                120,
                "the trainer to train",
                progress=lambda: store.client.get(store.prefix + "status"),
            )
            produce(crashed, shock_records[sent:])
            await_service(restarted, checkpointed(url, total), 240, "the restarted run")
            restored_log = restarted.log_tail(200)
        announced = end_offsets(crashed, DRIFT_ALERTS)
        wait_for(
            alive_and(training, lambda: len(store.decisions(50)) >= announced),
            120,
            "the trainer to decide on every announcement",
            progress=lambda: store.client.get(store.prefix + "status"),
        )
        decisions = store.decisions(50)[::-1]  # oldest first
        versions = registry.model_versions(registry.connect(trainer), model_name)
        await_service(uninterrupted, checkpointed(calm_url, total), 240, "the uninterrupted run")
        expected, _ = distinct_alerts(calm)
        got, _ = distinct_alerts(crashed)
        assert expected and expected[0][1] == "performance", expected
        first, last = record_span(shock_records, expected[0][3], expected[0][4])
        alert_id = expected[0][0]
        trainings = [d for d in decisions if d["decision"] in {"promoted", "rejected"}]
        print(
            f"monitor kill: {total} records, alerting window at records {first}-{last}; "
            f"checkpoint at {cut}, killed after reading {sent} (checkpoint covered "
            f"{covered:.0f}, restored {restored:.0f}); alerts uninterrupted "
            f"{[(a[0], a[1], a[5]) for a in expected]}, killed+restarted "
            f"{[(a[0], a[1], a[5]) for a in got]} ({announced} published, {alerts_at_kill} "
            f"before the kill); trainer: {len(trainings)} training(s), decisions "
            f"{[(d['alert_id'][:8], d['decision'], d['reason'][:40]) for d in decisions]}, "
            f"versions {[row['version'] for row in versions]}"
        )
        assert "restored the checkpoint" in restored_log
        assert covered == restored == cut, "the one checkpoint is the clean stop's, at the cut"
        assert restored < sent, "the kill lost records read after the checkpoint"
        assert first < restored < last, "the checkpoint holds part of the alerting window"
        assert alerts_at_kill == 1, "the alert was published before the kill"
        assert got == expected
        assert announced == len(expected) + 1, "the restarted monitor announced it again"
        # One training, then every other delivery of the id recognised as a duplicate (an
        # alert whose commit was lost, say in a broker restart, comes once more).
        assert len(decisions) >= announced, decisions
        assert [(d["alert_id"], d["decision"]) for d in decisions] == [
            (alert_id, "rejected"),
            *[(alert_id, "ignore")] * (len(decisions) - 1),
        ], decisions
        assert {d["reason"] for d in decisions[1:]} == {f"duplicate alert {alert_id}"}
        # The registry agrees: one version trained by the trainer besides the champion.
        assert [row["version"] for row in versions] == [trainings[0]["version"], "1"]


def signal_group(process: ManagedProcess, sig: signal.Signals) -> None:
    pid = process.pid()
    assert pid is not None, f"{process.name} is not running:\n{log(process)}"
    os.killpg(pid, sig)


def restored_at(url: str) -> float:
    """Records covered by the checkpoint the monitor at ``url`` started from."""
    return metric(url, "gavel_monitor_restored_position") or 0


def alive_and(process: ManagedProcess, check: Callable[[], bool]) -> Callable[[], bool]:
    """``check``, failing at once with the service's log if it has exited."""

    def checked() -> bool:
        if process.pid() is None:
            raise AssertionError(f"{process.name} exited:\n{log(process)}")
        return check()

    return checked


def nth_sale_after(records: list[Outgoing], start: int, n: int) -> int:
    """The position just after the ``n``-th sale from ``start`` on."""
    seen = 0
    for position in range(start, len(records)):
        seen += records[position].topic == AUCTIONS_SOLD
        if seen == n:
            return position + 1
    raise ValueError(f"fewer than {n} sales after {start}")


# -- one monitor per namespace --------------------------------------------------------------

LEASE_TTL_S = 4.0
PAIR_RECORDS = 6000  # half before the kill, half after


def test_a_second_monitor_waits_as_a_standby_and_takes_over_after_a_kill(
    stack: Settings,
    model_name: str,
    shock_records: list[Outgoing],
    tmp_path: Path,
    namespaces: list[str],
) -> None:
    """Two monitors in one namespace: one reads, the other waits and says who holds the
    lease; killed with -9, the reader is replaced within the lease TTL by the standby,
    which continues from the reader's last checkpoint."""
    shared = monitor_settings(stack, model_name, tmp_path, "pair", namespaces).replace(
        monitor={"checkpoint_interval_s": 1.0, "lease_ttl_s": LEASE_TTL_S}
    )
    one, two = (shared.replace(monitor_metrics_port=free_port()) for _ in range(2))
    records = shock_records[:PAIR_RECORDS]
    half = PAIR_RECORDS // 2
    produce(shared, records[:half])
    store = TrainerStore(shared)  # a Redis client of the namespace
    with (
        service("monitor-1", ["monitor"], one, tmp_path / "one", http_ok(metrics_url(one))) as a,
        service("monitor-2", ["monitor"], two, tmp_path / "two", http_ok(metrics_url(two))) as b,
    ):
        urls = {a.name: metrics_url(one), b.name: metrics_url(two)}
        held = {
            name: lambda url=url: metric(url, "gavel_monitor_lease_held")
            for name, url in urls.items()
        }
        wait_for(
            lambda: any(lease() == 1 for lease in held.values()), 60, "a monitor to hold the lease"
        )
        holder, standby = (a, b) if held[a.name]() == 1 else (b, a)
        reader_url, standby_url = urls[holder.name], urls[standby.name]
        await_service(holder, checkpointed(reader_url, half), 120, "the first half checkpointed")
        standby_log = standby.log_tail(40)
        # Only one reads: the standby, up as long, read nothing and says who holds the lease.
        assert read_records(standby_url) == 0, standby_log
        assert metric(standby_url, "gavel_monitor_lease_held") == 0
        assert "waits as a standby" in standby_log, standby_log
        assert f":{holder.pid()}/" in standby_log, "the standby names the holder's process"
        signal_group(holder, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: holder.pid() is None, 2, "the holder to die")
        blob = store.client.get(checkpoint_key(shared))  # before the standby can write one
        at_kill = decode(blob) if blob else None
        assert at_kill is not None
        # The second half arrives while the standby waits for the lease to expire.
        second_half = threading.Thread(target=produce, args=(shared, records[half:]))
        second_half.start()
        await_service(
            standby, lambda: metric(standby_url, "gavel_monitor_lease_held") == 1, 30, "takeover"
        )
        took_over = time.monotonic() - killed_at
        await_service(standby, lambda: read_records(standby_url) > 0, 60, "the standby to read")
        reading = time.monotonic() - killed_at
        second_half.join()
        await_service(standby, checkpointed(standby_url, PAIR_RECORDS), 120, "the second half")
        restored = restored_at(standby_url)
        read = read_records(standby_url)
    print(
        f"monitor takeover: lease TTL {LEASE_TTL_S}s; the standby held the lease {took_over:.1f}s "
        f"after the kill and read again {reading:.1f}s after it, from the checkpoint at "
        f"{restored:.0f} records ({at_kill.covered} at the kill); it read {read:.0f} records"
    )
    # The lease expires at most a TTL after the last renewal and a standby tries every fifth
    # of it; the rest is slack for a loaded machine (scrapes, scheduling).
    assert took_over <= LEASE_TTL_S * 1.2 + 3.0, took_over
    assert restored == at_kill.covered == half, "it continues from the holder's checkpoint"
    assert read == PAIR_RECORDS - half, "it reads exactly the records after the checkpoint"


# -- hostile records ------------------------------------------------------------------------

LISTED = pd.Timestamp("2015-05-04T10:00:00", tz="UTC")


def valid_scored(auction_id: str, version: str, model: str) -> dict:
    listing = Listing(
        auction_id=auction_id,
        listed_at=LISTED,
        year=2012,
        make="Ford",
        model="Fusion",
        body="Sedan",
        condition=3.5,
        odometer=41_000,
        mmr=9_000,
    )
    return ScoredPrice(
        auction_id=auction_id,
        predicted_price=9_100.0,
        model_name=model,
        model_version=version,
        listed_at=listing.listed_at,
        scored_at=listing.listed_at,
        features=listing,
    ).model_dump(mode="json")


def hostile_corpus(version: str, model: str) -> dict[str, list[tuple[bytes | None, str]]]:
    """Per topic, the bad records and the reason each must be skipped for."""
    good = valid_scored("h", version, model)
    scored = orjson.dumps(good)
    sale = {"auction_id": "h", "sold_at": "2015-05-04T12:00:00Z", "sellingprice": 8_800.0}
    common: list[tuple[bytes | None, str]] = [
        (None, "empty"),
        (b"{not json", "not_json"),
        (b'{"auction_id": "\xff\xfe\xfd"}', "not_json"),  # bad UTF-8
        (b'"\xc3\x28"', "not_json"),
        (b"1", "not_object"),
        (b"[]", "not_object"),
        (b"{}", "schema"),
        (b"null", "not_object"),
    ]
    sold: list[tuple[bytes | None, str]] = [
        *common,
        (orjson.dumps({**sale, "sellingprice": "a lot"}), "schema"),
        (orjson.dumps({**sale, "sold_at": "yesterday"}), "schema"),
        (orjson.dumps({**sale, "sold_at": "0001-01-01T00:00:00Z"}), "event_time"),
        (orjson.dumps({**sale, "sold_at": "0001-01-01T00:00:00+05:00"}), "event_time"),
        (orjson.dumps({**sale, "sold_at": "9999-12-31T23:59:59"}), "event_time"),
        (orjson.dumps({**sale, "sold_at": "9999-12-31T23:59:59-05:00"}), "event_time"),
        (orjson.dumps({**sale, "sellingprice": 1e300}), "value"),
        (orjson.dumps(sale).replace(b"8800.0", b"1" + b"0" * 400), "schema"),  # not finite
        (orjson.dumps(sale).replace(b"8800.0", b"9" * 5000), "not_json"),  # past the parser
    ]
    priced: list[tuple[bytes | None, str]] = [
        *common,
        (orjson.dumps({**good, "features": "none"}), "schema"),
        (orjson.dumps({**good, "predicted_price": [1]}), "schema"),
        (json.dumps({**good, "features": {**good["features"], "year": 10**30}}).encode(), "schema"),
        (orjson.dumps({**good, "listed_at": "9999-12-31T00:00:00Z"}), "event_time"),
        (orjson.dumps({**good, "listed_at": "0001-01-01T01:00:00+02:00"}), "event_time"),
        (orjson.dumps({**good, "scored_at": "0001-01-01T00:00:00"}), "event_time"),
        (scored.replace(b"9100.0", b"1e999"), "value"),
        (orjson.dumps({**good, "predicted_price": -1.0}), "value"),
    ]
    return {PRICES_SCORED: priced, AUCTIONS_SOLD: sold}


VALID = 8  # valid listings (and their sales) around the hostile records


def test_hostile_records_are_skipped_and_counted_by_reason(
    stack: Settings, model_name: str, tmp_path: Path, namespaces: list[str]
) -> None:
    settings = monitor_settings(stack, model_name, tmp_path, "hostile", namespaces)
    url = metrics_url(settings)
    corpus = hostile_corpus("1", model_name)
    valid = [orjson.dumps(valid_scored(f"ok-{n}", "1", model_name)) for n in range(VALID)]
    sales = [
        orjson.dumps(
            {
                "auction_id": f"ok-{n}",
                # one naive time (read as UTC): it must not poison the sale watermark
                "sold_at": "2015-05-04T12:00:00" if n == 0 else "2015-05-04T12:00:00+00:00",
                "sellingprice": 8_800.0,
            }
        )
        for n in range(VALID)
    ]
    records = [Outgoing(PRICES_SCORED, f"ok-{n}".encode(), v) for n, v in enumerate(valid)]
    for topic, bad in corpus.items():
        records += [Outgoing(topic, f"bad-{n}".encode(), value) for n, (value, _) in enumerate(bad)]
    records += [Outgoing(AUCTIONS_SOLD, f"ok-{n}".encode(), v) for n, v in enumerate(sales)]
    with service("monitor", ["monitor"], settings, tmp_path, http_ok(url)) as process:
        produce(settings, records)
        await_service(process, read_at_least(url, len(records)), 120, "every record read")
        samples = scrape(url)
        alive = process.pid() is not None
        held = {
            state: samples[("gavel_monitor_held_events", (("state", state),))]
            for state in ("join_predictions", "join_sales", "reorder_joined", "window_labelled")
        }
        logs = log(process)
    skipped = {
        (labels[1][1], labels[0][1]): value  # (source, reason)
        for (name, labels), value in samples.items()
        if name == "gavel_monitor_skipped_total" and value
    }
    expected: dict[tuple[str, str], int] = {}
    for topic, bad in corpus.items():
        for _, reason in bad:
            expected[(topic, reason)] = expected.get((topic, reason), 0) + 1
    print(f"hostile records: skipped by (source, reason) {sorted(skipped.items())}")
    assert alive, logs
    assert skipped == expected, logs
    processed = {
        source: samples[("gavel_monitor_events_processed_total", (("source", source),))]
        for source in (PRICES_SCORED, AUCTIONS_SOLD)
    }
    assert processed == {PRICES_SCORED: VALID, AUCTIONS_SOLD: VALID}
    # Every valid sale joined its listing (none expired behind a poisoned watermark).
    assert held["join_predictions"] == held["join_sales"] == 0, held
    assert held["reorder_joined"] + held["window_labelled"] == VALID, held
