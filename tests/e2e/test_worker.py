"""The scoring worker as a real process: every listing priced or dead-lettered, hot-swaps,
and /predict agreeing with the stream."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gavel.schemas import ModelAction, ModelUpdate
from gavel.settings import Settings
from gavel.topics import AUCTIONS_DEADLETTER, MODELS_UPDATES, PRICES_SCORED
from producers.replay import ReplayOptions, replay
from producers.sources.synthetic import generate_auctions
from shell import registry
from shell.stack.process import ManagedProcess
from tests.e2e.conftest import train_champion, worker_health_url
from tests.helpers import Record, consume, http_ok, service, wait_for
from trainer.training import TrainingResult

pytestmark = pytest.mark.e2e


def listings(n: int, seed: int = 21):
    return generate_auctions(n, start="2015-03-01", end="2015-04-01", seed=seed)


def distinct(records: list[Record]) -> dict[str, Record]:
    """At-least-once output de-duplicated by key (the last write wins, as in a keyed table)."""
    return {record.key: record for record in records}


def test_every_listing_is_scored_or_dead_lettered_with_a_reason(
    services: Settings, champion: TrainingResult, worker: ManagedProcess
) -> None:
    frame = listings(5000)
    stats = replay(frame, services, ReplayOptions(with_sales=False, corrupt_share=0.02, seed=4))
    assert stats.failed == 0 and stats.listings == 5000
    bad_keys = stats.corrupted_keys
    assert len(bad_keys) > 60 and set(bad_keys.values()) == {"schema", "out_of_range", "not_json"}
    good_keys = set(frame["auction_id"]) - set(bad_keys)

    scored = distinct(
        consume(services, PRICES_SCORED, until=lambda r: len(distinct(r)) >= len(good_keys))
    )
    dead = distinct(
        consume(services, AUCTIONS_DEADLETTER, until=lambda r: len(distinct(r)) >= len(bad_keys))
    )

    assert set(scored) == good_keys
    assert set(dead) == set(bad_keys)
    assert len(scored) + len(dead) == stats.listings
    for key, record in dead.items():
        letter = record.json()
        assert letter["reason"] == bad_keys[key]
        assert letter["source_topic"] == services.topic("auctions.listed")
        assert letter["offset"] >= 0 and letter["partition"] >= 0 and letter["raw_payload"]
        assert letter["detail"]
    versions = {record.json()["model_version"] for record in scored.values()}
    assert versions == {champion.version}
    sample = next(iter(scored.values())).json()
    assert sample["model_name"] == services.model_name and sample["predicted_price"] > 0
    assert sample["features"]["auction_id"] == sample["auction_id"]
    assert sample["listed_at"] and sample["scored_at"]

    metrics = httpx.get(worker_health_url(services).replace("/health", "/metrics")).text
    assert "gavel_worker_events_scored_total" in metrics
    health = httpx.get(worker_health_url(services)).json()
    assert health["model_version"] == champion.version and health["uptime_s"] > 0


def promote_copy_of_champion(settings: Settings, reason: str) -> str:
    """Register the champion's pipeline again as a new version and promote it."""
    import mlflow

    client = registry.connect(settings)
    current = registry.champion(client, settings.model_name)
    assert current is not None
    pipeline = registry.load_pipeline(current.uri)
    reference = registry.load_reference_sample(client, current.run_id)
    mlflow.set_experiment(settings.experiment_name)
    with mlflow.start_run(run_name="hot-swap-test"):
        example = reference.drop(columns=["prediction", "sellingprice"]).head(5)
        version = registry.log_model_version(pipeline, example, settings.model_name)
    registry.promote(client, settings.model_name, str(version.version), reason)
    return str(version.version)


def publish_update(settings: Settings, version: str, previous: str) -> None:
    from confluent_kafka import Producer

    from shell.kafka import producer_config

    update = ModelUpdate(
        action=ModelAction.PROMOTED,
        model_name=settings.model_name,
        version=version,
        champion_version=version,
        previous_version=previous,
        reason="test promotion",
    )
    producer = Producer(producer_config(settings))
    producer.produce(
        settings.topic(MODELS_UPDATES),
        key=settings.model_name.encode(),
        value=update.to_json_bytes(),
    )
    assert producer.flush(10) == 0


def replay_around_swap(settings: Settings, n: int, swap: Callable[[], str]) -> str:
    """Replay ``n`` listings with a swap in the middle; returns the new version.

    The order follows the worker's own signals, not the machine's speed: the first third
    is scored (by the old version) before the swap starts; the second third streams while
    the swap happens; the last third follows once ``/health`` names the new version.
    """
    frame = listings(n, seed=33)
    third = n // 3
    options = ReplayOptions(with_sales=False, rate=800)
    replay(frame.iloc[:third], settings, options)
    consume(settings, PRICES_SCORED, until=lambda r: len(distinct(r)) >= third)
    during = threading.Thread(
        target=replay, args=(frame.iloc[third : 2 * third], settings, options)
    )
    during.start()
    new_version = swap()
    wait_for(
        lambda: (
            httpx.get(worker_health_url(settings), timeout=5).json()["model_version"] == new_version
        ),
        60,
        "the worker to serve the new version",
    )
    during.join()
    replay(frame.iloc[2 * third :], settings, options)
    return new_version


