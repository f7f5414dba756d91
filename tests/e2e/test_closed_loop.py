"""The whole loop on real servers: market shock → alert → one retrain → promotion → swap →
recovery; the cooldown; and a trainer killed mid-training."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from confluent_kafka import Producer

from gavel.price_errors import mape
from gavel.schemas import DriftAlert, DriftKind, Severity
from gavel.settings import Settings
from gavel.topics import DRIFT_ALERTS, PRICES_SCORED
from producers.replay import ReplayOptions, replay
from producers.sources.scenarios import parse_scenario
from producers.sources.synthetic import generate_auctions
from producers.timeline import select
from shell import registry
from shell.kafka import ensure_topics, producer_config
from tests.conftest import fresh_namespace
from tests.e2e.conftest import SMALL_XGB, worker_health_url
from tests.helpers import consume, end_offsets, free_port, http_ok, service, wait_for
from trainer.service import TrainerStore
from trainer.split import time_split
from trainer.training import train_and_register

pytestmark = pytest.mark.e2e

ROWS, SEED = 200_000, 17
ONSET = pd.Timestamp("2015-05-01", tz="UTC")
# Nine days of the shock (about 10,000 sales) come before the replay waits for the retrain.
RESUME_AT = pd.Timestamp("2015-05-10", tz="UTC")
SHOCK = "market_shock:start=2015-05-01,segment=body=SUV,change=-0.25"
SALE_DELAY = timedelta(hours=2)
# Recovery: after the promotion the served MAPE is back within 15% of its pre-shock level
# (the challenger continues the champion's boosting on a few days of sales; it measured
# 1.09x, against 1.10-1.20x for a challenger trained from scratch on those days), while the
# frozen first model, on the same events, stays at least 20% worse than before (1.38x).
RECOVERED_WITHIN = 1.15
FROZEN_AT_LEAST = 1.20


def auctions(*scenarios: str) -> pd.DataFrame:
    return generate_auctions(
        ROWS,
        start="2015-01-01",
        end="2015-07-01",
        seed=SEED,
        scenarios=[parse_scenario(s) for s in scenarios],
    )


def loop_settings(stack: Settings, tmp_path: Path, **trainer: object) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return stack.replace(
        namespace=fresh_namespace(),
        model_name=f"gavel-test-loop-{tag}",
        experiment_name="gavel-tests",
        reports_dir=tmp_path / "reports",
        worker_web_port=free_port(),
        monitor_metrics_port=free_port(),
        worker_poll_alias_s=10.0,
        worker_model_cache_dir=tmp_path / "model-cache",
        trainer={
            "train_days": 4,
            "eval_days": 1,
            "min_new_labels": 8000,
            "cooldown_s": 600,
            "recheck_s": 2,
            "lock_ttl_s": 6,
            **trainer,
        },
    )


def first_champion(settings: Settings) -> str:
    split = time_split(auctions(), "2015-03-01", test_days=30)
    return train_and_register(split, settings, source="e2e-loop", xgb_params=SMALL_XGB).version


@pytest.fixture
def loop(stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = loop_settings(stack, tmp_path)
    ensure_topics(settings)
    first_champion(settings)
    metrics = f"http://{settings.host}:{settings.monitor_metrics_port}/metrics"
    with ExitStack() as running:
        running.enter_context(
            service("worker", ["worker"], settings, tmp_path, http_ok(worker_health_url(settings)))
        )
        running.enter_context(service("monitor", ["monitor"], settings, tmp_path, http_ok(metrics)))
        running.enter_context(service("trainer", ["trainer", "run"], settings, tmp_path))
        yield settings


def served(settings: Settings, frame: pd.DataFrame) -> pd.DataFrame:
    """Each listing's served price and version, with its sale price and features."""
    records = consume(
        settings, PRICES_SCORED, until=lambda r: len({x.key for x in r}) >= len(frame)
    )
    scored = pd.DataFrame(
        [
            {"auction_id": r.key, "price": e["predicted_price"], "version": e["model_version"]}
            for r in records
            for e in [r.json()]
        ]
    ).drop_duplicates("auction_id", keep="last")
    return frame.merge(scored, on="auction_id", how="left", validate="one_to_one")


def test_a_market_shock_is_detected_retrained_promoted_and_recovered(loop: Settings) -> None:
    frame = select(auctions(SHOCK), "2015-04-23", "2015-05-21")
    # The replay waits for the loop instead of betting on the machine's speed: the first
    # part holds the shock and enough sales to retrain on; the rest follows once the
    # worker serves the new champion, however long training took.
    shock_part = frame[frame["listed_at"] < RESUME_AT]
    stats = replay(shock_part, loop, ReplayOptions(sale_delay=SALE_DELAY, rate=1200))
    assert stats.failed == 0
    client = registry.connect(loop)
    store = TrainerStore(loop)
    wait_for(
        lambda: registry.champion(client, loop.model_name).version == "2",
        120,
        "v2 champion",
        # Alerts, the trainer's status and decisions: as long as these move, the loop works.
        progress=lambda: (
            end_offsets(loop, DRIFT_ALERTS),
            store.client.get(store.prefix + "status"),
            len(store.decisions(50)),
        ),
        ceiling_s=600,
    )
    wait_for(
        lambda: httpx.get(worker_health_url(loop), timeout=5).json()["model_version"] == "2",
        60,
        "the worker to serve v2",
    )
    rest = replay(
        frame[frame["listed_at"] >= RESUME_AT],
        loop,
        ReplayOptions(sale_delay=SALE_DELAY, rate=1200),
    )
    assert rest.failed == 0

    # 1. A performance alert was raised after the onset.
    alerts = [r.json() for r in consume(loop, DRIFT_ALERTS, until=lambda r: len(r) >= 1)]
    performance = [a for a in alerts if a["kind"] == "performance"]
    assert performance and pd.Timestamp(performance[0]["window_end"]) >= ONSET
    # 2. Exactly one retrain ran, and 3. it was promoted.
    trainings = [
        d for d in TrainerStore(loop).decisions(50) if d["decision"] in {"promoted", "rejected"}
    ]
    assert [d["decision"] for d in trainings] == ["promoted"]
    assert trainings[0]["alert_id"] == performance[0]["alert_id"]
    assert [row["version"] for row in registry.model_versions(client, loop.model_name)] == [
        "2",
        "1",
    ]

    # 4. The version on prices.scored switches, and 5. nothing is lost across the swap.
    result = served(loop, frame)
    assert result["price"].notna().all(), "every listing is scored"
    assert set(result["version"]) == {"1", "2"}
    switched_at = result.loc[result["version"] == "2", "listed_at"].min()
    assert (
        result.loc[result["listed_at"] > switched_at + pd.Timedelta(hours=6), "version"] == "2"
    ).all()

    # 6. Recovery against the frozen first model on the same events.
    frozen = registry.load_pipeline(f"models:/{loop.model_name}/1")
    before = result[result["listed_at"] < ONSET]
    during = result[(result["listed_at"] >= ONSET) & (result["version"] == "1")]
    after = result[result["version"] == "2"]
    assert len(after) >= 2000, "enough events after the promotion to judge"
    mape_before = mape(before["sellingprice"], before["price"])
    mape_during = mape(during["sellingprice"], during["price"])
    mape_after = mape(after["sellingprice"], after["price"])
    mape_frozen = mape(after["sellingprice"], frozen.predict(after))
    print(
        f"MAPE before {mape_before:.1%}, during {mape_during:.1%}, after {mape_after:.1%}; "
        f"frozen v1 on the same events {mape_frozen:.1%}"
    )
    assert mape_during > mape_before * FROZEN_AT_LEAST
    assert mape_after <= mape_before * RECOVERED_WITHIN
    assert mape_frozen >= mape_before * FROZEN_AT_LEAST

    # A second alert during the cooldown does not retrain.
    second = DriftAlert(
        kind=DriftKind.PERFORMANCE,
        severity=Severity.CRITICAL,
        window_start=ONSET,
        window_end=ONSET,
        window_size=1000,
        model_name=loop.model_name,
        model_version="2",
        mape=0.4,
    )
    publish_alert(loop, second)
    wait_for(
        lambda: any(d["alert_id"] == second.alert_id for d in TrainerStore(loop).decisions(5)),
        30,
        "the trainer to decide on the second alert",
    )
    decision = next(d for d in TrainerStore(loop).decisions(5) if d["alert_id"] == second.alert_id)
    assert decision["decision"] == "ignore" and decision["reason"].startswith("cooldown")
    assert len(registry.model_versions(client, loop.model_name)) == 2


def publish_alert(settings: Settings, alert: DriftAlert) -> None:
    producer = Producer(producer_config(settings))
    producer.produce(
        settings.topic(DRIFT_ALERTS), key=alert.kind.value.encode(), value=alert.to_json_bytes()
    )
    assert producer.flush(10) == 0


def test_a_trainer_killed_mid_training_leaves_the_champion_and_can_train_after_restart(
    stack: Settings, tmp_path: Path
) -> None:
    settings = loop_settings(stack, tmp_path, min_new_labels=100, cooldown_s=0, train_days=6)
    ensure_topics(settings)
    first_champion(settings)
    frame = select(auctions(), "2015-04-01", "2015-04-15")
    health = http_ok(worker_health_url(settings))
    with service("worker", ["worker"], settings, tmp_path, health):
        replay(frame, settings, ReplayOptions(sale_delay=SALE_DELAY))
        wait_for(lambda: end_offsets(settings, PRICES_SCORED) >= len(frame), 60, "scores")
    alert = DriftAlert(
        kind=DriftKind.PERFORMANCE,
        severity=Severity.CRITICAL,
        window_start=pd.Timestamp("2015-04-01", tz="UTC"),
        window_end=pd.Timestamp("2015-04-15", tz="UTC"),
        window_size=1000,
        model_name=settings.model_name,
        model_version="1",
        mape=0.3,
    )
    publish_alert(settings, alert)
    store = TrainerStore(settings)
    client = registry.connect(settings)

    with service("trainer", ["trainer", "run"], settings, tmp_path) as trainer:
        wait_for(
            lambda: (store.client.get(store.prefix + "status") or b"").startswith(b"training"),
            60,
            "the trainer to start training",
        )
        os.killpg(trainer.pid(), signal.SIGKILL)
        wait_for(lambda: trainer.pid() is None, 10, "the trainer to die")
    assert registry.champion(client, settings.model_name).version == "1"
    assert not [d for d in store.decisions() if d["decision"] in {"promoted", "rejected"}]
    assert store.client.exists(store.lock_name), "the dead trainer's lock is still held"

    started = time.monotonic()
    with service("trainer", ["trainer", "run"], settings, tmp_path):
        wait_for(
            lambda: any(d["decision"] in {"promoted", "rejected"} for d in store.decisions()),
            120,
            "the restarted trainer to train",
        )
    trained = next(d for d in store.decisions() if d["decision"] in {"promoted", "rejected"})
    assert trained["alert_id"] == alert.alert_id, "the unfinished alert was handled again"
    assert len(registry.model_versions(client, settings.model_name)) == 2
    print(f"restarted trainer finished in {time.monotonic() - started:.1f}s")