def assert_switch_without_loss(settings: Settings, old: str, new: str, n: int) -> None:
    records = consume(settings, PRICES_SCORED, until=lambda r: len(distinct(r)) >= n)
    scored = distinct(records)
    assert len(scored) == n, "every listing is scored across the swap"
    versions = [record.json()["model_version"] for record in records]
    assert set(versions) == {old, new}
    # Per partition, in offset order, the version changes once and never back.
    for partition in {record.partition for record in records}:
        in_order = sorted((r for r in records if r.partition == partition), key=lambda r: r.offset)
        sequence = [r.json()["model_version"] for r in in_order]
        first_new = sequence.index(new) if new in sequence else len(sequence)
        assert all(v == old for v in sequence[:first_new])
        assert all(v == new for v in sequence[first_new:])


def test_promotion_mid_stream_switches_version_via_models_updates(
    services: Settings, champion: TrainingResult, worker: ManagedProcess
) -> None:
    def swap() -> str:
        version = promote_copy_of_champion(services, "hot-swap test")
        publish_update(services, version, champion.version)
        return version

    new_version = replay_around_swap(services, 4500, swap)
    assert_switch_without_loss(services, champion.version, new_version, 4500)


def test_alias_polling_swaps_even_without_an_update_event(
    isolated: Settings, tmp_path: Path
) -> None:
    from tests.helpers import free_port

    settings = isolated.replace(worker_web_port=free_port(), worker_poll_alias_s=1.0)
    first = train_champion(settings)
    with service(
        "worker", ["worker"], settings, tmp_path, ready=http_ok(worker_health_url(settings))
    ):
        new_version = replay_around_swap(
            settings, 3000, lambda: promote_copy_of_champion(settings, "polling test")
        )
        assert_switch_without_loss(settings, first.version, new_version, 3000)


def test_predict_returns_the_streamed_price_and_422_on_bad_input(
    services: Settings, champion: TrainingResult, worker: ManagedProcess
) -> None:
    frame = listings(300, seed=5)
    replay(frame, services, ReplayOptions(with_sales=False))
    scored = distinct(consume(services, PRICES_SCORED, until=lambda r: len(distinct(r)) >= 300))
    chosen = [record.json() for record in list(scored.values())[:25]]
    url = worker_health_url(services).replace("/health", "/predict")

    single = httpx.post(url, json=chosen[0]["features"]).json()
    assert single["predictions"][0]["predicted_price"] == chosen[0]["predicted_price"]
    many = httpx.post(url, json=[event["features"] for event in chosen]).json()
    assert many["model_version"] == champion.version
    assert [p["predicted_price"] for p in many["predictions"]] == [
        event["predicted_price"] for event in chosen
    ]

    bad = dict(chosen[0]["features"], odometer=-5, year="new")
    response = httpx.post(url, json=[chosen[1]["features"], bad])
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert {(e["index"], e["loc"][0]) for e in errors} == {(1, "odometer"), (1, "year")}
    json_type = {"Content-Type": "application/json"}
    assert httpx.post(url, content=b"{oops", headers=json_type).status_code == 422
    assert httpx.post(url, content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert httpx.post(url, data={"year": "2012"}).status_code == 415  # a form, as curl -d sends
    huge = b"[" + b"{}," * 400_000 + b"{}]"
    assert httpx.post(url, content=huge, headers=json_type).status_code == 413


def test_streamed_prices_equal_each_versions_pipeline_across_a_hot_swap(
    services: Settings, champion: TrainingResult, worker: ManagedProcess
) -> None:
    """The compiled scorer on the hot path prices as the registered pipeline does, for
    the first champion and for a different model swapped in mid-stream."""
    import mlflow

    from gavel.features import listings_frame
    from gavel.schemas import Listing
    from trainer.pipeline import fit_xgboost

    frame = listings(1200, seed=41)
    half = len(frame) // 2
    replay(frame.iloc[:half], services, ReplayOptions(with_sales=False))
    consume(services, PRICES_SCORED, until=lambda r: len(distinct(r)) >= half)

    # A different model (other data, other depth), registered and promoted by hand.
    other = generate_auctions(6000, start="2015-01-01", end="2015-03-01", seed=77)
    x, y = other.drop(columns=["sellingprice"]), other["sellingprice"]
    fitted = fit_xgboost(
        x.iloc[:5000],
        y.iloc[:5000],
        x.iloc[5000:],
        y.iloc[5000:],
        {"n_estimators": 120, "max_depth": 3, "early_stopping_rounds": 10},
    )
    mlflow.set_experiment(services.experiment_name)
    with mlflow.start_run(run_name="parity-swap-test"):
        version = registry.log_model_version(fitted.pipeline, x.head(5), services.model_name)
    new = str(version.version)
    client = registry.connect(services)
    registry.promote(client, services.model_name, new, "parity test")
    publish_update(services, new, champion.version)
    wait_for(
        lambda: httpx.get(worker_health_url(services), timeout=5).json()["model_version"] == new,
        60,
        "the worker to serve the other model",
    )
    replay(frame.iloc[half:], services, ReplayOptions(with_sales=False))
    scored = distinct(
        consume(services, PRICES_SCORED, until=lambda r: len(distinct(r)) >= len(frame))
    )

    pipelines = {
        v: registry.load_pipeline(f"models:/{services.model_name}/{v}")
        for v in (champion.version, new)
    }
    seen: dict[str, int] = {}
    for v, pipeline in pipelines.items():
        bodies = [r.json() for r in scored.values() if r.json()["model_version"] == v]
        listings_v = [Listing.model_validate(body["features"]) for body in bodies]
        expected = pipeline.predict(listings_frame(listings_v))
        for body, price in zip(bodies, expected, strict=True):
            assert body["predicted_price"] == pytest.approx(
                round(float(price), 2), rel=1e-6, abs=0.006
            )
        seen[v] = len(bodies)
    print(f"\nprices equal to each version's pipeline: {seen}")
    assert seen.get(champion.version, 0) >= half and seen.get(new, 0) >= len(frame) - half
